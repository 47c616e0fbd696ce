"""Classifiers: per-instance, multi-event and parametrised; likelihood-ratio weights.

References: Andreassen & Nachman, arXiv:1907.08209 (DCTR); Nachman & Thaler,
arXiv:2101.07263 (multi-event classifiers).
"""

from jaxgen.classifiers.classifier import DEFAULT_FIT_CONFIG
from jaxgen.classifiers.classifier import Classifier
from jaxgen.classifiers.classifier import bce_with_logits
from jaxgen.classifiers.classifier import class_balance_weights
from jaxgen.classifiers.classifier import classifier_logits
from jaxgen.classifiers.classifier import ensemble_weights
from jaxgen.classifiers.classifier import likelihood_ratio_weights
from jaxgen.classifiers.classifier import mlp_classifier
from jaxgen.classifiers.classifier import train_classifier
from jaxgen.classifiers.multievent import LogitSum
from jaxgen.classifiers.multievent import deep_sets_classifier
from jaxgen.classifiers.multievent import instance_logits_from_logit_sum
from jaxgen.classifiers.multievent import make_sets
from jaxgen.classifiers.multievent import set_logits_from_instance
from jaxgen.classifiers.parametrized import FactorizedLogit
from jaxgen.classifiers.parametrized import factorized_classifier
from jaxgen.classifiers.parametrized import maximum_likelihood_theta
from jaxgen.classifiers.parametrized import parametrized_inputs
from jaxgen.classifiers.parametrized import parametrized_logits
from jaxgen.classifiers.parametrized import parametrized_training_data
from jaxgen.classifiers.parametrized import reweight
from jaxgen.metrics.classification import effective_sample_size

__all__ = [
    "DEFAULT_FIT_CONFIG",
    "Classifier",
    "FactorizedLogit",
    "LogitSum",
    "bce_with_logits",
    "class_balance_weights",
    "classifier_logits",
    "deep_sets_classifier",
    "effective_sample_size",
    "ensemble_weights",
    "factorized_classifier",
    "instance_logits_from_logit_sum",
    "likelihood_ratio_weights",
    "make_sets",
    "maximum_likelihood_theta",
    "mlp_classifier",
    "parametrized_inputs",
    "parametrized_logits",
    "parametrized_training_data",
    "reweight",
    "set_logits_from_instance",
    "train_classifier",
]

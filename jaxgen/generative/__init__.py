"""Generative building blocks: augmentations, contrastive encoders, k-means, GANs.

Also the clustered-latent generators of arXiv:2112.09646 (InfoSCC-GAN, arXiv:2112.09653,
is in ``jaxgen.methods.infoscc``).
"""

from jaxgen.generative.augment import compose
from jaxgen.generative.augment import cutout
from jaxgen.generative.augment import diff_augment
from jaxgen.generative.augment import feature_dropout
from jaxgen.generative.augment import gaussian_jitter
from jaxgen.generative.augment import gaussian_noise
from jaxgen.generative.augment import image_augment
from jaxgen.generative.augment import random_brightness
from jaxgen.generative.augment import random_flip
from jaxgen.generative.augment import random_rotation_2d
from jaxgen.generative.augment import random_scale
from jaxgen.generative.augment import random_shift
from jaxgen.generative.augment import vector_augment
from jaxgen.generative.autoencoder import AE_FIT_CONFIG
from jaxgen.generative.autoencoder import Autoencoder
from jaxgen.generative.autoencoder import DenseAutoencoder
from jaxgen.generative.autoencoder import reconstruction_error
from jaxgen.generative.autoencoder import train_autoencoder
from jaxgen.generative.clustered import ClusteredConfig
from jaxgen.generative.clustered import ClusteredGenerator
from jaxgen.generative.clustered import fit_clustered_generator
from jaxgen.generative.clustered import pad_by_cluster
from jaxgen.generative.clustered import sample_clustered
from jaxgen.generative.contrastive import ContrastiveEncoder
from jaxgen.generative.contrastive import ContrastiveModel
from jaxgen.generative.contrastive import embed
from jaxgen.generative.contrastive import nt_xent_loss
from jaxgen.generative.contrastive import simclr_loss
from jaxgen.generative.contrastive import train_encoder
from jaxgen.generative.gan import LOSSES
from jaxgen.generative.gan import GANConfig
from jaxgen.generative.gan import GANResult
from jaxgen.generative.gan import GANSpec
from jaxgen.generative.gan import GANState
from jaxgen.generative.gan import compiled_trainer
from jaxgen.generative.gan import discriminator_loss
from jaxgen.generative.gan import generator_loss
from jaxgen.generative.gan import gradient_penalty
from jaxgen.generative.gan import init_state
from jaxgen.generative.gan import make_trainer
from jaxgen.generative.gan import mlp_gan
from jaxgen.generative.gan import r1_penalty
from jaxgen.generative.gan import sample
from jaxgen.generative.gan import train_gan
from jaxgen.generative.gan import train_gan_ablation
from jaxgen.generative.kmeans import KMeansResult
from jaxgen.generative.kmeans import assign
from jaxgen.generative.kmeans import kmeans
from jaxgen.generative.kmeans import kmeans_plus_plus
from jaxgen.generative.probe import LinearProbe
from jaxgen.generative.probe import probe_accuracy
from jaxgen.generative.probe import probe_logits
from jaxgen.generative.probe import train_linear_probe

__all__ = [
    # Autoencoder anomaly score (issue 19).
    "AE_FIT_CONFIG",
    "Autoencoder",
    "DenseAutoencoder",
    "reconstruction_error",
    "train_autoencoder",
    "LOSSES",
    "ClusteredConfig",
    "ClusteredGenerator",
    "ContrastiveEncoder",
    "ContrastiveModel",
    "GANConfig",
    "GANResult",
    "GANSpec",
    "GANState",
    "KMeansResult",
    "LinearProbe",
    "assign",
    "compiled_trainer",
    "compose",
    "cutout",
    "diff_augment",
    "discriminator_loss",
    "embed",
    "feature_dropout",
    "fit_clustered_generator",
    "gaussian_jitter",
    "gaussian_noise",
    "generator_loss",
    "gradient_penalty",
    "image_augment",
    "init_state",
    "kmeans",
    "kmeans_plus_plus",
    "make_trainer",
    "mlp_gan",
    "nt_xent_loss",
    "pad_by_cluster",
    "probe_accuracy",
    "probe_logits",
    "r1_penalty",
    "random_brightness",
    "random_flip",
    "random_rotation_2d",
    "random_scale",
    "random_shift",
    "sample",
    "sample_clustered",
    "simclr_loss",
    "train_encoder",
    "train_gan",
    "train_gan_ablation",
    "train_linear_probe",
    "vector_augment",
]

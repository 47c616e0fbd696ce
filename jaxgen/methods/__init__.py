"""jaxgen.methods."""

# Resonant anomaly detection (issue 19): CWoLa hunting, SA-CWoLa, SALAD, baselines.
from jaxgen.methods.anomaly_baselines import idealized_tagger
from jaxgen.methods.anomaly_baselines import supervised_tagger
from jaxgen.methods.cwola import CWOLA_EFFICIENCIES
from jaxgen.methods.cwola import KFoldResult
from jaxgen.methods.cwola import cwola_class_weights
from jaxgen.methods.cwola import cwola_hunt
from jaxgen.methods.cwola import cwola_loss
from jaxgen.methods.cwola import cwola_network
from jaxgen.methods.cwola import select_at_efficiencies
from jaxgen.methods.salad import SaladResult
from jaxgen.methods.salad import sa_cwola_hunt
from jaxgen.methods.salad import sa_cwola_loss
from jaxgen.methods.salad import salad_hunt
from jaxgen.methods.salad import salad_weights
from jaxgen.methods.salad import train_salad_reweighter

__all__ = [
    # Resonant anomaly detection (issue 19).
    "CWOLA_EFFICIENCIES",
    "KFoldResult",
    "SaladResult",
    "cwola_class_weights",
    "cwola_hunt",
    "cwola_loss",
    "cwola_network",
    "idealized_tagger",
    "sa_cwola_hunt",
    "sa_cwola_loss",
    "salad_hunt",
    "salad_weights",
    "select_at_efficiencies",
    "supervised_tagger",
    "train_salad_reweighter",
]

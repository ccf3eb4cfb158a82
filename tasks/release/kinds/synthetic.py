"""The ``synthetic`` release kind: rows sampled from a generative model fitted to the training
rows (``tasks.release.synthetic``)."""

from cloakflow.tasks.privacy.dp_synthetic import SYNTHETIC_STATEMENT
from cloakflow.tasks.release.kinds import ReleaseKind

SYNTHETIC = ReleaseKind(
    name="synthetic", command="cloakflow synthesize",
    flow="cloakflow.flows.synthesize:synthesize",
    parameters="cloakflow.flows.parameters:SynthesizeParameters",
    evaluations=("fidelity", "tstr", "constraints"),
    attacks=("dcr", "exact_copies", "membership", "anonymeter"),
    statement=SYNTHETIC_STATEMENT, label_in_clear=False, min_control_fraction=0.05,
    holder_release="synthetic release from the global model",
    holder_note="A holder's synthetic release draws its labels from its DP label counts.")

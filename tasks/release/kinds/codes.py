"""The ``codes`` release kind: the latent codes of the autoencoders, one table for the whole
table's model and one for the group models, a pseudonymisation (``tasks.release.codes``)."""

from cloakflow.tasks.release.codes import PSEUDONYMISATION_STATEMENT
from cloakflow.tasks.release.kinds import ReleaseKind

CODES = ReleaseKind(
    name="codes", command="cloakflow run", flow="cloakflow.flows.anonymize:anonymize",
    parameters="cloakflow.flows.parameters:RunParameters",
    evaluations=("utility", "importance"),
    attacks=("known_plaintext_inversion", "leaked_decoder", "reidentification", "membership",
             "dcr", "anonymeter"),
    statement=PSEUDONYMISATION_STATEMENT, label_in_clear=True,
    holder_release="codes release with the global models",
    holder_note="A holder's own codes release publishes one row per training and control row, "
                "so its row count is public there.")

"""Privacy attacks on an encoded release: the maths, free of Prefect and MLflow.

Every attack states what its attacker knows:

- *known-plaintext inversion*: the whole release plus a share ``p`` of source rows matched to
  their codes; fits code -> scaled source features (ridge regression and a small MLP) and
  reconstructs every other row.
- *leaked-model inversion*: the release plus the decoder(s).
- *re-identification*: a target's true quasi-identifiers plus the p = 1% inversion of the whole
  release; links the target to the nearest reconstructed row on the quasi-identifiers.
- *membership inference*: the trained autoencoder and a candidate row; thresholds the row's
  reconstruction loss (training rows vs held-out control rows).
- *distance to closest record*: how close decoded released rows lie to training rows, against
  how close unseen control rows lie to them.

Every computation over all rows is chunked (``chunk_rows``): no step holds a rows-by-rows matrix.

One module per attack; ``suite.run_attacks`` runs them all. Nothing here calls a Keras model
(``run_attacks`` receives the decoded view and the reconstruction losses), so the work can run in
a worker process.
"""

from cloakflow.tasks.privacy.attacks.anonymeter import profile_kind, run_anonymeter
from cloakflow.tasks.privacy.attacks.common import (
    CHUNK_ROWS,
    POLICY_FRACTION,
    Block,
    as_records,
    blocks_of,
    predict_chunked,
)
from cloakflow.tasks.privacy.attacks.dcr import distance_summary, distance_to_closest_record
from cloakflow.tasks.privacy.attacks.inversion import (
    REGRESSORS,
    known_plaintext_inversion,
    known_rows_count,
    make_regressor,
    score_reconstruction,
    strongest,
)
from cloakflow.tasks.privacy.attacks.membership import membership_inference, reconstruction_losses
from cloakflow.tasks.privacy.attacks.reidentification import (
    nearest_rows,
    reidentification,
    unique_share,
)
from cloakflow.tasks.privacy.attacks.suite import run_attacks

__all__ = ["CHUNK_ROWS", "POLICY_FRACTION", "REGRESSORS", "Block", "as_records", "blocks_of",
           "distance_summary", "distance_to_closest_record", "known_plaintext_inversion",
           "known_rows_count", "make_regressor", "membership_inference", "nearest_rows",
           "predict_chunked", "profile_kind", "reconstruction_losses", "reidentification",
           "run_anonymeter", "run_attacks", "score_reconstruction", "strongest", "unique_share"]

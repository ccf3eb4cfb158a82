"""anonymeter's evaluators on the product's records (``tasks.privacy.attacks.anonymeter``)."""

from __future__ import annotations

import numpy as np
import polars as pl

from cloakflow.tasks.data.preprocess import TablePreprocessor
from tests.helpers import make_tiny_frame


def test_anonymeter_runs_on_records(tiny_profile):
    from cloakflow.tasks.privacy.attacks import run_anonymeter

    profile = tiny_profile.model_copy(update={"privacy": tiny_profile.privacy.model_copy(
        update={"sensitive": ["owns"], "anonymeter_attacks": 50})})
    frame = make_tiny_frame(n=600, seed=2).select(profile.features)
    ori, control = frame[:400], frame[400:]
    out = run_anonymeter(ori, ori, control, profile, seed=0)  # a verbatim copy as "release"
    assert out["attacks"] == 50
    assert set(out) >= {"singling_out", "linkability", "inference"}
    link = out["linkability"]
    assert 0 <= link["risk"] <= 1 and link["ci"][0] <= link["risk"] <= link["ci"][1]
    assert link["attack_rate"] > link["control_rate"]  # a copy links its own rows


def test_decoded_records_keep_boolean_columns_boolean(tiny_profile):
    # anonymeter compares decoded records with the source rows: a bool column must come back
    # as bool, not as the text of its categories
    from cloakflow.tasks.privacy.attacks import as_records

    frame = make_tiny_frame(n=50).with_columns(pl.col("owns") == "yes")
    pre = TablePreprocessor(tiny_profile).fit(frame, "t.csv")
    back = as_records(pre, pre.transform(frame, "t.csv"), frame.select(tiny_profile.features))
    assert back.schema["owns"] == pl.Boolean
    assert back["owns"].to_list() == frame["owns"].to_list()


def test_anonymeter_says_when_singling_out_built_too_few_queries():
    # every row has many twins: no query can single one out, so a risk of 0 means nothing
    from cloakflow.tasks.data.profile import DatasetProfile
    from cloakflow.tasks.privacy.attacks import run_anonymeter

    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"age": rng.choice([30, 40], 200), "city": rng.choice(["a", "b"], 200),
                          "income": rng.choice([1.0, 2.0], 200),
                          "owns": rng.choice(["yes", "no"], 200)})
    profile = DatasetProfile.model_validate({
        "name": "twins", "target": {"column": "label", "positive": "yes"},
        "groups": {"g": ["age", "city", "income", "owns"]}, "quasi_identifiers": ["age", "city"],
        "privacy": {"sensitive": ["owns"], "anonymeter_attacks": 40}})
    out = run_anonymeter(frame[:150], frame[:150], frame[150:], profile, seed=0)
    assert out["singling_out"]["queries"] == 0
    assert out["singling_out"]["note"].startswith("0 of 40 queries built: inconclusive")

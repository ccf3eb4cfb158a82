from pathlib import Path

import pytest
import yaml

from cloakflow.tasks.data.profile import DatasetProfile, ProfileError, load_profile
from tests.helpers import tiny_profile_dict


def test_bank_marketing_profile_loads_with_its_suite():
    p = load_profile("bank-marketing")
    assert p.target.column == "y" and p.target.positive == "yes"
    assert p.drop == ["duration"]
    assert list(p.groups) == ["personal", "financial", "campaign", "economic"]
    assert len(p.features) == 19
    assert p.suite_path().is_file()
    assert p.group_of["euribor3m"] == "economic"


def test_profile_by_path(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny_profile_dict()))
    assert load_profile(path).name == "tiny"


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ProfileError, match="known datasets: .*bank-marketing"):
        load_profile("no-such-dataset")


@pytest.mark.parametrize("change, message", [
    ({"groups": {"a": ["x"], "b": ["x"]}}, "is in groups"),
    ({"groups": {"a": ["label"]}}, "target or dropped"),
    ({"groups": {"bad name": ["x"]}}, "identifier"),
    ({"missing": "guess"}, "missing"),
    ({"colour": "blue"}, "colour"),
])
def test_contract_violations_are_named(tmp_path: Path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_profile_dict(**change)))
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_missing_suite_file_is_an_error(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny_profile_dict(expectations="nowhere.json")))
    with pytest.raises(ProfileError, match="nowhere.json"):
        load_profile(path)


def test_features_follow_group_order():
    p = DatasetProfile.model_validate(tiny_profile_dict())
    assert p.features == ["age", "city", "income", "owns"]


def test_a_sensitive_target_is_attacked_in_synthetic_rows_not_in_codes():
    import numpy as np
    import polars as pl

    from cloakflow.tasks.privacy.attacks.anonymeter import run_anonymeter
    from cloakflow.tasks.privacy.policy import protected_attributes

    profile = DatasetProfile.model_validate(
        tiny_profile_dict(privacy={"sensitive": ["owns", "label"], "anonymeter_attacks": 20}))
    # a codes release publishes the label beside the codes: the inversion limits skip it
    assert protected_attributes(profile) == ["owns"]
    rng = np.random.default_rng(0)

    def rows(n):
        return pl.DataFrame({"age": rng.integers(20, 70, n), "city": rng.choice(["a", "b"], n),
                             "income": rng.normal(50, 10, n), "owns": rng.choice(["y", "n"], n),
                             "label": rng.choice(["yes", "no"], n)})
    risks = run_anonymeter(rows(200), rows(200), rows(100), profile, seed=0)
    assert set(risks["inference"]) == {"owns", "label"}
    # without the label among the released columns (a codes release's decoded features) it is
    # not attacked there
    no_label = run_anonymeter(*(f.drop("label") for f in (rows(200), rows(200), rows(100))),
                              profile, seed=0)
    assert set(no_label["inference"]) == {"owns"}

import numpy as np
import pytest

from cloakflow.tasks.data.split import split_reported, split_rows


def test_stratified_seeded_and_disjoint():
    y = np.array([0] * 90 + [1] * 10)
    train, control = split_rows(y, 0.2, seed=1)
    assert len(control) == 20 and y[control].sum() == 2
    assert not set(train) & set(control) and len(train) + len(control) == 100
    assert (np.diff(train) > 0).all()  # file order kept
    again = split_reported(y, 0.2, 1)
    np.testing.assert_array_equal(again[1], control)
    assert not np.array_equal(split_rows(y, 0.2, seed=2)[1], control)


def test_zero_fraction_keeps_everything():
    train, control = split_rows(np.zeros(10), 0.0, seed=0)
    assert len(train) == 10 and len(control) == 0


def test_fraction_bounds():
    with pytest.raises(ValueError, match="control_fraction"):
        split_rows(np.zeros(10), 0.9, seed=0)


def _profile(positive):
    from cloakflow.tasks.data.profile import DatasetProfile
    from tests.helpers import tiny_profile_dict

    return DatasetProfile.model_validate(tiny_profile_dict(
        target={"column": "label", "positive": positive}))


@pytest.mark.parametrize("positive", [True, "true", "True"])
def test_boolean_target_matches_true_written_either_way(positive):
    import polars as pl

    from cloakflow.tasks.data.split import positive_labels

    frame = pl.DataFrame({"label": [True, False, None, True]})
    assert positive_labels(frame, _profile(positive)).tolist() == [1, 0, 0, 1]
    text = pl.DataFrame({"label": ["true", "false", "true", "false"]})  # booleans read as text
    assert positive_labels(text, _profile(positive)).tolist() == [1, 0, 1, 0]


def _check(labels: list, positive="yes", control=0.1, folds=3):
    import polars as pl

    from cloakflow.tasks.data.split import check_target, positive_labels

    frame = pl.DataFrame({"label": labels})
    profile = _profile(positive)
    return check_target(frame, profile, positive_labels(frame, profile), control, folds,
                        "t.csv")


def test_degenerate_targets_are_refused_before_training_with_the_counts():
    from cloakflow.tasks.data.split import TargetError

    with pytest.raises(TargetError, match=r"t.csv, target column 'label': the positive value "
                                          r"'Yes' .*matches no row; values present: \['no', "
                                          r"'yes'\]"):
        _check(["yes", "no"] * 20, positive="Yes")
    with pytest.raises(TargetError, match=r"1 positive row\(s\) of 40: the stratified control "
                                          r"split .*--control-fraction 0"):
        _check(["yes"] + ["no"] * 39)
    with pytest.raises(TargetError, match=r"cannot fill 10 stratified folds \(--folds 10\)"):
        _check(["yes", "no", "no", "yes", "no", "yes", "no", "no"], control=0.0, folds=10)
    with pytest.raises(TargetError, match="holds 1 row, and a stratified split needs one row"):
        _check(["yes"] * 3 + ["no"] * 5, control=0.1)
    with pytest.raises(TargetError, match="every one of the 6 rows is positive"):
        _check(["yes"] * 6)


def test_few_positives_per_fold_are_flagged_unreliable():
    assert "unreliable: about 3.0 positive rows per test fold" in _check(
        ["yes"] * 9 + ["no"] * 291, control=0.0, folds=3)
    assert _check(["yes"] * 100 + ["no"] * 200, control=0.1, folds=3) is None


def test_duplicate_feature_rows_never_straddle_the_split():
    from cloakflow.tasks.data.split import count_duplicates, feature_groups
    from tests.helpers import duplicated_table

    frame = duplicated_table()
    features = ["age", "income", "city"]
    groups = feature_groups(frame, features)
    dup = count_duplicates(frame, features, "label", groups)
    assert dup.feature_rows == 400 and dup.groups == 600 and dup.share == pytest.approx(0.4)
    assert 0 < dup.whole_rows < 400 and dup.conflicting_groups > 0
    assert "400 of 1000 rows (40.0%)" in dup.describe()
    y = (frame.get_column("label") == "yes").to_numpy().astype(int)
    train, control = split_rows(y, 0.2, seed=3, groups=groups)
    assert not set(groups[train]) & set(groups[control])  # no control row was trained on
    assert len(train) + len(control) == 1000 and 120 <= len(control) <= 280
    keys = frame.select(features).with_row_index()
    trained = keys[train].drop("index")
    assert keys[control].drop("index").join(trained, on=features, how="semi").height == 0
    # the row split this replaces put copies of training rows into the control set
    _, row_control = split_rows(y, 0.2, seed=3)
    assert keys[row_control].drop("index").join(trained, on=features, how="semi").height > 0
    # the DP split's coins are per group too
    secret_train, secret_control = split_rows(y, 0.2, seed=None, groups=groups)
    assert not set(groups[secret_train]) & set(groups[secret_control])


def test_a_table_without_duplicates_splits_as_before():
    from sklearn.model_selection import train_test_split

    y = np.array([0] * 90 + [1] * 10)
    _, before = train_test_split(np.arange(100), test_size=0.2, stratify=y, random_state=5)
    _, control = split_rows(y, 0.2, seed=5, groups=np.arange(100))
    np.testing.assert_array_equal(control, np.sort(before))


def test_feature_groups_treat_nulls_as_equal_values():
    import polars as pl

    from cloakflow.tasks.data.split import feature_groups

    frame = pl.DataFrame({"a": [1, 2, 1, None, None], "b": ["x", "y", "x", None, "z"]})
    assert feature_groups(frame, ["a", "b"]).tolist() == [0, 1, 0, 2, 3]
    assert feature_groups(frame, ["a"]).tolist() == [0, 1, 0, 2, 2]


def test_a_multiclass_or_numeric_label_is_not_silently_made_binary():
    import polars as pl

    from cloakflow.tasks.data.split import TargetError, check_target, positive_labels

    frame = pl.DataFrame({"label": ["low"] * 50 + ["medium"] * 30 + ["high"] * 20})
    profile = _profile("high")
    with pytest.raises(TargetError, match=r"t.csv, target column 'label': 3 distinct values "
                                          r"\('low' 50, 'medium' 30, 'high' 20\).*"
                                          r"one_vs_rest: true"):
        check_target(frame, profile, positive_labels(frame, profile), 0.1, 3, "t.csv")
    income = pl.DataFrame({"label": np.arange(100) * 1000.0})
    with pytest.raises(TargetError, match=r"100 distinct values \(0.0 1, .*\(92 more\)"):
        check_target(income, _profile(5000.0), positive_labels(income, _profile(5000.0)),
                     0.1, 3, "t.csv")
    ovr = profile.model_copy(update={"target": profile.target.model_copy(
        update={"one_vs_rest": True})})
    assert "unreliable" in check_target(frame, ovr, positive_labels(frame, ovr), 0.1, 3,
                                        "t.csv")  # refused no more: 20 positives, 3 folds


def _kind_profile(kind: str):
    from cloakflow.tasks.data.profile import DatasetProfile
    from tests.helpers import tiny_profile_dict

    return DatasetProfile.model_validate(tiny_profile_dict(
        target={"column": "label", "kind": kind}))


def test_multiclass_and_numeric_targets_are_labelled_and_checked_by_kind():
    import polars as pl

    from cloakflow.tasks.data.split import TargetError, check_target, strata, target_labels

    risk = pl.DataFrame({"label": ["low"] * 50 + ["medium"] * 30 + ["high"] * 20})
    multi = _kind_profile("multiclass")
    y = target_labels(risk, multi)
    assert np.bincount(y).tolist() == [20, 50, 30]  # classes sorted: high, low, medium
    assert "about 6.0 rows of the rarest class per test fold" in check_target(
        risk, multi, y, 0.1, 3, "t.csv")
    rare = pl.DataFrame({"label": ["a"] * 60 + ["b"] * 38 + ["c"] * 2})
    with pytest.raises(TargetError, match=r"classes \['c'\] are too rare \('a' 60, 'b' 38, "
                                          r"'c' 2\)"):
        check_target(rare, multi, target_labels(rare, multi), 0.1, 3, "t.csv")
    income = pl.DataFrame({"label": np.random.default_rng(0).lognormal(10, 1, 200)})
    with pytest.raises(TargetError, match=r"200 distinct values .* for a multiclass target "
                                          r"\(rule: at most 50 classes.*`kind: numeric`"):
        check_target(income, multi, target_labels(income, multi), 0.1, 3, "t.csv")
    numeric = _kind_profile("numeric")
    values = target_labels(income, numeric)
    assert values.dtype == np.float64 and check_target(income, numeric, values, 0.1, 3,
                                                       "t.csv") is None
    bins = strata(values, "numeric")
    assert sorted(np.bincount(bins).tolist()) == [40] * 5  # quantile bins for the split
    with pytest.raises(TargetError, match=r"declared numeric but holds String values"):
        check_target(risk, numeric, target_labels(risk, numeric), 0.1, 3, "t.csv")
    gaps = pl.DataFrame({"label": [1.0, None] * 50})
    with pytest.raises(TargetError, match=r"50 of 100 rows have no value \(rule: a numeric "
                                          r"target has a value in every row\)"):
        check_target(gaps, numeric, target_labels(gaps, numeric), 0.1, 3, "t.csv")


def test_a_profile_target_kind_takes_positive_only_when_binary():
    from cloakflow.tasks.data.profile import DatasetProfile
    from tests.helpers import tiny_profile_dict

    with pytest.raises(ValueError, match=r"is binary \(the default kind\): give `positive:`"
                                         r".*kind: multiclass"):
        DatasetProfile.model_validate(tiny_profile_dict(target={"column": "label"}))
    with pytest.raises(ValueError, match="belong to a binary target, not kind 'numeric'"):
        DatasetProfile.model_validate(tiny_profile_dict(
            target={"column": "label", "kind": "numeric", "positive": 1}))

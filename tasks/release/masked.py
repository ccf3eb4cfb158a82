"""Masked releases (Prefect-free): which cells are masked, their K-fold imputation, the
evaluation, the report and the manifest of real rows whose chosen cells a GAN imputer
(``models.imputer``) regenerated.

What is measured (``evaluate``), on the masked cells of the released training rows:

- **regenerated cells against the truth**: per masked column the share of cells equal to the
  true value and the distribution score of the regenerated cells against the true ones (KS
  complement for a numeric column, TV complement for a categorical one), beside three
  baselines on the same masks: a draw from the column's marginal, scikit-learn's
  ``IterativeImputer`` with posterior sampling (a draw, as the release's) and an ExtraTrees
  imputer (MissForest-style: ``IterativeImputer`` with ``ExtraTreesRegressor``, a mean);
- **re-identification** by the quasi-identifiers before and after masking, and linkage;
- **utility kept**: as a desensitized release's, every column released.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from cloakflow.tasks import console

STATEMENT = (
    "Each released row is a source training row in which the chosen cells were regenerated: "
    "drawn by a GAN imputer from their distribution given the row's other cells, by a model "
    "trained on the other folds' rows (never on the row itself); the true values of those "
    "cells are not published. Every other cell is the source value. The rows derive "
    "one-to-one from real rows: this release protects the masked cells as measured in "
    "evaluation.cells and the re-identification by the masked quasi-identifiers, not "
    "membership. No differential-privacy guarantee is claimed.")

BASELINE_ROWS = 5_000  # unmasked rows the baseline imputers fit beside the masked ones
RULES = ("unique", "all")


class MaskError(ValueError):
    """A mask that cannot be built: no column, an unknown column, the target, every feature,
    or no row selected."""

    exit_code = 2  # the command line's exit status
    headline = "INPUT REJECTED, nothing was published."


def check_columns(profile, columns: list[str] | None, where: str) -> list[str]:
    """The ``--columns`` checked against the profile alone (before anything runs).

    Raises:
        MaskError: as ``mask_plan``'s column rules.
    """
    from cloakflow.tasks.release.desensitized import chosen_columns

    names = chosen_columns(profile, columns, list(profile.quasi_identifiers),
                           f"{where}: --columns", "--columns", "quasi_identifiers", "a masked",
                           MaskError)
    if set(profile.features) <= set(names):
        raise MaskError(f"{where}: --columns: every feature column is masked: nothing is left "
                        "to impute from")
    return names


def mask_plan(pre, train: pl.DataFrame, columns: list[str] | None, rule: str,
              source: str) -> tuple[list[str], np.ndarray]:
    """(the masked columns, the rows masked: bool (rows,)) of the training rows.

    ``columns``: the columns to regenerate (None: the profile's quasi-identifiers); ``rule``:
    ``unique`` masks them in the rows unique on the profile's quasi-identifiers (the rows a
    linkage by them singles out), ``all`` in every row.

    Raises:
        MaskError: no column given or declared; a column that is not a feature; the target;
            every feature; a rule that selects no row.
    """
    profile = pre.profile
    names = check_columns(profile, columns, source)
    if rule not in RULES:
        raise MaskError(f"{source}: --rows {rule!r}: choose one of {list(RULES)}")
    if rule == "all":
        return names, np.ones(train.height, dtype=bool)
    qis = list(profile.quasi_identifiers)
    if not qis:
        raise MaskError(f"{source}: --rows unique needs quasi_identifiers in profile "
                        f"{profile.name!r} (or use --rows all)")
    key = pl.concat_str([pl.col(c).cast(pl.String).fill_null("\0") for c in qis],
                        separator="\x1f")
    rows = train.select(key.alias("k")).get_column("k").is_unique().to_numpy()
    if not rows.any():
        raise MaskError(f"{source}: --rows unique: no training row is unique on the "
                        f"quasi-identifiers {qis}: nothing to mask")
    return names, rows


def column_mask(pre, columns: list[str], rows: np.ndarray) -> tuple[tuple[int, ...],
                                                                     np.ndarray]:
    """(the masked heads' indices, the imputer's mask (rows, k): 0 where a cell is
    regenerated)."""
    heads = tuple(i for i, s in enumerate(pre.specs) if s.name in columns
                  or s.missing_of in columns)
    mask = np.ones((len(rows), len(heads)), dtype=np.float32)
    mask[rows] = 0.0
    return heads, mask


def folds_of(rows: int, k: int, seed: int) -> np.ndarray:
    """Each row's fold in 0..k-1, a seeded permutation."""
    return np.random.default_rng([seed, 13]).permutation(rows) % k


def _cell_values(frame: pl.DataFrame, column: str, rows: np.ndarray) -> pl.Series:
    return frame.get_column(column).filter(pl.Series(rows))


def cell_scores(truth: pl.Series, drawn: pl.Series) -> dict:
    """Share equal to the truth and the distribution score (KS complement for numbers, TV
    complement for categories) of regenerated cells against the true ones."""
    from scipy.stats import ks_2samp

    equal = float((truth.cast(pl.String).fill_null("\0") ==
                   drawn.cast(pl.String).fill_null("\0")).mean())
    if truth.dtype.is_numeric() and drawn.dtype.is_numeric():
        a, b = truth.drop_nulls().to_numpy(), drawn.drop_nulls().to_numpy()
        score = 1 - float(ks_2samp(a, b).statistic) if len(a) and len(b) else None
        return {"equal_to_truth": equal, "ks_complement": score}
    values = sorted(set(truth.cast(pl.String).to_list()) | set(drawn.cast(pl.String).to_list()))
    p = np.array([(truth.cast(pl.String) == v).mean() for v in values])
    q = np.array([(drawn.cast(pl.String) == v).mean() for v in values])
    return {"equal_to_truth": equal, "tv_complement": float(1 - 0.5 * np.abs(p - q).sum())}


def baselines(pre, x: np.ndarray, heads: tuple[int, ...], rows: np.ndarray,
              folds: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The masked rows with their masked cells imputed by three baselines (name -> the masked
    rows, preprocessor space), each fold by the rows of the other folds with their true
    values, as the release's own imputers: ``marginal`` (each cell drawn from those rows'
    values), ``iterative`` (``IterativeImputer``, BayesianRidge, ``sample_posterior``: a draw;
    a category block's imputed cells clipped at 0 and drawn from as weights) and
    ``extra_trees`` (``IterativeImputer`` with ``ExtraTreesRegressor``: MissForest-style, a
    mean; a category block decoded by its largest cell). The imputers fit on the fold's
    masked rows and a seeded sample of ``BASELINE_ROWS`` rows of the other folds."""
    import warnings

    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    families = pre.heads()
    blocks = [(a, b, families[i][0]) for i, (_, a, b) in enumerate(pre.column_blocks())
              if i in heads]
    rng = np.random.default_rng([seed, 14])
    masked = np.flatnonzero(rows)
    names = ("marginal", "iterative", "extra_trees")
    out = {n: x[masked].copy() for n in names}
    console.step("evaluating: the baseline imputers (marginal, IterativeImputer, ExtraTrees)")
    for fold in np.unique(folds[masked]):
        inside = masked[folds[masked] == fold]
        where = np.flatnonzero(folds[masked] == fold)  # positions in ``masked``
        others = np.flatnonzero(folds != fold)
        donors = others if len(others) <= BASELINE_ROWS else rng.choice(
            others, BASELINE_ROWS, replace=False)
        for a, b, _ in blocks:
            out["marginal"][where, a:b] = x[rng.choice(others, len(inside)), a:b]
        holes = np.concatenate([x[inside], x[donors]]).astype(np.float64)
        for a, b, _ in blocks:
            holes[:len(inside), a:b] = np.nan
        for name, imputer in (
                ("iterative", IterativeImputer(sample_posterior=True, max_iter=5,
                                               random_state=seed, keep_empty_features=True)),
                ("extra_trees", IterativeImputer(
                    estimator=ExtraTreesRegressor(n_estimators=30, min_samples_leaf=3,
                                                  random_state=seed, n_jobs=1),
                    max_iter=3, random_state=seed, keep_empty_features=True))):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                filled = imputer.fit_transform(holes)[:len(inside)]
            for a, b, family in blocks:
                cells = filled[:, a:b]
                if family == "numeric":
                    out[name][where, a] = np.clip(cells[:, 0], 0, 1)
                    continue
                if name == "iterative":  # a draw: the imputed cells as weights
                    weights = np.clip(cells, 0, None) + 1e-9
                    weights /= weights.sum(axis=1, keepdims=True)
                    pick = (rng.random((len(cells), 1)) > np.cumsum(weights, axis=1)).sum(
                        axis=1).clip(0, b - a - 1)
                else:
                    pick = cells.argmax(axis=1)
                out[name][where, a:b] = np.eye(b - a, dtype=np.float32)[pick]
    return out


def exact_linkage(train: pl.DataFrame, released: pl.DataFrame, columns: list[str]) -> dict:
    """Linkage by the cells a masked release keeps: the share of released rows whose values
    in every unmasked column (``columns`` left out) match exactly one training row, their
    own source row (rows in the same order here; the published order is secret)."""
    kept = [c for c in released.columns if c not in columns]
    if not kept:
        return {"columns": [], "linked": 0.0}
    key = pl.concat_str([pl.col(c).cast(pl.String).fill_null("\0") for c in kept],
                        separator="\x1f")
    source = train.select(key.alias("k")).get_column("k")
    out = released.select(key.alias("k")).get_column("k")
    unique = set(source.value_counts().filter(pl.col("count") == 1).get_column("k").to_list())
    linked = [(a == b) and (a in unique) for a, b in zip(out.to_list(), source.to_list(),
                                                          strict=True)]
    return {"columns": kept, "linked": float(np.mean(linked)) if linked else 0.0}


def evaluate(pre, profile, columns: list[str], heads: tuple[int, ...], rows: np.ndarray,
             folds: np.ndarray, *, x_train: np.ndarray, x_released: np.ndarray,
             x_control: np.ndarray, train: pl.DataFrame, released: pl.DataFrame, seed: int,
             attacks: bool = True) -> dict:
    """Every figure of a masked release (module docstring; ``folds``: each training row's
    fold, as the release's imputers): ``{"masked": counts, "cells":
    {column: {method: scores}}, "utility": ..., "reidentification": ..., "linkage": ...}``
    (the attack sections absent without ``attacks``)."""
    from cloakflow.tasks.release import desensitized as des

    out: dict = {"masked": {"rows": int(rows.sum()), "of_rows": int(len(rows)),
                            "columns": list(columns)}}
    methods = {"release": released.filter(pl.Series(rows))}
    for name, m in baselines(pre, x_train, heads, rows, folds, seed).items():
        methods[name] = pre.reverse_transform(m)
    cells = {}
    for col in columns:
        truth = _cell_values(train, col, rows)
        cells[col] = {name: cell_scores(truth, frame.get_column(col))
                      for name, frame in methods.items()}
    out["cells"] = cells
    roles = des.Roles(tuple(), tuple(), tuple(i for i, s in enumerate(pre.specs)
                                              if profile.target.column in (s.name,
                                                                           s.missing_of)),
                      tuple(i for i, s in enumerate(pre.specs) if profile.target.column
                            not in (s.name, s.missing_of)),
                      tuple((a, b) for _, a, b in pre.column_blocks()))
    out["utility"] = des.utility_kept(pre, profile, roles, x_train, x_released, x_control,
                                      seed)
    if attacks:
        out["reidentification"] = des.reidentification(profile, train, released)
        out["linkage"] = des.linkage(x_train[:, roles.published],
                                     x_released[:, roles.published], seed)
        out["linkage"]["exact"] = exact_linkage(train, released, columns)
    return out


def measure(evaluation: dict) -> dict[str, float | None]:
    """The policy's quantities: the largest excess of the release's share of regenerated
    cells equal to the truth over the posterior-sampling imputer's, over the masked columns;
    re-identification after masking."""
    cells = evaluation.get("cells") or {}
    excess = [c["release"]["equal_to_truth"] - c["iterative"]["equal_to_truth"]
              for c in cells.values()]
    reid = evaluation.get("reidentification") or {}
    return {"max_truth_excess": max(excess) if excess else None,
            "max_reidentification": reid.get("after")}


def judged(evaluation: dict, profile, columns: list[str]):
    """The measurements as the one gate reads them (``tasks.release.kinds.Judged``)."""
    from cloakflow.tasks.release.kinds import Judged, limits_of

    util = evaluation.get("utility", {})
    qis = (evaluation.get("reidentification") or {}).get("quasi_identifiers", [])
    return Judged(measured={"masked": measure(evaluation)},
                  limits=limits_of(profile, "masked").model_dump(),
                  expected={"max_truth_excess": list(columns),
                            "max_reidentification": list(qis)},
                  utility=(f"forest {util.get('metric', 'roc_auc')} trained on the release",
                           util.get("forest", {}).get("release")),
                  missing="no masked cell to score",
                  covered={"max_truth_excess": list(columns),
                           "max_reidentification": list(qis)})


def _f(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def report_markdown(dataset: str, evaluation: dict, gate: dict, *, rule: str) -> str:
    """The one-page report of a masked release."""
    m = evaluation["masked"]
    lines = [f"# Masked release of `{dataset}`", "",
             f"{m['of_rows']} real rows; in {m['rows']} of them ({rule} rule) the cells of "
             f"{', '.join(f'`{c}`' for c in m['columns'])} were regenerated by the GAN "
             "imputer (each row by a model trained on the other folds). **The rows derive "
             "one-to-one from real rows**: the masked cells are protected, not membership.",
             "", f"Verdict: **{gate['verdict']}**"
             + (f" (crossed: {'; '.join(gate['crossed'])})" if gate.get("crossed") else ""),
             "", "## Regenerated cells against the truth", "",
             "Share equal to the true value, and the distribution score (KS complement for a "
             "numeric column, TV complement for a categorical one) against the true values "
             "of the masked cells; beside a marginal draw, IterativeImputer's posterior draw "
             "and an ExtraTrees imputer on the same masks.", "",
             "| column | method | equal to truth | distribution score |", "|---|---|---|---|"]
    for col, methods in evaluation["cells"].items():
        for name, s in methods.items():
            score = s.get("ks_complement", s.get("tv_complement"))
            lines.append(f"| {col} | {name} | {_f(s['equal_to_truth'])} | {_f(score)} |")
    util = evaluation.get("utility", {})
    if "skipped" not in util:
        lines += ["", "## Utility kept", "", f"{util['metric']} on the real control rows of "
                  "learners trained on:", "", "| learner | the release | the source rows |",
                  "|---|---|---|"]
        lines += [f"| {k} | {_f(util[k]['release'])} | {_f(util[k]['source'])} |"
                  for k in ("forest", "lightgbm")]
    reid, link = evaluation.get("reidentification"), evaluation.get("linkage")
    if reid:
        lines += ["", "## Re-identification and linkage", ""]
        if reid.get("quasi_identifiers"):
            lines.append(f"Rows unique on the quasi-identifiers "
                         f"({', '.join(reid['quasi_identifiers'])}): {_f(reid['before'])} "
                         f"before masking; targets linked to their own released row by them "
                         f"after: {_f(reid['after'])}.")
        if link:
            lines.append(f"Released rows whose nearest real row is their own source row: "
                         f"{_f(link['own_row_nearest'])} (of {link['rows']} looked up).")
            exact = link.get("exact")
            if exact and exact["columns"]:
                lines.append(f"Released rows linked exactly to their own source row by the "
                             f"cells kept ({', '.join(exact['columns'])}): "
                             f"{_f(exact['linked'])}: the unmasked cells are real values.")
    lines += ["", "## Policy", "", "| limit | bound | measured |", "|---|---|---|"]
    lines += [f"| {k} | {_f(v)} | {_f(gate['measured'].get(k))} |"
              for k, v in gate["limits"].items()]
    return "\n".join(lines) + "\n"


def report_metrics(evaluation: dict, gate: dict) -> dict[str, float]:
    out = {}
    for col, methods in evaluation.get("cells", {}).items():
        for name, s in methods.items():
            for k, v in s.items():
                if v is not None:
                    out[f"cells.{col}.{name}.{k}"] = v
    from cloakflow.tasks.release.desensitized import utility_metrics

    out.update(utility_metrics(evaluation.get("utility", {})))
    out.update({f"policy.{k}": v for k, v in gate["measured"].items() if v is not None})
    return out


def manifest(*, profile, params: dict, data, parent: str, flow_run_id: str,
             frame: pl.DataFrame, configs: list, logs: list, evaluation: dict, gate: dict,
             columns: list[str]) -> dict:
    """The manifest of a masked release (JSON-ready, ``MaskedManifest``)."""
    from cloakflow.tasks import tracking
    from cloakflow.tasks.data.ingest import stated_conversions
    from cloakflow.tasks.release.kinds import label_statement
    from cloakflow.tasks.release.manifest import (
        GROUPED_ON,
        ROW_ORDER,
        SCHEMA_VERSION,
        MaskedManifest,
        Source,
    )
    from cloakflow.tasks.release.publish import code_version

    out = {
        "schema_version": SCHEMA_VERSION, "dataset": profile.name, "kind": "masked",
        "model": {"kind": "imputer", "config": configs[0].to_dict(), "folds": len(configs),
                  "epochs_run": [log.epochs_run for log in logs],
                  "seconds": round(sum(log.seconds for log in logs), 2),
                  "seed": params["seed"],
                  "training": "plain, one imputer per fold on the other folds' rows (random "
                              "training masks); each fold's masked cells drawn by its own"},
        "source": Source(file=data.source_name, sha256=data.source_sha,
                         format=data.source_format).model_dump(exclude_none=True),
        "profile": profile.public_dump(), "rows": frame.height, "label": profile.target.column,
        "masked_columns": list(columns), "masked_rows": evaluation["masked"]["rows"],
        "seed": params["seed"], "parameters": params,
        "columns": [{"name": c, "dtype": str(frame.schema[c]),
                     "nullable": frame.get_column(c).null_count() > 0} for c in frame.columns],
        "conversions": stated_conversions(profile, params.get("input_path"),
                                          released=dict(frame.schema)),
        "mlflow": {"tracking_uri": tracking.portable_uri(), "run_id": parent,
                   "experiment": f"cloakflow/{profile.name}"},
        "prefect_flow_run_id": flow_run_id, "code_version": code_version(),
        "row_order": ROW_ORDER,
        "privacy": {"statement": STATEMENT + " " + label_statement(profile.target, "masked"),
                    "model_in_release": False, "verdict": gate["verdict"], "policy": gate},
        "split": {"training_rows": len(data.x), "control_rows": len(data.x_control),
                  "control_fraction": params["control_fraction"], "seed": params["seed"],
                  "stratified_on": profile.target.column, "grouped_on": GROUPED_ON,
                  "released": "the training rows, their masked cells regenerated; the control "
                              "rows are never released"},
        "evaluation": evaluation,
    }
    MaskedManifest.model_validate(out)
    return out

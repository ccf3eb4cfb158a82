"""The synthetic release: what the ``synthesize`` flow trains, samples, measures and judges.

Prefect-free except for the task wrappers at the end. The steps:

- ``Conditioning``: which column the VAE is conditioned on (the target, or the column of
  ``--condition COLUMN=VALUE``) and, with a value, the one category every row gets.
- ``evaluate``: fidelity (``tasks.evaluation.fidelity``), TSTR beside TRTR
  (``tasks.evaluation.tstr``), distances and membership inference built for synthetic data
  (``tasks.privacy.attacks.synthetic``) and anonymeter, all against the control rows that were
  never trained on.
- ``judge``: the profile's policy limits for synthetic rows (DCR share, exact copies over the
  control rows' own rate, membership AUC and TPR at 1% FPR).
- ``report_markdown`` and ``plot_columns`` / ``plot_associations``: the one-page report and its
  figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cloakflow.tasks import console
from cloakflow.tasks.data.kinds import common_types
from cloakflow.tasks.data.preprocess import PreprocessError, TablePreprocessor
from cloakflow.tasks.data.profile import DatasetProfile

MLFLOW_MODEL = {"vae": "vae_decoder", "gan": "gan_generator"}  # the network MLflow keeps
SMALL_CONTROL = 200  # control rows below which the report calls its figures rough
SYNTHETIC_LIMITS = ("max_dcr_share", "max_exact_copy_excess", "max_membership_auc",
                    "max_membership_tpr", "max_detection_auc")


@dataclass(frozen=True)
class Conditioning:
    """The column the VAE is conditioned on, or none (``UNCONDITIONED``).

    Attributes:
        column: its name; index: its position in ``TablePreprocessor.specs`` (both None: the
            VAE is unconditioned, as for a numeric target, which it models as a column).
        categories: its categories (training domain or public bounds), as text; one category
            ("all rows") when unconditioned, so that its histogram is the row count.
        fixed: the category index every synthetic row gets (``--condition``), or None to draw
            conditions from the (DP) distribution.
    """

    column: str | None
    index: int | None
    categories: tuple[str, ...]
    fixed: int | None = None

    @property
    def value(self) -> str | None:
        return None if self.fixed is None else self.categories[self.fixed]

    def counts(self, x: np.ndarray, pre: TablePreprocessor) -> np.ndarray:
        """Rows per category of ``x`` (an encoded matrix): the condition histogram (one bin,
        the row count, when unconditioned)."""
        if self.index is None:
            return np.array([float(len(x))])
        return x[:, block(pre, self.index)].sum(axis=0)


UNCONDITIONED = Conditioning(None, None, ("all rows",))


def parse_condition(text: str | None, pre: TablePreprocessor, source: str) -> Conditioning:
    """``COLUMN=VALUE`` (or None: the target, no fixed value) as a ``Conditioning``.

    Raises:
        PreprocessError: malformed text, a column that is not modelled or not categorical, or a
            value outside its categories; the message names the column and what is allowed.
    """
    target = pre.profile.target.column
    column, value = target, None
    if text is None and pre.profile.target.kind == "numeric":
        return UNCONDITIONED  # a numeric target is modelled as a column, not a condition
    if text is not None:
        column, sep, value = text.partition("=")
        column, value = column.strip(), value.strip()
        if not sep or not column or not value:
            raise PreprocessError(f"--condition {text!r}: write COLUMN=VALUE, e.g. "
                                  f"{target}={pre.profile.target.positive}")
    specs = {s.name: (i, s) for i, s in enumerate(pre.specs) if s.missing_of is None}
    if column not in specs:
        raise PreprocessError(f"{source}: --condition names column {column!r}, which the "
                              f"profile does not model; modelled columns: {sorted(specs)}")
    i, spec = specs[column]
    if spec.family != "categorical":
        raise PreprocessError(f"{source}: --condition column {column!r} is a continuous "
                              f"{spec.kind} column: the VAE can be conditioned on a categorical,"
                              " boolean or discrete numeric column only")
    fixed = None
    if value is not None:
        if value not in spec.categories:
            raise PreprocessError(
                f"{source}: --condition {column}={value}: {value!r} is not a category of "
                f"{column!r} (rule: training domain or public bounds); its categories: "
                f"{spec.categories[:20]}")
        fixed = spec.categories.index(value)
    return Conditioning(column, i, tuple(spec.categories), fixed)


def block(pre: TablePreprocessor, index: int) -> slice:
    """The output columns of spec ``index``."""
    _, start, stop = pre.column_blocks()[index]
    return slice(start, stop)


def draw_conditions(rows: int, cond: Conditioning, shares: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Each synthetic row's condition index: the fixed value, or drawn from ``shares``."""
    if cond.fixed is not None:
        return np.full(rows, cond.fixed, dtype=np.int64)
    return rng.choice(len(shares), size=rows, p=shares)


def keep_condition(x_syn: np.ndarray, pre: TablePreprocessor, cond: Conditioning) -> None:
    """The condition column of every synthetic row is given, so never missing: its
    missing-value flag (if the column has one) is set to present, in place."""
    if cond.column is None:
        return
    for i, spec in enumerate(pre.specs):
        if spec.missing_of == cond.column:
            flag = block(pre, i)
            x_syn[:, flag] = 0.0
            x_syn[:, flag.start] = 1.0  # categories ["false", "true"]: not missing


def positive_labels(x: np.ndarray, pre: TablePreprocessor) -> np.ndarray:
    """1 where the target's one-hot block holds the profile's positive label, shape (rows,)
    (a boolean target's positive written true/yes/1 alike, as ``split.positive_labels``)."""
    from cloakflow.tasks.data.split import _TRUE

    target = pre.profile.target
    i = next(i for i, s in enumerate(pre.specs) if s.name == target.column)
    spec = pre.specs[i]
    wanted = str(target.positive)
    if spec.kind == "boolean":
        wanted = "true" if wanted.strip().lower() in _TRUE else "false"
    elif wanted not in spec.categories and wanted.lower() in spec.categories:
        wanted = wanted.lower()
    if wanted not in spec.categories:
        return np.zeros(len(x), dtype=int)  # matches no row (check_target refused earlier)
    cells = x[:, block(pre, i)]
    return ((cells.argmax(axis=1) == spec.categories.index(wanted))
            & (cells.max(axis=1) > 0)).astype(int)


def target_values(x: np.ndarray, frame: pl.DataFrame, pre: TablePreprocessor) -> np.ndarray:
    """The target of rows ``x`` (their decoded source columns: ``frame``) as the learners read
    it (``split.target_labels``): 0/1 for a binary target, the index of the class's one-hot
    column for a multiclass one, the decoded value (float64) for a numeric one."""
    kind = pre.profile.target.kind
    if kind == "binary":
        return positive_labels(x, pre)
    column = pre.profile.target.column
    if kind == "numeric":
        return frame.get_column(column).cast(pl.Float64).fill_null(np.nan).to_numpy()
    i = next(i for i, s in enumerate(pre.specs) if s.name == column)
    return x[:, block(pre, i)].argmax(axis=1).astype(np.int64)


def exact_discrete(pre: TablePreprocessor) -> tuple[str, ...]:
    """Number-typed columns compared as categories in fidelity and quality: numeric columns
    modelled as categories of their exact training values, and columns declared categorical
    (integer codes); DP value lists are approximate values, compared as numbers."""
    return tuple(s.name for s in pre.specs if s.missing_of is None and (
        (s.discrete and not s.values) or s.kind == "categorical"))


def feature_columns(pre: TablePreprocessor) -> np.ndarray:
    """Indices of the matrix columns that are not the target's (the TSTR features)."""
    target = pre.profile.target.column
    return np.array([j for s, a, b in pre.column_blocks() if s.name != target
                     and s.missing_of != target for j in range(a, b)])


@dataclass
class Compared:
    """The rows a synthetic release is measured against (``compare``): the synthetic,
    training and control rows in the preprocessor's space (``x_*``) and as source columns in
    one type per column (``kinds.common_types``: decimals as Float64 on every side, as the
    models read them)."""

    x_syn: np.ndarray
    x_train: np.ndarray
    x_control: np.ndarray
    synthetic: pl.DataFrame
    train: pl.DataFrame
    control: pl.DataFrame
    x_released: np.ndarray | None = None  # the published rows encoded as the control rows are


def compare(pre: TablePreprocessor, *, x_syn: np.ndarray, x_train: np.ndarray,
            x_control: np.ndarray, synthetic: pl.DataFrame, train: pl.DataFrame,
            control: pl.DataFrame, condition: Conditioning | None = None
            ) -> tuple[dict, Compared | None]:
    """What a synthetic release is compared with, and the notes the evaluation carries.

    Args:
        x_syn, x_train, x_control: the three tables in the preprocessor's space.
        synthetic, train, control: the same as source columns (decoded synthetic rows).
        condition: with a fixed value, the real rows compared with are those with that value
            (the synthetic rows stand for that subpopulation).

    Returns:
        (``{"compared_with": ..., "small_sample"?: ...}``, the rows); the rows are None when
        too few real rows hold a fixed condition's value (the notes then say so for fidelity
        and TSTR).
    """
    out: dict = {"compared_with": "all training and control rows"}
    if condition is not None and condition.fixed is not None:
        where = block(pre, condition.index)
        keep_t, keep_c = (x[:, where.start + condition.fixed] == 1.0 for x in (x_train,
                                                                               x_control))
        x_train, train = x_train[keep_t], train.filter(pl.Series(keep_t))
        x_control, control = x_control[keep_c], control.filter(pl.Series(keep_c))
        out["compared_with"] = (f"the rows with {condition.column} = {condition.value}: "
                                f"{len(x_train)} training, {len(x_control)} control")
        print(f"evaluating against {out['compared_with']}", flush=True)
    if len(x_control) < SMALL_CONTROL:
        out["small_sample"] = (
            f"only {len(x_control)} control rows (fewer than {SMALL_CONTROL}): TSTR, "
            "fidelity and the attacks' rates rest on few rows and can land anywhere near "
            "chance; read them as rough")
        console.warn(out["small_sample"])
    if condition is not None and condition.fixed is not None and \
            min(len(x_train), len(x_control)) < 2:
        out["fidelity"] = {"skipped": "too few real rows with the condition's value"}
        out["tstr"] = {"skipped": "too few real rows with the condition's value"}
        return out, None
    x_released = pre.transform(synthetic, "synthetic rows", unseen="ignore")
    train, synthetic, control = common_types({"training rows": train, "synthetic rows": synthetic,
                                              "control rows": control}).values()
    return out, Compared(x_syn, x_train, x_control, synthetic, train, control, x_released)


def evaluate(pre: TablePreprocessor, profile: DatasetProfile, notes: dict, rows: Compared,
             seed: int) -> dict:
    """Every utility and fidelity figure of a synthetic release against the control rows
    (never trained on): fidelity (1 - TVD, SDMetrics quality) and TSTR/TRTR.

    Args:
        notes, rows: ``compare``'s result (``rows`` not None).

    Returns:
        ``{"fidelity": ..., "tstr": ..., "detection": ..., "compared_with": ...}``
        (``detection``: ``tasks.evaluation.detection.detection`` of the synthetic rows
        against the control rows).
    """
    from cloakflow.tasks.evaluation.detection import detection
    from cloakflow.tasks.evaluation.fidelity import fidelity_report
    from cloakflow.tasks.evaluation.tstr import tstr

    out = dict(notes)
    x_syn, x_train, x_control = rows.x_syn, rows.x_train, rows.x_control
    train, synthetic, control = rows.train, rows.synthetic, rows.control
    columns = synthetic.columns
    discrete = exact_discrete(pre)
    console.step("evaluating: fidelity (1 - TVD of discretised distributions)")
    out["fidelity"] = fidelity_report(train.select(columns), synthetic,
                                      control.select(columns), seed=seed, categorical=discrete)
    kind = profile.target.kind
    y_syn, y_train, y_control = (target_values(m, f, pre) for m, f in (
        (x_syn, synthetic), (x_train, train), (x_control, control)))
    if all(len(np.unique(y)) >= 2 for y in (y_syn, y_train, y_control)):
        console.step("evaluating: TSTR and TRTR (forest, LightGBM) on the control rows")
        f = feature_columns(pre)
        names = next(s for s in pre.specs if s.name == profile.target.column).categories \
            if kind == "multiclass" else None  # the target block's order: TSTR's indices
        out["tstr"] = tstr(x_syn[:, f], y_syn, x_train[:, f], y_train, x_control[:, f],
                           y_control, seed=seed, kind=kind, class_names=names)
        if kind == "multiclass":  # the class indices are the target block's categories
            spec = next(s for s in pre.specs if s.name == profile.target.column)
            out["tstr"]["classes"] = [spec.categories[int(i)] for i in np.unique(
                np.concatenate([y_syn, y_train, y_control]))]
    else:
        out["tstr"] = {"skipped": "a table holds a single label value (a fixed --condition on "
                                  "the target, or too few control rows)"}
    console.step("evaluating: detection (LightGBM telling synthetic from control rows)")
    # the published rows as decoded values, encoded as the control rows are (the model's
    # own outputs are continuous where a decoded value is one of few levels)
    released = x_syn if rows.x_released is None else rows.x_released
    out["detection"] = detection(released, x_control, seed, blocks=[
        (spec.name, a, b) for spec, a, b in pre.column_blocks()])
    return out


def attack_rows(pre: TablePreprocessor, profile: DatasetProfile, rows: Compared,
                seed: int) -> dict:
    """``attack`` on ``compare``'s rows."""
    return attack(pre, profile, rows.x_syn, rows.x_train, rows.x_control, rows.synthetic,
                  rows.train, rows.control, seed)


def attack(pre, profile, x_syn, x_train, x_control, synthetic, train, control, seed) -> dict:
    """Distances to closest records, membership inference and anonymeter's three risks."""
    from cloakflow.tasks.privacy.attacks.anonymeter import run_anonymeter
    from cloakflow.tasks.privacy.attacks.synthetic import (
        membership_of_synthetic,
        released_distance_privacy,
    )

    console.step("attacking: distances to closest records, exact copies (released rows, source "
          "schema)")
    families, ranges = gower_columns(pre, [c for c in [*profile.features, profile.target.column]
                                           if c in synthetic.columns])
    out = {"distance": released_distance_privacy(synthetic, train, control, families, ranges,
                                                 seed=seed)}
    if len(x_control) >= 20:
        console.step("attacking: membership inference (distance, DOMIAS density ratio)")
        out["membership"] = membership_of_synthetic(x_syn, x_train, x_control, seed=seed)
    # the released rows hold the target too: anonymeter sees it (and infers it if sensitive)
    features = [c for c in [*profile.features, profile.target.column] if c in synthetic.columns]
    if len(control) >= 10:
        console.step("attacking: anonymeter singling out, linkability, inference")
        out["anonymeter"] = run_anonymeter(train.select(features), synthetic.select(features),
                                           control.select(features), profile, seed)
    return out


def gower_columns(pre: TablePreprocessor, columns: list[str]
                  ) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    """Each modelled column's Gower family and a numeric column's range, for
    ``attacks.synthetic.gower_space``: numbers, dates and datetimes (a discrete numeric too)
    span their public bounds, else what the preprocessor measured (its value list, or its
    minimum and maximum, in days or seconds for dates and datetimes)."""
    families: dict[str, str] = {}
    ranges: dict[str, tuple[float, float]] = {}
    bounds = pre.profile.bounds
    for spec in pre.specs:
        if spec.missing_of is not None or spec.name not in columns:
            continue
        numeric = spec.family == "numeric" or spec.discrete
        families[spec.name] = "numeric" if numeric else "categorical"
        if not numeric:
            continue
        b = bounds.get(spec.name)
        if b is not None and b.min is not None:
            ranges[spec.name] = b.span(spec.kind)
        elif spec.discrete:
            values = spec.values or [float(c) for c in spec.categories]
            ranges[spec.name] = (min(values), max(values))
        else:
            ranges[spec.name] = (spec.minimum, spec.maximum)
    return families, ranges


def measure(evaluation: dict) -> dict[str, float | None]:
    """The policy's quantities of a synthetic release (None: not measured). Membership AUC is
    read two-sided, max(AUC, 1 - AUC)."""
    privacy = evaluation.get("privacy", {})
    dist, mia = privacy.get("distance"), privacy.get("membership")
    return {
        "max_dcr_share": dist["dcr_share"] if dist else None,
        "max_exact_copy_excess": (max(0.0, dist["exact_copies"] - dist["exact_copies_control"])
                                  if dist else None),
        "max_membership_auc": max(mia["auc"], 1 - mia["auc"]) if mia else None,
        "max_membership_tpr": mia["tpr_at_1pct_fpr"] if mia else None,
        "max_detection_auc": evaluation.get("detection", {}).get("auc"),
    }


def judged(evaluation: dict, profile: DatasetProfile):
    """The measurements of a synthetic release as the one gate reads them
    (``tasks.release.kinds.Judged``): its four quantities (``measure``) under the table name
    ``synthetic``, every one expected (a None is too few control rows), and the forest's TSTR
    score as the headline utility."""
    from cloakflow.tasks.release.kinds import Judged, limits_of

    tstr = evaluation.get("tstr", {})
    return Judged(measured={"synthetic": measure(evaluation)},
                  limits=limits_of(profile, "synthetic").model_dump(), expected=None,
                  utility=(f"TSTR forest {tstr.get('metric', 'roc_auc')}",
                           tstr.get("forest", {}).get("tstr")),
                  missing="too few control rows")


def judge(evaluation: dict, profile: DatasetProfile, attacked: bool,
          accept_risk: str | None) -> dict:
    """The gate of a synthetic release: measured values, crossed limits, verdict
    (``policy.decide`` on :func:`judged`).

    A limit that measured nothing is crossed (there were control rows to measure it on, or
    there should have been); not attacked is crossed. The profile's ``min_utility`` is judged
    on the forest's TSTR score (``policy.utility_crossed``). Crossed is ``accepted`` with a
    reason on record, else ``blocked``.
    """
    from cloakflow.tasks.privacy.policy import decide

    j = judged(evaluation, profile)
    return gate_dict(decide(j.measured, j.limits, attacked, accept_risk, j.expected, j.utility,
                            j.missing))


def gate_dict(outcome) -> dict:
    """A synthetic release's gate as its report and manifest carry it: the one gate's
    ``PolicyOutcome`` with the single table's measured values."""
    from cloakflow.tasks.release.kinds import gate_record

    return gate_record(outcome, "synthetic")


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def report_markdown(dataset: str, evaluation: dict, gate: dict, *, rows: int, model: str,
                    dp: dict | None, condition: Conditioning, profile_target=None) -> str:
    """The one-page report of a synthetic release (markdown, by the one report renderer
    ``tasks.release.report``); ``gate``: the gate's outcome (``gate_dict``);
    ``profile_target``: the profile's ``Target``, whose label statement the report carries."""
    from cloakflow.tasks.release.kinds import label_statement
    from cloakflow.tasks.release.report import Section, policy_section, render

    intro = [f"{rows} rows from the {model.upper()}, "
             + (f"conditioned on `{condition.column}`" if condition.column else
                "unconditioned (the numeric target is modelled as a column)")
             + (f" = `{condition.value}` for every row" if condition.value else "") + "; "
             + (f"(ε = {dp['epsilon']:.3g}, δ = {dp['delta']:g})-DP "
                + (f"for this holder's training rows: {dp['covered']}" if dp.get("covered")
                   else "end to end") +
                " (add/remove one row); this report and the gate's decision are computed on "
                "private rows and are not covered." if dp else
                "not differentially private."), ""]
    if profile_target is not None:
        intro += [label_statement(profile_target, "synthetic"), ""]
    intro += [f"Compared with {evaluation.get('compared_with', 'all real rows')}.", ""]
    if evaluation.get("small_sample"):
        intro += [f"**Unreliable figures:** {evaluation['small_sample']}", ""]
    sections = [_fidelity_section(evaluation["fidelity"])]
    if evaluation.get("constraints"):
        sections.append(Section(None, constraint_lines(evaluation["constraints"])))
    sections += [_utility_section(evaluation["tstr"])]
    if evaluation.get("detection"):
        sections.append(Section("Detection", detection_lines(evaluation["detection"])))
    sections.append(Section("Privacy", _privacy_lines(evaluation.get("privacy"))))
    policy = policy_section(gate["verdict"], gate["crossed"], {"synthetic": gate["measured"]},
                            gate["limits"], gate["accepted_risk"])
    return render(f"Synthetic release of `{dataset}`", intro, policy, sections, [
        "Membership AUC is judged two-sided, max(AUC, 1 − AUC): an attack that ranks members "
        "low reveals them as well."])


def _fidelity_section(fid: dict):
    """Fidelity: the release's own quality, 1 − TVD against the control rows' own, the
    weakest pairs."""
    from cloakflow.tasks.release.report import Section

    if "skipped" in fid:
        return Section("Fidelity", [f"Skipped: {fid['skipped']}."])
    lines = []
    rel = fid.get("quality", {}).get("release")
    if rel:
        lines += [f"**Quality of the release: {_fmt(rel['score'])}** (column shapes "
                  f"{_fmt(rel['column_shapes'])}, column pair trends "
                  f"{_fmt(rel['column_pair_trends'])}): every published row against the "
                  "training rows, as SDMetrics' QualityReport scores `synthetic.parquet`. "
                  "The table subsamples the synthetic rows to the control rows' count, "
                  "beside the control rows themselves.", ""]
    lines += ["| | synthetic | control rows (real rows never trained on) |", "|---|---|---|"]
    lines += [f"| {k.replace('_', '-')} | {fid[k]['synthetic']:.3f} | "
              f"{fid[k]['holdout_maximum']:.3f} |" for k in ("univariate", "bivariate",
                                                             "three_way")]
    quality = fid.get("quality")
    if quality:
        syn, hold = quality["synthetic"], quality["holdout"]
        lines += [f"| SDMetrics-style quality | {_fmt(syn['score'])} | {_fmt(hold['score'])} |",
                  f"| column shapes | {_fmt(syn['column_shapes'])} | "
                  f"{_fmt(hold['column_shapes'])} |",
                  f"| column pair trends ({syn['pairs']} associated "
                  f"pair{'s' * (syn['pairs'] != 1)}) | {_fmt(syn['column_pair_trends'])} | "
                  f"{_fmt(hold['column_pair_trends'])} |"]
    worst = ", ".join(f"{n} {v:.2f}" for n, v in fid["bivariate"]["worst"][:3])
    lines += ["", f"Weakest pairs by bivariate accuracy: {worst}."]
    if quality:
        q_worst = ", ".join(f"{n} {v:.2f}" for n, v in quality["synthetic"]["worst_pairs"][:3])
        lines += [f"The quality rows follow {quality['follows']}; its weakest pairs: "
                  f"{q_worst or 'none scored'}."]
    return Section("Fidelity (1 − total variation distance, against the training rows)", lines)


def _utility_section(ts: dict):
    """Utility: TSTR beside TRTR per learner, shares, per-class figures, MAE, a weak-signal
    warning."""
    from cloakflow.tasks.evaluation.learners import LABEL
    from cloakflow.tasks.release.report import Section

    if "skipped" in ts:
        return Section("Utility", [f"TSTR skipped: {ts['skipped']}."])
    lines = ["| learner | train on synthetic (TSTR) | train on real (TRTR) |", "|---|---|---|"]
    lines += [f"| {k} | {ts[k]['tstr']:.4f} | {ts[k]['trtr']:.4f} |"
              for k in ("forest", "lightgbm")]
    if "positive_rate" in ts:
        pr = ts["positive_rate"]
        lines += ["", f"Positive rate: synthetic {pr['synthetic']:.3f}, training "
                      f"{pr['training']:.3f}."]
    if "class_shares" in ts:
        cs = ts["class_shares"]
        names = ts.get("classes") or [str(i) for i in range(len(cs["training"]))]
        lines += ["", "Class shares (synthetic / training): " + ", ".join(
            f"{n} {a:.3f} / {b:.3f}" for n, a, b in zip(names, cs["synthetic"],
                                                        cs["training"], strict=True)) + "."]
    if "tstr_per_class" in ts["forest"]:  # in class order, as the class shares
        syn, real = ts["forest"]["tstr_per_class"], ts["forest"]["trtr_per_class"]
        names = ts.get("classes") or list(syn)
        lines += ["", "Per class, the forest's one-vs-rest ROC AUC (TSTR / TRTR; — no control "
                      "row of the class): " + ", ".join(
            f"{n} {_fmt(a)} / {_fmt(b)}" for n, a, b in zip(names, syn.values(), real.values(),
                                                            strict=True)) + "."]
    if "tstr_mae" in ts["forest"]:
        lines += ["", f"MAE of the forest: TSTR {ts['forest']['tstr_mae']:.4g}, TRTR "
                      f"{ts['forest']['trtr_mae']:.4g} (the target's units)."]
    if (weak := weak_signal(ts)):
        lines += ["", f"**Little of the label's signal:** {weak}"]
    return Section(f"Utility ({LABEL[ts.get('metric', 'roc_auc')]} on the control rows)", lines)


def detection_lines(det: dict) -> list[str]:
    """Detection: the classifier two-sample test's AUC and the columns that give rows away."""
    if "skipped" in det:
        return [f"Skipped: {det['skipped']}."]
    lines = [f"A classifier telling synthetic rows from control rows reaches ROC AUC "
             f"**{det['auc']:.3f}** (0.5: it cannot tell them apart; 1.0: every row is told "
             f"apart), {det['rows_per_side']} rows a side, {det['folds']} folds, "
             f"{det['classifier']}."]
    if det.get("giveaways"):
        lines += ["", "The columns it relies on most (share of its split gain): " + ", ".join(
            f"`{name}` {share:.0%}" for name, share in det["giveaways"]) + "."]
    return lines


def _privacy_lines(privacy: dict | None) -> list[str]:
    """Privacy: distances and copies, membership inference, anonymeter's risks."""
    if not privacy:
        return ["- Not attacked (--skip-attacks)."]
    d = privacy["distance"]
    ratio = "not measured" if d["dcr_ratio"] is None else f"{d['dcr_ratio']:.2f}"
    lines = [f"- DCR share {d['dcr_share']:.3f} (0.5 ideal), DCR ratio {ratio}, exact copies "
             f"{d['exact_copies']:.2%} (control rows' own rate {d['exact_copies_control']:.2%})"
             f", NNDR median {d['nndr_median']:.2f}."]
    if "membership" in privacy:
        m = privacy["membership"]
        lines += [f"- Membership inference ({m['strongest']} strongest): AUC {m['auc']:.3f}, "
                  f"TPR at 1% FPR {m['tpr_at_1pct_fpr']:.3f} ({m['members']} members, "
                  f"{m['non_members']} non-members)."]
    if "anonymeter" in privacy:
        a = privacy["anonymeter"]
        risks = [f"{k.replace('_', ' ')} {a[k]['risk']:.3f}"
                 for k in ("singling_out", "linkability") if k in a]
        risks += [f"inference of {k} {v['risk']:.3f}" for k, v in a.get("inference", {}).items()]
        lines += [f"- anonymeter risks (0 = none beyond the control rows' baseline): "
                  f"{', '.join(risks) or 'none run'}."]
        lines += [f"  - {k.replace('_', ' ')}: {a[k]['note']}"
                  for k in ("singling_out", "linkability") if a.get(k, {}).get("note")]
        lines += [f"  - inference of {k}: {v['note']}"
                  for k, v in a.get("inference", {}).items() if v.get("note")]
        if a.get("attacks_note"):
            lines += [f"  - {a['attacks_note']}"]
        if not a.get("inference"):
            lines += ["  - no inference attack: the profile lists no `privacy.sensitive` "
                      "attribute"]
    return lines


def plot_columns(train: pl.DataFrame, synthetic: pl.DataFrame, path: str,
                 max_columns: int = 24) -> str:
    """Per column, the training rows' distribution beside the synthetic rows' (shares of rows:
    histograms on shared bins for numbers, the 12 most frequent categories otherwise)."""
    from cloakflow.tasks.plots import figure

    columns = synthetic.columns[:max_columns]
    cols = 4
    rows = -(-len(columns) // cols)
    with figure(path, rows, cols, size=(4 * cols, 2.6 * rows)) as axes:
        for ax in axes.flat[len(columns):]:
            ax.axis("off")
        for ax, name in zip(axes.flat, columns, strict=False):
            real, syn = train.get_column(name), synthetic.get_column(name)
            if real.dtype.is_temporal() and syn.dtype.is_temporal():  # dates as numbers
                real, syn = (c.dt.epoch("s") if c.dtype != pl.Date else c.cast(pl.Int64)
                             for c in (real, syn))
            if real.dtype.is_numeric() and real.drop_nulls().n_unique() > 20:
                a = real.drop_nulls().cast(pl.Float64).to_numpy()
                b = syn.drop_nulls().cast(pl.Float64).to_numpy()
                bins = np.unique(np.quantile(a, np.linspace(0, 1, 31)))
                if len(bins) < 3:
                    bins = 30
                ax.hist(a, bins=bins, density=True, alpha=0.5, label="training")
                ax.hist(b, bins=bins, density=True, alpha=0.5, label="synthetic")
            else:
                # numbers through Float64: an integer column and a DP release's Float64
                # copy name their values alike; a few numbers are shown in their order
                numeric = real.dtype.is_numeric()
                real, syn = (c.cast(pl.Float64) if c.dtype.is_numeric() else c
                             for c in (real, syn))
                rt = real.cast(pl.String).fill_null("(null)").value_counts(normalize=True)
                st = syn.cast(pl.String).fill_null("(null)").value_counts(normalize=True)
                top = rt.sort("proportion", descending=True).get_column(name).head(12)
                rs = dict(zip(rt[name], rt["proportion"], strict=True))
                ss = dict(zip(st[name], st["proportion"], strict=True))
                top = _in_order(top.to_list()) if numeric else top.to_list()
                pos = np.arange(len(top))
                ax.bar(pos - 0.2, [rs.get(v, 0) for v in top], 0.4, label="training")
                ax.bar(pos + 0.2, [ss.get(v, 0) for v in top], 0.4, label="synthetic")
                ax.set_xticks(pos, [_label(v, numeric) for v in top], rotation=60, fontsize=6)
            ax.set_title(name, fontsize=8)
            ax.tick_params(labelsize=6)
        axes.flat[0].legend(fontsize=6)
    return path


def _in_order(values: list[str]) -> list[str]:
    """A numeric column's value labels (Float64 as text, "(null)") by value, null last."""
    return sorted(values, key=lambda v: (v == "(null)", float(v) if v != "(null)" else 0.0))


def _label(value: str, numeric: bool) -> str:
    """A bar's label: a number without a spurious ``.0`` (``3.0`` -> ``3``), text cut at 10."""
    if numeric and value != "(null)":
        return f"{float(value):g}"
    return value[:10]


def associations(frame: pl.DataFrame, disc) -> np.ndarray:
    """Cramér's V of every pair of discretised columns (scipy), shape (k, k)."""
    from scipy.stats.contingency import association, crosstab

    cells = disc.cells(frame)
    names = list(cells)
    k = len(names)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            table = crosstab(cells[names[i]], cells[names[j]]).count
            keep_r, keep_c = table.sum(1) > 0, table.sum(0) > 0
            table = table[keep_r][:, keep_c]
            v = association(table, method="cramer") if min(table.shape) > 1 else 0.0
            out[i, j] = out[j, i] = v
    return out


def plot_associations(train: pl.DataFrame, synthetic: pl.DataFrame, path: str,
                      categorical: tuple[str, ...] = ()) -> tuple[str, float]:
    """Heatmap of |Cramér's V (synthetic) - Cramér's V (training)| over every pair of columns
    (numbers discretised as in the fidelity report); returns (path, mean difference)."""
    from cloakflow.tasks.evaluation.fidelity import Discretiser
    from cloakflow.tasks.plots import figure

    disc = Discretiser.fit(train, categorical=categorical)
    real, syn = associations(train, disc), associations(synthetic.select(train.columns), disc)
    diff = np.abs(syn - real)
    names = list(disc.cells(train.head(1)))
    with figure(path, size=(7, 6)) as axes:
        ax = axes[0, 0]
        im = ax.imshow(diff, vmin=0, vmax=max(0.3, float(diff.max())), cmap="magma_r")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title("|Cramér's V synthetic − training| per column pair", fontsize=9)
        ax.figure.colorbar(im, ax=ax, shrink=0.8)
    k = len(names)
    mean = float(diff[np.triu_indices(k, 1)].mean()) if k > 1 else 0.0
    return path, mean


WEAK_SIGNAL = 0.5  # TSTR keeping less than this share of TRTR's gain over chance is weak


def weak_signal(ts: dict) -> str | None:
    """A warning when the forest trained on the synthetic rows keeps less than
    ``WEAK_SIGNAL`` of what the one trained on the real rows gains over chance (ROC AUC over
    0.5; R² over 0), or None: a release can pass every privacy limit and still carry almost
    nothing of the label (too few epochs, a model that ignored the condition)."""
    forest = ts.get("forest") or {}
    if forest.get("tstr") is None or forest.get("trtr") is None:
        return None
    chance = 0.0 if ts.get("metric") == "r2" else 0.5
    gain, kept = forest["trtr"] - chance, forest["tstr"] - chance
    if gain <= 0.05 or kept >= WEAK_SIGNAL * gain:
        return None
    return (f"TSTR {forest['tstr']:.3f} keeps {max(kept, 0) / gain:.0%} of what training on "
            f"the real rows gains over chance (TRTR {forest['trtr']:.3f}, chance {chance:g}). "
            "Train longer (--epochs) or check the model's fit (its loss in the MLflow run); "
            "set privacy.policy.synthetic.min_utility to make the gate refuse such a release.")


def constraint_lines(section: dict) -> list[str]:
    """The report's constraints table: each rule, how it is kept, its share of valid rows in
    the training and the synthetic rows, and the rejection rate."""
    lines = ["## Constraints (share of rows keeping each rule)", "",
             "| rule | kept by | training rows | synthetic rows |", "|---|---|---|---|"]
    lines += [f"| `{r['constraint']}` | {r['kept_by']} | {_pct(r.get('valid_real'))} | "
              f"{_pct(r['valid_synthetic'])} |" for r in section["rules"]]
    rej = section["rejection"]
    lines += ["", (f"Rejection: {rej['rejected']} of {rej['drawn']} drawn rows "
                   f"({100 * rej['rate']:.1f}%) broke a rule kept by rejection and were drawn "
                   "again." if rej["rejected"] else "No drawn row was rejected."), ""]
    return lines


def _pct(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f}%"


def manifest(*, profile: DatasetProfile, params: dict, source, parent: str, flow_run_id: str,
             rows: int, frame: pl.DataFrame, config, train_log, training_rows: int,
             control_rows: int, condition: Conditioning, evaluation: dict, gate: dict,
             dp: dict | None, nullable: set[str], federation: dict | None = None,
             duplicates: dict | None = None, health: dict | None = None) -> dict:
    """The manifest of a synthetic release (JSON-ready).

    Under DP with ``dp_report = private`` every figure computed on the private rows (row
    counts, evaluation, attack results, the gate's measured values, losses and times) is left
    out: they stay in the MLflow run, and the manifest says so. ``nullable``: the columns
    modelled with a missing-value state (their synthetic values may be null).
    ``duplicates``: the table's duplicate counts, left out under DP (counted on private rows).
    ``health``: a GAN's training probes (``models.gan.train_gan``), under DP read from
    generated rows only.
    ``federation``: the model is a federation's global VAE (``cloakflow synthesize
    --models-from``); its section names the run, its rounds and holders. ``conversions``:
    the source types converted on the way (decimals read as Float64 by the models and
    released in their decimal type, zone-aware datetimes in UTC), read from the source file's
    schema (``ingest.stated_conversions``).
    """

    from cloakflow.tasks import tracking
    from cloakflow.tasks.data.ingest import stated_conversions
    from cloakflow.tasks.privacy.dp_synthetic import SYNTHETIC_STATEMENT
    from cloakflow.tasks.release.kinds import label_statement
    from cloakflow.tasks.release.manifest import GROUPED_ON, SCHEMA_VERSION, SyntheticManifest
    from cloakflow.tasks.release.publish import code_version

    private = dp is not None and params.get("dp_report") == "private"
    model = {"kind": params["model"], "config": config.to_dict(),
             "latent_size": config.latent_size,  # config.latent 0 means the rule's size
             "epochs_run": train_log.epochs_run,
             "seed": None if dp else params["seed"],
             "training": ("DP-SGD as dp.mechanisms states (dp_epochs, Poisson rate q); "
                          "config.epochs and config.batch_size were not used" if dp else
                          "plain minibatch training: config.epochs epochs of "
                          "config.batch_size rows")}
    if health:
        model["health"] = health
    if not private:
        history = dict(train_log.history).get("loss", [])
        model.update({"final_loss": history[-1] if history else None,
                      "seconds": round(train_log.seconds, 2)})
    statement = SYNTHETIC_STATEMENT + (" " + dp["statement"] if dp else
                                       " The model was trained without differential privacy: "
                                       "no formal guarantee is claimed, only the measured "
                                       "privacy figures.") + " " + label_statement(
                                           profile.target, "synthetic")
    out = {
        "schema_version": SCHEMA_VERSION, "dataset": profile.name, "kind": "synthetic",
        "model": model,
        "source": source.model_dump(exclude_none=True), "profile": profile.public_dump(),
        "rows": rows, "label": profile.target.column,
        "condition": {"column": condition.column, "value": condition.value,
                      "distribution": "fixed value" if condition.value else (
                          "none: the model is unconditioned; "
                          + ("a Gaussian DP row count (a one-bin histogram) sets the row count"
                             if dp else "the row count is the training rows'")
                          if condition.column is None else
                          "DP histogram (Gaussian mechanism)" if dp else
                          "the training rows' shares")},
        "seed": params["seed"], "parameters": params,
        "columns": [{"name": c, "dtype": str(frame.schema[c]), "nullable": c in nullable}
                    for c in frame.columns],
        "conversions": stated_conversions(profile, params.get("input_path"),
                                          released=dict(frame.schema)),
        "mlflow": {"tracking_uri": tracking.portable_uri(), "run_id": parent,
                   "experiment": f"cloakflow/{profile.name}",
                   "model": MLFLOW_MODEL[params["model"]]},
        "prefect_flow_run_id": flow_run_id, "code_version": code_version(),
        "row_order": "rows are drawn independently from the model; their order means nothing",
        "privacy": {"statement": statement, "model_in_release": False},
        "dp": dp,
    }
    if evaluation.get("constraints"):  # the synthetic side reads only the published rows
        out["constraints"] = {
            "rules": [{k: v for k, v in r.items() if k != "valid_real" or not private}
                      for r in evaluation["constraints"]["rules"]],
            "rejection": evaluation["constraints"]["rejection"],
            "note": "valid_synthetic: the share of published rows keeping the rule; valid_real: "
                    "of the training rows" + (" (in the MLflow run only: dp.report = private)"
                                              if private else "")}
    if federation is not None:
        out["federation"] = federation
        model["training"] = (f"federated ({federation['strategy']}, {federation['rounds']} "
                             f"rounds over holders {', '.join(federation['holders'])})"
                             + ("; DP-SGD on every holder as dp.mechanisms states" if dp
                                else ""))
    if private:
        out["parameters"] = {**params, "accept_risk": "given; in the MLflow run only"} \
            if params.get("accept_risk") else params
        out["split"] = {"control_fraction": params["control_fraction"], "seed": params["seed"],
                        "rows": "private (in the MLflow run only)"}
        out["evaluation"] = "in the MLflow run only (dp.report = private)"
        out["quality"] = ("in the MLflow run only (dp.report = private): metric "
                          "fidelity.quality.release.score")
        out["privacy"]["gate"] = ("the policy was checked on figures computed on private rows; "
                                  "its measured values and decision are in the MLflow run only")
    else:
        out["split"] = {"training_rows": training_rows, "control_rows": control_rows,
                        "control_fraction": params["control_fraction"], "seed": params["seed"],
                        "stratified_on": profile.target.column, "grouped_on": GROUPED_ON,
                        **({"duplicates": duplicates} if duplicates and not dp else {})}
        out["evaluation"] = evaluation
        release = evaluation.get("fidelity", {}).get("quality", {}).get("release")
        if release:
            out["quality"] = {"score": release["score"],
                              "column_shapes": release["column_shapes"],
                              "column_pair_trends": release["column_pair_trends"],
                              "of": "every row of synthetic.parquet against the training rows "
                                    "(SDMetrics 0.32 QualityReport definitions)"}
        out["privacy"].update({"verdict": gate["verdict"], "policy": gate})
        if dp:
            out["evaluation_note"] = ("evaluation and gate figures are computed on private "
                                      "training and control rows: NOT covered by epsilon")
    SyntheticManifest.model_validate(out)  # the typed layout, or a ValidationError
    return out


def report_metrics(evaluation: dict, gate: dict) -> dict[str, float]:
    """The MLflow metrics of a synthetic release: fidelity, SDMetrics quality (of the control
    holdout and of the release), TSTR per learner, the gate's measured values."""
    fid, ts = evaluation["fidelity"], evaluation["tstr"]
    metrics = {f"fidelity.{k}": fid[k]["synthetic"] for k in ("univariate", "bivariate",
                                                              "three_way") if k in fid}
    if "quality" in fid:
        for part, prefix in (("synthetic", "fidelity.quality"),
                             ("release", "fidelity.quality.release")):
            metrics.update({f"{prefix}.{k}": v for k, v in fid["quality"].get(part, {}).items()
                            if k in ("score", "column_shapes", "column_pair_trends")
                            and v is not None})
    metrics.update({f"tstr.{k}": ts[k]["tstr"] for k in ("forest", "lightgbm") if k in ts})
    if "auc" in evaluation.get("detection", {}):
        metrics["detection.auc"] = evaluation["detection"]["auc"]
    metrics.update({f"privacy.{k}": v for k, v in gate["measured"].items() if v is not None})
    return metrics

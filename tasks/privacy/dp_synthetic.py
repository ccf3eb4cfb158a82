"""What a DP synthetic release spends and claims: one (epsilon, delta) for everything that looks
at the private rows, end to end.

A synthetic release chooses its own row count, so the row count n can stay private: the
guarantee is stated for **adding or removing one training row** (dp-accounting's PLD
accountant, add/remove neighbouring relation). Nothing published is a function of the exact n:

1. **Preprocessing** takes every column's range, category or value list from the profile's
   public bounds (``TablePreprocessor`` with ``public_bounds``); a column without public bounds
   is refused before anything runs (``require_public_bounds``), and missing-value flags follow
   the profile's ``missing`` rule. A numeric column with public min and max but no public knots
   gets **DP quantile knots** (``dp_quantile_knots``): one Gaussian mechanism over a tree of
   counts of each such column on its public range (a node per level down to 1,024 leaves, plus
   a bin for each bound itself: L2 sensitivity ``knot_sensitivity(k)`` for k columns), sized to
   cost about ``KNOT_SHARE`` of E; how finely each stretch is resolved is post-processing of
   the noisy counts (``resolve_tree``).
2. **One Gaussian histogram** (``models.training.dp_counts``) of the conditioning column's
   categories (sigma ``histogram_sigma``, sized to cost about ``HISTOGRAM_SHARE`` of E on its
   own). It gives the label distribution used to sample conditions and, summed, a DP estimate
   n~ of the row count: the default number of synthetic rows and the public divisor q * n~ of
   DP-SGD's noisy gradient sum.
3. **DP-SGD** on the VAE (Abadi et al. 2016): Poisson sampling at a public rate q
   (``dp_sampling_rate``, not b / n, which would publish n), per-row clipping to C, Gaussian
   noise sigma * C, a fixed number of steps epochs / q: no early stopping, validation or
   checkpoint choice on private rows.

The noise multipliers, q and the step count are all fixed before any row is read; the knots,
the value lists and DP-SGD's divisor are chosen from earlier DP outputs, which
changes no mechanism's privacy-loss distribution (each is a Gaussian of fixed sensitivity and
sigma), so the PLD composition of the three mechanisms holds under this adaptive choice.
sigma of DP-SGD is solved so that all of them composed spend at most E at delta. delta is
public (``DEFAULT_DELTA``, or the owner's): a default derived from n would itself be a
statistic of the rows.

Not covered: the evaluation of the release (fidelity, TSTR, attack results) computes on private
training and control rows; under ``dp_report = private`` those figures stay in the MLflow run,
and the release's existence tells that the gate passed or the owner accepted the risk. The
control split is secret too (each source row on its own coin, ``split.split_rows``): adding or
removing a source row changes the training rows by at most that row, so the guarantee holds
for the source table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cloakflow.models.training import accounting
from cloakflow.models.training.accounting import ADJACENCY_TEXT, DpBudget
from cloakflow.models.training.dp_sgd import DEFAULT_CLIP_NORM
from cloakflow.tasks import console
from cloakflow.tasks.data.preprocess import on_grid
from cloakflow.tasks.privacy.budget import Budget, solve
from cloakflow.tasks.privacy.budget import statement as budget_statement
from cloakflow.tasks.privacy.dp import DpPlanError, hyperparameter_statement, membership_bound

ADJACENCY = "add_remove"
ACCOUNTANT = "pld"
HISTOGRAM_SHARE = 0.05  # the label histogram alone costs about this share of E
KNOT_SHARE = 0.30  # the numeric columns' histograms (DP quantile knots) about this share
KNOT_FALSE_COUNTS = 0.01  # expected spurious counts kept per column (sets the threshold)
KNOT_GRID = 1024  # leaves of the knot tree: equal bins inside a column's public range
KNOT_TREE_LEVELS = 11  # the tree's levels (1, 2, 4, ..., 1024 nodes): a row counts in each
GRID_BINS_MAX = 20_000  # a column on a public grid with at most this many values: a bin each
VALUE_LIST_SHARE = 0.97  # a value list's points hold at least this share of the DP row count
KNOT_LEVELS = 1000  # quantile levels of the DP knots (as the non-DP fitting uses)
KNOT_THRESHOLD = 2.0  # at least: noisy bin counts under keep_threshold sigmas are set to 0
DEFAULT_DELTA = 1e-6  # public: below 1 / (10 n) for tables under 100,000 rows
DEFAULT_SAMPLING_RATE = 0.01
DEFAULT_DP_EPOCHS = 30
# Adam's step under DP-SGD: its noisy, clipped gradients move less than plain ones (measured on
# the bank table at epsilon 3: quality 0.926 against 0.908 at the plain 1e-3, 3 runs each)
DP_LEARNING_RATE = 3e-3
DP_GAN_LEARNING_RATE = 1e-3  # both networks' Adam under DP-SGD (the critic's steps are few)
# what DP-SGD trains and what else draws noise while training, per ``--model``
DP_SGD_ON = {"vae": "the VAE",
             "gan": "the GAN's critic, the one network that reads rows (the generator learns "
                    "from the critic's scores of generated rows only: post-processing)"}
TRAINING_NOISE = {"vae": "the VAE's reparameterisation noise",
                  "gan": "the GAN's latent and Gumbel noise and its packing order"}

SYNTHETIC_STATEMENT = (
    "The rows of this release are synthetic: drawn from a generative model (a variational "
    "autoencoder or a generative adversarial network: the manifest's model.kind) fitted to "
    "the training rows, not transformed copies of them. No row stands "
    "for a person; a synthetic row can still resemble a training row, which the release's "
    "privacy measurements (distance to closest record, exact copies, membership inference, "
    "anonymeter) report.")


@dataclass(frozen=True)
class SynthesisDpPlan:
    """The DP settings of a synthetic release, all fixed before any row is read."""

    target_epsilon: float
    delta: float
    sgd: DpBudget  # DP-SGD alone: sigma, q, steps (its epsilon at delta on its own)
    histogram_sigma: float
    histogram_epsilon: float  # the histogram alone at delta
    clip_norm: float
    epochs: int
    total_epsilon: float  # every mechanism composed (PLD, add/remove)
    knot_columns: tuple[str, ...] = ()  # columns given DP quantile knots
    knot_levels: tuple[int, ...] = ()  # counts one row adds per column (``knot_levels``)
    knot_sigma: float | None = None  # noise sd per bin count of the knot histograms
    knot_epsilon: float = 0.0  # the knot histograms alone at delta
    budget: Budget | None = None  # every mechanism (``tasks.privacy.budget``)
    model: str = "vae"  # the model DP-SGD trains (``--model``)

    @property
    def knot_multiplier(self) -> float | None:
        """The knot trees as one Gaussian mechanism of sensitivity 1: sigma over
        ``knot_sensitivity(k)``."""
        if not self.knot_columns:
            return None
        return self.knot_sigma / knot_sensitivity(self.knot_levels)

    def mechanisms(self) -> list[dict]:
        """The ledger's and the manifest's list of mechanisms (``Budget.section``: DP-SGD,
        the histogram as one Gaussian step, the knot trees as one of sensitivity
        ``knot_sensitivity``)."""
        return self.budget.section()["mechanisms"]


def plan_synthesis_dp(epsilon: float, delta: float | None, clip_norm: float | None,
                      epochs: int, sampling_rate: float,
                      knot_columns: tuple[str, ...] = (),
                      knot_levels: tuple[int, ...] | None = None,
                      model: str = "vae") -> SynthesisDpPlan:
    """Solve the histograms' and DP-SGD's noise so that together they spend at most
    ``epsilon`` at ``delta`` (add/remove, PLD); print the plan. ``knot_columns``: the numeric
    columns that get DP quantile knots (``knot_columns``); ``knot_levels``: the counts one row
    adds in each (``knot_levels``; None: a tree each).

    Raises:
        DpPlanError: a bad epsilon, delta or sampling rate, or no sigma reaches the target.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise DpPlanError(f"--dp-epsilon must be a positive finite number, got {epsilon}")
    delta = DEFAULT_DELTA if delta is None else delta
    if not 0 < delta < 1:
        raise DpPlanError(f"--dp-delta must be in (0, 1), got {delta}")
    if not 0 < sampling_rate <= 1:
        raise DpPlanError(f"--dp-sampling-rate must be in (0, 1], got {sampling_rate}")
    clip = clip_norm or DEFAULT_CLIP_NORM
    steps = max(1, math.ceil(epochs / sampling_rate))
    knot_columns = tuple(knot_columns)
    levels = (tuple(knot_levels) if knot_levels is not None else
              (KNOT_TREE_LEVELS,) * len(knot_columns)) if knot_columns else ()
    counts = ((("condition histogram",), HISTOGRAM_SHARE, 1.0),) + (
        ((("quantile knots: " + ", ".join(knot_columns),), KNOT_SHARE,
          knot_sensitivity(levels)),) if knot_columns else ())
    try:
        budget = solve(epsilon, delta, ADJACENCY, sampling_rate=sampling_rate, steps=steps,
                       clip_norm=clip, trains=(model,), counts=counts)
    except ValueError as exc:
        raise DpPlanError(f"cannot spend epsilon {epsilon} at delta {delta:g} over {epochs} "
                          f"epochs at sampling rate {sampling_rate}: {exc}") from exc
    sgd_m, hist, *knots = budget.mechanisms
    sgd = accounting.epsilon(sgd_m.noise_multiplier, sampling_rate, steps, delta, ACCOUNTANT,
                             adjacency=ADJACENCY)
    alone = budget.alone()
    extra = {"knot_columns": knot_columns, "knot_levels": levels,
             "knot_sigma": knots[0].noise_per_count,
             "knot_epsilon": alone[knots[0].covers[0]]} if knots else {}
    plan = SynthesisDpPlan(epsilon, delta, sgd, hist.noise_multiplier,
                           alone["condition histogram"], clip, epochs, budget.epsilon,
                           budget=budget, model=model, **extra)
    hist_sigma, hist_alone = plan.histogram_sigma, plan.histogram_epsilon
    console.step(f"DP plan: release epsilon {plan.total_epsilon:.4g} <= {epsilon} at delta "
                 f"{delta:g} "
          f"(add/remove one row, PLD): condition histogram sigma {hist_sigma:.2f} (epsilon "
          f"{hist_alone:.3g} alone)"
          + (f", quantile knots of {len(knot_columns)} columns sigma {plan.knot_sigma:.1f} "
             f"per count (epsilon {plan.knot_epsilon:.3g} alone)" if knot_columns else "")
          + f", DP-SGD sigma {sgd.noise_multiplier:.4f}, q {sampling_rate:g}, {steps} steps "
          f"({epochs} epochs), clip {clip:g}")
    return plan


def knot_columns(specs) -> tuple[str, ...]:
    """The numeric-family columns of a DP-fitted preprocessor (``public_bounds``) scaled
    min-max over public bounds: they get DP quantile knots."""
    return tuple(s.name for s in specs if s.family == "numeric" and s.bounds == "public"
                 and s.transform == "minmax" and s.missing_of is None)


def knot_levels(specs) -> tuple[int, ...]:
    """Per knot column (``knot_columns`` order), the counts one row adds to its histogram: 1
    for a column on a public grid of at most ``GRID_BINS_MAX`` values (a bin per value,
    ``grid_points``), ``KNOT_TREE_LEVELS`` for a tree. Decided from public bounds only."""
    by = {s.name: s for s in specs}
    return tuple(1 if grid_points(by[c]) is not None else KNOT_TREE_LEVELS
                 for c in knot_columns(specs))


def grid_points(spec):
    """The values of a column on a public grid (``ColumnSpec.step``, 1 for whole numbers)
    from its public min to max, or None (no grid, or more than ``GRID_BINS_MAX`` values)."""
    import numpy as np

    step = spec.step or (1.0 if _whole(spec) else None)
    if not step:
        return None
    lo, hi = float(spec.minimum), float(spec.maximum)
    n = round((hi - lo) / step) + 1
    if n > GRID_BINS_MAX or n < 2 or abs(lo + (n - 1) * step - hi) > 1e-9 * max(1.0, abs(hi)):
        return None
    return on_grid(lo + step * np.arange(n, dtype=np.float64), lo, step)


def knot_sensitivity(levels: tuple[int, ...]) -> float:
    """L2 sensitivity of the knot histograms under add/remove of one row: the row adds 1 to
    ``levels[i]`` counts of column i (a bin per grid value: 1; a tree: one node per level,
    ``KNOT_TREE_LEVELS``; a value at a bound to its bound bin alone, which is less):
    sqrt(sum(levels))."""
    return math.sqrt(sum(levels))


def dp_quantile_knots(frame, pre, plan: SynthesisDpPlan, rows_estimate: float, rng=None
                      ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, dict]]:
    """DP quantile knots of ``plan.knot_columns`` (Gaussian mechanism, secret noise).

    Per column, every value (nulls left out, others clipped to the public range) is counted in a
    bin for **exactly the public min**, one for **exactly the public max**, or else in a
    **tree** over ``KNOT_GRID`` equal leaves strictly inside the range (a column on a public
    grid, ``PublicBounds.step``, or of whole numbers, an integer source type or a date, has
    leaves aligned between its grid values): a node per level from the root (the whole range)
    down to the leaves, ``KNOT_TREE_LEVELS`` counts per row. N(0, knot_sigma^2) is added to
    every count (one row moves at most ``KNOT_TREE_LEVELS`` counts per column by 1: L2
    sensitivity ``knot_sensitivity(k)`` for k columns, accounted as one Gaussian). Post-
    processing (``resolve_tree``): counts under ``keep_threshold`` sigmas (``KNOT_FALSE_COUNTS``
    spurious counts expected per tree) are not trusted; the root's mass goes down the tree to
    the children that stand out, so dense stretches reach the 1,024 leaves while a sparse tail
    stops at a wide node, whose count is far less noisy than the sum of its leaves; the CDF,
    mass spread evenly within each leaf and held at a bound by its own bin (a code like 999 or a
    zero balance keeps its point mass, a continuous column near its bound is not pushed onto
    it), is inverted at ``KNOT_LEVELS`` levels. A column where nothing stands out keeps min-max
    knots (a straight line over its range), with a warning.

    A column on a public grid of at most ``GRID_BINS_MAX`` values (``grid_points``; planned so
    by ``knot_levels``) is counted instead in one bin per grid value, a row adding 1 count
    (``_grid_knots``): its kept values are exact grid values, which a KS test needs (a value a
    hair off -1.8 is another value to it), and a rare value stands out against the noise of one
    count, not of a tree's levels.

    A numeric column (kind ``numeric``, the preprocessor's ``discrete_levels`` on) whose mass
    stands on a few points (at most ``discrete_levels`` bound bins or leaves reached on their
    own, holding at least ``VALUE_LIST_SHARE`` of ``rows_estimate``, the DP row count: a rate
    published per quarter, a code like 999) gets a DP value list instead of knots (a rare value
    spread from a wider node is dropped): the kept values (the bound itself for a bound bin, a
    leaf's centre, within half a leaf of the true value; on the public grid, whole numbers for
    a whole-number column). The VAE models such a column as categories, which keeps its point
    masses and their dependencies far better than a density over knots (measured on the bank
    table: SDMetrics quality 0.69 with knots only, 0.77 with value lists, at epsilon 3).

    Returns:
        (column -> ascending knots in the column's unit (days for dates, seconds for
        datetimes), column -> DP values of a discrete numeric, column -> {"bins", "kept",
        "discrete", "at_min", "at_max", "whole", "step"}: all DP outputs, publishable).
    """
    import numpy as np

    from cloakflow.models.training.dp_sgd import secret_streams

    (stream,) = secret_streams(1, rng)
    specs = {s.name: s for s in pre.specs}
    out, discrete, info = {}, {}, {}
    levels = np.linspace(0.0, 1.0, KNOT_LEVELS)
    sigma = plan.knot_sigma
    threshold = keep_threshold(2 * KNOT_GRID + 2) * sigma  # every node and bound bin tested
    levels_of = dict(zip(plan.knot_columns, plan.knot_levels or (KNOT_TREE_LEVELS,) * len(
        plan.knot_columns), strict=True))
    for col in plan.knot_columns:
        spec = specs[col]
        points = grid_points(spec)
        if levels_of[col] == 1:  # a bin per public grid value (as planned)
            assert points is not None, col
            grid_knots, grid_values, info[col] = _grid_knots(frame, pre, spec, points, sigma,
                                                              stream, levels, rows_estimate)
            if grid_values is not None:
                discrete[col] = grid_values
            else:
                out[col] = grid_knots
            continue
        lo, hi = float(spec.minimum), float(spec.maximum)
        whole = _whole(spec)
        step = spec.step or (1.0 if whole else None)
        edges = _inner_edges(lo, hi, KNOT_GRID, step)
        n_inner = len(edges) - 1
        values = pre._numbers(frame.get_column(col), spec.kind, "<training rows>")
        values = np.clip(values[~np.isnan(values)], lo, hi)
        inner = (values > lo) & (values < hi)
        leaves = np.zeros(KNOT_GRID)
        leaves[:n_inner] = np.histogram(values[inner], bins=edges)[0]
        ends = np.array([np.sum(values == lo), np.sum(values == hi)], dtype=np.float64)
        ends += stream.normal(0.0, sigma, 2)
        ends[ends < threshold] = 0.0
        widths = np.zeros(KNOT_GRID)
        widths[:n_inner] = np.diff(edges)
        tree = [leaves.reshape(2 ** level, -1).sum(axis=1)
                + stream.normal(0.0, sigma, 2 ** level) for level in range(KNOT_TREE_LEVELS)]
        mass, at_leaf = resolve_tree(tree, widths, threshold)
        kept = int((mass > 0).sum() + (ends > 0).sum())
        points = int(at_leaf.sum() + (ends > 0).sum())
        # rows on single points: the leaves' own noisy counts (not the mass their parents
        # passed down, which includes their unresolved neighbours') and the bound bins
        on_points = float(np.maximum(tree[-1][at_leaf], 0.0).sum() + ends.sum())
        info[col] = {"bins": n_inner, "kept": kept, "discrete": False,
                     "at_min": bool(ends[0] > 0), "at_max": bool(ends[1] > 0),
                     "whole": whole, "step": step}
        full = np.concatenate([[ends[0]], mass[:n_inner], [ends[1]]])
        if spec.kind == "numeric" and 0 < points <= pre.discrete_levels \
                and on_points >= VALUE_LIST_SHARE * rows_estimate:
            centres = np.concatenate([[lo], (edges[1:] + edges[:-1]) / 2, [hi]])
            found = centres[np.concatenate([[ends[0]], np.where(at_leaf, mass, 0.0)[:n_inner],
                                            [ends[1]]]) > 0]
            if step:
                found = on_grid(found, lo, step)
            discrete[col] = sorted({float(v) for v in found})
            info[col]["discrete"] = True
            continue
        if full.sum() <= 0:
            console.warn(f"column {col!r}: no part of its public range stood above the DP "
                         "noise, so its synthetic values spread evenly over the range; give "
                         f"public knots (bounds.{col}.knots) or a tighter public range in the "
                         "profile")
            out[col] = list(np.interp(levels, [0.0, 1.0], [lo, hi]))
            continue
        lefts = np.concatenate([[lo], edges[:-1], [hi]])
        rights = np.concatenate([[lo], edges[1:], [hi]])
        out[col] = _inverse_cdf(full, lefts, rights, levels)
    return out, discrete, info


def _grid_knots(frame, pre, spec, points, sigma: float, stream, levels, rows_estimate: float):
    """One column on a public grid: a noisy count per grid value (``points``), counts under
    ``keep_threshold(len(points))`` sigmas set to 0; a value list when at most
    ``discrete_levels`` values stand out holding ``VALUE_LIST_SHARE`` of ``rows_estimate``
    (numeric kind), else knots with each kept value's mass spread over its half-step
    neighbourhood (decoding snaps onto the grid). Returns (knots or None, values or None,
    info)."""
    import numpy as np

    values = pre._numbers(frame.get_column(spec.name), spec.kind, "<training rows>")
    values = np.clip(values[~np.isnan(values)], spec.minimum, spec.maximum)
    step = spec.step or 1.0
    index = np.clip(np.round((values - points[0]) / step).astype(np.int64), 0, len(points) - 1)
    noisy = np.bincount(index, minlength=len(points)).astype(np.float64)
    noisy += stream.normal(0.0, sigma, len(points))
    noisy[noisy < keep_threshold(len(points)) * sigma] = 0.0
    kept = int((noisy > 0).sum())
    info = {"bins": len(points), "kept": kept, "discrete": False, "step": step,
            "at_min": bool(noisy[0] > 0), "at_max": bool(noisy[-1] > 0), "grid": True}
    if spec.kind == "numeric" and 0 < kept <= pre.discrete_levels \
            and noisy.sum() >= VALUE_LIST_SHARE * rows_estimate:
        info["discrete"] = True
        return None, sorted(float(v) for v in points[noisy > 0]), info
    if kept == 0:
        console.warn(f"column {spec.name!r}: no value of its public grid stood above the DP "
                     "noise, so its synthetic values spread evenly over the range")
        return list(np.interp(levels, [0.0, 1.0], [spec.minimum, spec.maximum])), None, info
    lefts = np.maximum(points - step / 2, spec.minimum)
    rights = np.minimum(points + step / 2, spec.maximum)
    return _inverse_cdf(noisy, lefts, rights, levels), None, info


def resolve_tree(tree: list, widths, threshold: float):
    """Post-processing of one column's noisy tree of counts (``tree[level]``: 2**level noisy
    node counts over the leaves, the root first; a hierarchical histogram as in Hay et al.
    2010, "Boosting the accuracy of differentially private histograms through consistency")
    into a mass per leaf, top-down: the root's count, if it stands above ``threshold``, is
    split between the children that stand above it in proportion to their counts, and so on
    down; a node none of whose children stands out spreads its mass over its leaves in
    proportion to their widths (``widths``; 0 for padding). Dense stretches reach the leaves,
    a sparse tail stops at a wide node, an empty stretch gets nothing. Reads only the noisy
    counts: no privacy cost.

    Returns:
        (mass per leaf, shape (leaves,); whether a leaf's mass came down to the leaf level
        itself rather than spread from a wider node, shape (leaves,)).
    """
    import numpy as np

    mass = np.where(tree[0] >= threshold, tree[0], 0.0)
    spread = np.zeros(len(widths))
    for level in range(len(tree) - 1):
        kids = tree[level + 1].reshape(-1, 2)
        strong = np.where(kids >= threshold, kids, 0.0)
        total = strong.sum(axis=1)
        stop = (mass > 0) & (total == 0)  # no child stands out: spread over the node
        if stop.any():
            w = widths.reshape(len(mass), -1)
            node = w.sum(axis=1, keepdims=True)
            share = np.where(node > 0, w / np.where(node > 0, node, 1.0), 0.0)
            spread += (np.where(stop, mass, 0.0)[:, None] * share).reshape(-1)
        go = (mass > 0) & (total > 0)
        mass = (np.where(go, mass, 0.0)[:, None] * strong
                / np.where(total > 0, total, 1.0)[:, None]).reshape(-1)
    return spread + mass, mass > 0


def keep_threshold(bins: int) -> float:
    """Noise sds a noisy count must reach to be kept: the normal quantile at which ``bins``
    empty counts let through ``KNOT_FALSE_COUNTS`` spurious ones on average (at least
    ``KNOT_THRESHOLD``). A spurious count far from the rows widens the synthetic column's
    range, and SDMetrics' pair trends bin a column over its own range: one stray value
    collapses every pair the column is in."""
    from scipy.stats import norm

    return max(KNOT_THRESHOLD, float(norm.isf(KNOT_FALSE_COUNTS / max(bins, 1))))


def _whole(spec) -> bool:
    """Whole-number values: an integer source type (a DP fit's Int64) or a date (days)."""
    from cloakflow.tasks.data import kinds

    return spec.kind == "date" or kinds.parse_dtype(spec.source_dtype).is_integer()


def _inner_edges(lo: float, hi: float, bins: int, step: float | None):
    """Edges of at most ``bins`` equal bins strictly inside (lo, hi); on a public grid
    lo + k * ``step`` (1 for whole numbers), aligned halfway between grid points so that each
    bin holds whole grid values only (several per bin on a grid finer than ``bins``)."""
    import numpy as np

    points = round((hi - lo) / step) - 1 if step else 0  # grid values strictly inside
    if step and points >= 1 and abs(lo + (points + 1) * step - hi) < 1e-9 * max(1.0, abs(hi)):
        width = math.ceil(points / bins)
        edges = lo + step * (0.5 + np.arange(0, points, width, dtype=np.float64))
        return np.append(edges, hi - 0.5 * step)
    return np.linspace(lo, hi, bins + 1)


def _inverse_cdf(counts, lefts, rights, levels) -> list[float]:
    """Quantiles at ``levels`` of a histogram whose mass is spread evenly within each bin
    [lefts[i], rights[i]] (a bin of zero width holds a point mass; empty bins hold none: no
    quantile falls inside them)."""
    import numpy as np

    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    # the bin of each level: the first bin whose cumulative share reaches it (never empty)
    j = np.clip(np.searchsorted(cdf[1:], levels, side="left"), 0, len(counts) - 1)
    held = np.flatnonzero(counts > 0)
    j = np.clip(j, held[0], held[-1])  # levels 0 and 1: the first and last bins holding mass
    mass = counts[j] / counts.sum()
    frac = np.clip((levels - cdf[j]) / np.where(mass > 0, mass, 1.0), 0.0, 1.0)
    return [float(v) for v in lefts[j] + frac * (rights[j] - lefts[j])]


def require_public_bounds(pre_specs, source: str, profile=None) -> None:
    """A DP synthetic release reads no statistic off the rows: every modelled column must
    take its scaling or categories from the profile's public bounds, and (with ``profile``)
    its kind from the profile's ``columns:`` (an inferred kind is read off the rows).

    Raises:
        DpPlanError: naming every column without public bounds or a declared kind, and what
            to add.
    """
    if profile is not None:
        undeclared = [s.name for s in pre_specs
                      if s.missing_of is None and s.name not in profile.columns]
        if undeclared:
            raise DpPlanError(
                f"{source}: a DP synthetic release needs the kind of every modelled column "
                f"declared under `columns:` in the profile (rule: declared kinds); "
                f"{undeclared} are inferred from the rows, and an inferred kind or type is a "
                "statistic of them. Declare each as numeric, categorical, boolean, date or "
                "datetime (the target too)")
    missing = [s.name for s in pre_specs if s.bounds not in ("public", "dp")]
    target = profile.target.column if profile is not None else None
    if target in missing:
        raise DpPlanError(
            f"{source}: a DP synthetic release needs the target's categories as public bounds "
            f"(rule: public bounds): add `bounds: {{{target}: {{categories: [...]}}}}` to the "
            "profile, listing the values it can take (origin: public)"
            + (f"; {sorted(set(missing) - {target})} lack public bounds too"
               if len(missing) > 1 else ""))
    if missing:
        raise DpPlanError(
            f"{source}: a DP synthetic release needs public bounds for every modelled column "
            f"(rule: public bounds); {missing} have none, so their scaling or categories "
            "would be statistics of the private rows. Add them under `bounds:` in the profile "
            "(min and max, optionally knots, for numbers; categories for categories; "
            "origin: public; the target needs its categories too), or leave those columns out of "
            "the profile's groups")


def dp_section(plan: SynthesisDpPlan, bounds_used: dict[str, list[str]], mode: str,
               knot_info: dict[str, dict] | None = None) -> dict:
    """The manifest's ``dp`` section of a synthetic release (also the ledger's entry);
    ``knot_info``: the DP knots' bins per column (``dp_quantile_knots``)."""
    b = plan.sgd
    where = ("kept out of this release (with the owner: the MLflow run, the Prefect flow "
             "run's artifacts, the command's output)" if mode == "private" else
             "in this manifest too, with the exact split row counts, the final loss and the "
             "training time, all not covered")
    statement = budget_statement(
        "The synthetic rows are", plan.total_epsilon, plan.delta,
        f"{ADJACENCY_TEXT[ADJACENCY]} of the training rows",
        covered="every step that read them is covered - the conditioning column's Gaussian "
                f"histogram (sigma {plan.histogram_sigma:.3g}; one bin, the row count, for an "
                "unconditioned model), "
                + (f"the Gaussian histograms behind the quantile knots of "
                   f"{len(plan.knot_columns)} numeric columns (sigma {plan.knot_sigma:.3g} per "
                   "count) " if plan.knot_columns else "")
                + f"and DP-SGD on {DP_SGD_ON[plan.model]} (Poisson sampling q = "
                  f"{b.sampling_rate:g}, noise "
                  f"multiplier {b.noise_multiplier:.4g}, clip norm {plan.clip_norm:g}, "
                  f"{b.steps} steps)",
        composed="composed by dp-accounting's PLD accountant; otherwise the preprocessing used "
                 "only the profile's public bounds",
        notes=("Sampling rows from the model is post-processing. The guarantee holds for the "
               "source rows too: each row joined the training rows on its own secret coin.",),
        not_covered="the release's evaluation (fidelity, TSTR and attack results on private "
                    f"training and control rows; {where}) and the gate's decision, made on "
                    "those figures, that let it be published.",
        hyperparameters=hyperparameter_statement(plan.clip_norm, plan.epochs))
    return {
        "epsilon": round(plan.total_epsilon, 6), "delta": plan.delta,
        "target_epsilon": plan.target_epsilon, "design": "synthesis",
        "adjacency": ADJACENCY, "accountant": ACCOUNTANT,
        "mechanisms": plan.mechanisms(),
        "split": {"condition_histogram": round(plan.histogram_epsilon, 6),
                  "quantile_knots": round(plan.knot_epsilon, 6),
                  "dp_sgd": round(b.epsilon, 6),
                  "note": "each mechanism's epsilon alone at delta; composed they spend "
                          "'epsilon' (less than the sum)"},
        "membership_bound": membership_bound(plan.total_epsilon, plan.delta),
        "preprocessing": {"public_bounds": bounds_used.get("public", []),
                          "public_quantile_knots": bounds_used.get("public_knots", []),
                          "dp_quantile_knots": bounds_used.get("dp_knots", []),
                          "dp_value_lists": bounds_used.get("dp_values", []),
                          "dp_quantile_knot_bins": knot_info or {},
                          "measured_on_data": bounds_used.get("data", []),
                          "statement": "every scaling range, category and value list comes "
                                       "from the profile's public bounds; quantile knots from "
                                       "the profile or, for dp_quantile_knots, from a Gaussian "
                                       "histogram charged to epsilon"},
        "row_count": "private: the synthetic row count is chosen (default: the histogram's DP "
                     "count), and DP-SGD divides by q times that count, not by n",
        "randomness": "histogram noise, batch sampling, gradient noise, initialisation, "
                      + TRAINING_NOISE[plan.model] + " and the control split (a secret coin "
                      "per row), from OS entropy, never recorded; the public seed drives only "
                      "the evaluation and the sampling of rows from the trained model",
        "report": mode,
        "statement": statement,
    }


def refit_with_knots(pre, frame, knots: dict[str, list[float]],
                     values: dict[str, list[float]] | None = None, source: str = "<table>"):
    """``pre`` (a ``TablePreprocessor`` fitted with ``public_bounds``) fitted again on
    ``frame`` with the DP quantile knots and value lists of ``dp_quantile_knots``."""
    from cloakflow.tasks.data.preprocess import TablePreprocessor

    return TablePreprocessor(pre.profile, public_bounds=True, numeric=pre.numeric,
                             with_target=pre.with_target, missing_state=pre.missing_state,
                             discrete_levels=pre.discrete_levels, dp_knots=knots,
                             dp_values=values).fit(frame, source)

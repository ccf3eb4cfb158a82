"""Distance-based privacy figures of synthetic rows (Prefect-free): DCR share, DCR ratio, exact
copies and the nearest-neighbour distance ratio, all read against real control rows that were
never trained on.

A release's figures (``released_distance_privacy``) compare the rows as published, in the source
schema: exact copies are rows equal in every column after the release's rounding, and distances
are Gower distances (Gower 1971): the mean over columns of |a - b| / range for numbers, dates
and datetimes (range: the column's public bounds, else the training rows' span; values clipped
to it) and of [a != b] for categories, booleans and nulls. ``distance_privacy`` takes matrices in
any space where the metric applies (the preprocessor's, with Euclidean distance, for the
membership attacks' tests); nearest neighbours come from scikit-learn's ``NearestNeighbors``.

- **DCR share** (Platzer & Reutterer 2021): for each synthetic row, is its closest training row
  nearer than its closest control row? The larger of the two sets is subsampled to the other's
  size, so a synthesizer that samples fresh rows from the true distribution scores 0.5 (ties
  count half); above 0.5 the rows sit nearer the training rows than new data would.
- **DCR ratio**: median distance of synthetic rows to their closest training row over the same
  for control rows; below 1 the synthetic rows are closer to the training rows than new data is.
  None (not measured) when the control rows' median is 0: a ratio to 0 means nothing.
- **Exact copies**: share of synthetic rows identical to a training row, beside the control
  rows' own share (a table with many duplicate rows has copies by nature).

Control rows are taken once per distinct row: the split keeps duplicate feature rows on one
side (``tasks.data.split``), and a control row repeated many times would weigh as many.
- **NNDR**: distance to the closest over the second-closest training row; near 0 a synthetic row
  sits on one training row rather than among several.
"""

from __future__ import annotations

import numpy as np


def _neighbours(queries: np.ndarray, reference: np.ndarray, k: int,
                metric: str = "euclidean") -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(reference))
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric,
                          n_jobs=1).fit(reference)
    distances, _ = nn.kneighbors(queries)
    return distances


def _copies(queries: np.ndarray, reference: np.ndarray) -> float:
    """Share of ``queries`` rows equal, value for value (as float32), to some reference row."""
    def keys(x):
        x = np.ascontiguousarray(x, dtype=np.float32) + np.float32(0.0)  # -0.0 == 0.0
        return x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()

    return float(np.isin(keys(queries), keys(reference)).mean())


def distance_privacy(synthetic: np.ndarray, train: np.ndarray, control: np.ndarray,
                     seed: int = 0, max_rows: int = 10_000, metric: str = "euclidean") -> dict:
    """The four figures above.

    Args:
        synthetic, train, control: float matrices in the same preprocessed space, shape
            (rows, width); ``control`` rows were not trained on.
        seed: draws the training subsample for the DCR share and, above ``max_rows``, the
            synthetic and control rows scored.
        max_rows: at most this many synthetic and control rows are scored (the distances are
            rows x training rows).
        metric: the nearest-neighbour metric (``manhattan`` on a ``gower_space`` matrix is the
            Gower distance times the column count).

    Returns:
        ``{"dcr_share", "dcr_ratio", "exact_copies", "exact_copies_control", "nndr_median",
        "nndr_p5", "rows", "control_rows_distinct"}`` (``dcr_ratio`` None: not measured).

    Raises:
        ValueError: an empty matrix, or matrices of different widths.
    """
    if min(len(synthetic), len(train), len(control)) == 0:
        raise ValueError("distance figures need synthetic, training and control rows")
    if not synthetic.shape[1] == train.shape[1] == control.shape[1]:
        raise ValueError(f"widths differ: synthetic {synthetic.shape[1]}, train "
                         f"{train.shape[1]}, control {control.shape[1]}")
    rng = np.random.default_rng(seed)
    control = np.unique(np.asarray(control), axis=0)  # distinct rows
    rng.shuffle(control)  # np.unique sorts: keep the subsamples below free of that order

    def cap(x: np.ndarray) -> np.ndarray:
        return x if len(x) <= max_rows else x[np.sort(rng.choice(len(x), max_rows, False))]

    syn, ctl = cap(synthetic), cap(control)
    to_train = _neighbours(syn, train, 2, metric)
    ctl_to_train = _neighbours(ctl, train, 1, metric)[:, 0]
    size = min(len(control), len(train))  # equal sizes: 0.5 is what new data scores
    sample = train[np.sort(rng.choice(len(train), size, False))]
    holdout = control[np.sort(rng.choice(len(control), size, False))]
    d_train = _neighbours(syn, sample, 1, metric)[:, 0]
    d_control = _neighbours(syn, holdout, 1, metric)[:, 0]
    share = float(np.mean(d_train < d_control) + 0.5 * np.mean(d_train == d_control))
    nearest = to_train[:, 0]
    baseline = float(np.median(ctl_to_train))
    ratio = float(np.median(nearest) / baseline) if baseline > 0 else None
    nndr = nearest / np.maximum(to_train[:, -1], 1e-12) if to_train.shape[1] > 1 else \
        np.ones(len(nearest))
    return {"dcr_share": share, "dcr_ratio": ratio,
            "exact_copies": _copies(syn, train),
            "exact_copies_control": _copies(ctl, train),
            "nndr_median": float(np.median(nndr)), "nndr_p5": float(np.percentile(nndr, 5)),
            "rows": int(len(syn)), "control_rows_distinct": int(len(control))}


def gower_space(frames: list, families: dict[str, str],
                ranges: dict[str, tuple[float, float]]) -> list[np.ndarray]:
    """The frames as matrices whose Manhattan distance is the Gower distance times the column
    count: a number, date or datetime ``(v - lo) / (hi - lo)`` clipped to [0, 1] (null: -1, at
    least 1 from any value), a category one-hot over every frame's values times 0.5 (null is a
    value of its own).

    Args:
        frames: polars DataFrames with the columns of ``families`` (one type per column).
        families: column -> ``numeric`` (numbers, dates, datetimes) or ``categorical``.
        ranges: column -> (lo, hi) of every numeric column, hi > lo (else its span is 1).

    Returns:
        float64 matrices, one per frame, rows x (numeric columns + categories).
    """
    import polars as pl

    parts: list[list[np.ndarray]] = [[] for _ in frames]
    for col, family in families.items():
        series = [f.get_column(col) for f in frames]
        if family == "numeric":
            lo, hi = ranges[col]
            span = hi - lo if hi > lo else 1.0
            for part, s in zip(parts, series, strict=True):
                if s.dtype.is_temporal():
                    s = s.dt.epoch("s") / (86400.0 if s.dtype == pl.Date else 1.0)
                v = s.cast(pl.Float64).to_numpy()
                scaled = np.clip((v - lo) / span, 0.0, 1.0)
                part.append(np.where(np.isnan(v), -1.0, scaled)[:, None])
        else:
            text = [s.cast(pl.String).fill_null("\x00null") for s in series]
            values = sorted(set().union(*(t.unique().to_list() for t in text)))
            for part, t in zip(parts, text, strict=True):
                codes = t.replace_strict(values, list(range(len(values)))).to_numpy()
                part.append(0.5 * np.eye(len(values))[codes])
    return [np.hstack(p) if p else np.zeros((len(f), 0)) for p, f in zip(parts, frames,
                                                                            strict=True)]


def exact_copies(queries, reference) -> float:
    """Share of ``queries`` rows (a polars DataFrame) equal in every column to some row of
    ``reference`` (same columns, one type per column; nulls equal nulls)."""
    if not len(queries):
        return 0.0
    hits = queries.join(reference.unique(), on=queries.columns, how="semi", nulls_equal=True)
    return hits.height / queries.height


def released_distance_privacy(synthetic, train, control, families: dict[str, str],
                              ranges: dict[str, tuple[float, float]], seed: int = 0,
                              max_rows: int = 10_000) -> dict:
    """``distance_privacy`` of a release as published: Gower distances (``gower_space``) and
    exact copies (``exact_copies``, every column equal after the release's rounding) of the
    decoded synthetic rows against the training rows, with the distinct control rows against
    the training rows as the baseline.

    Args:
        synthetic, train, control: polars DataFrames in the source schema with the columns of
            ``families`` (one type per column, ``kinds.common_types``).
        families, ranges: see ``gower_space``.

    Returns:
        ``distance_privacy``'s figures, its ``exact_copies``/``exact_copies_control`` from the
        frames, and ``space``.
    """
    columns = list(families)
    synthetic, train, control = (f.select(columns) for f in (synthetic, train, control))
    control = control.unique(maintain_order=True)
    m_syn, m_train, m_control = gower_space([synthetic, train, control], families, ranges)
    out = distance_privacy(m_syn, m_train, m_control, seed=seed, max_rows=max_rows,
                           metric="manhattan")
    out.update(exact_copies=exact_copies(synthetic, train),
               exact_copies_control=exact_copies(control, train),
               space=f"source schema ({len(columns)} columns), Gower distance")
    return out


def _roc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> dict:
    """ROC AUC and TPR at 1% FPR of "a higher score says member"."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(non_member_scores))]
    scores = np.r_[member_scores, non_member_scores]
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"auc": float(roc_auc_score(labels, scores)),
            "tpr_at_1pct_fpr": float(tpr[fpr <= 0.01].max(initial=0.0))}


def membership_of_synthetic(synthetic: np.ndarray, members: np.ndarray, control: np.ndarray,
                            seed: int = 0, max_rows: int = 2000, components: int = 10) -> dict:
    """Membership inference against a synthetic release: can an attacker who holds the
    synthetic rows and some real rows from the same population tell training rows (members)
    from rows never trained on?

    Two attacks, each scored by ROC AUC and TPR at 1% FPR (Carlini et al. 2022):

    - ``distance``: a row closer to its nearest synthetic row is more likely a member (the
      DCR attack of Chen et al. 2020, "GAN-Leaks", full black-box).
    - ``density_ratio``: DOMIAS (van Breugel et al. 2023, "Membership Inference Attacks against
      Synthetic Data through Overfitting Detection"): score = log p_synthetic(x) - log
      p_reference(x), a synthesizer that overfits puts more density at its training rows than
      the population has. Densities are Gaussian kernel density estimates (scikit-learn,
      Scott's bandwidth) on ``components`` principal components fitted on the reference rows.

    The control rows are split in two: half are the attacker's reference population, half the
    non-members scored; as many training rows are drawn as members (``seed``).

    Args:
        synthetic, members, control: matrices in one preprocessed space, (rows, width).
        max_rows: at most this many members and as many non-members are scored.

    Returns:
        ``{"distance": {...}, "density_ratio": {...}, "strongest": name, "auc": ...,
        "tpr_at_1pct_fpr": ..., "members": n, "non_members": n}``, the top-level figures being
        the strongest attack's (higher TPR at 1% FPR, then AUC).

    Raises:
        ValueError: fewer than 20 control rows (too few to split), or widths that differ.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KernelDensity

    if len(control) < 20:
        raise ValueError(f"membership of synthetic rows needs at least 20 control rows, got "
                         f"{len(control)}")
    if not synthetic.shape[1] == members.shape[1] == control.shape[1]:
        raise ValueError("synthetic, member and control rows differ in width")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(control))
    half = len(control) // 2
    reference, outside = control[order[:half]], control[order[half:]]
    n = min(len(outside), max_rows, len(members))
    outside = outside[:n]
    inside = members[np.sort(rng.choice(len(members), n, replace=False))]
    queries = np.vstack([inside, outside])

    distance = -_neighbours(queries, synthetic, 1)[:, 0]
    pca = PCA(n_components=min(components, reference.shape[1], len(reference) - 1),
              random_state=seed).fit(reference)
    syn_sample = synthetic if len(synthetic) <= 20_000 else \
        synthetic[rng.choice(len(synthetic), 20_000, replace=False)]
    kde_syn = KernelDensity(bandwidth="scott").fit(pca.transform(syn_sample))
    kde_ref = KernelDensity(bandwidth="scott").fit(pca.transform(reference))
    z = pca.transform(queries)
    ratio = kde_syn.score_samples(z) - kde_ref.score_samples(z)

    attacks = {"distance": _roc(distance[:n], distance[n:]),
               "density_ratio": _roc(ratio[:n], ratio[n:])}
    strongest = max(attacks, key=lambda k: (attacks[k]["tpr_at_1pct_fpr"], attacks[k]["auc"]))
    return {**attacks, "strongest": strongest, **attacks[strongest], "members": int(n),
            "non_members": int(n)}

"""Adversarially trained privatizer for desensitization: generative adversarial privacy
(Huang, Kairouz, Chen, Sankar & Rajagopal 2017, "Context-aware generative adversarial
privacy"; Huang et al. 2018, "Generative adversarial privacy"), in backend-agnostic Keras 3,
trained as two phases of the one phase trainer.

It works on the preprocessed matrix of ``tasks.data.preprocess.TablePreprocessor`` (one block
per source column: a numeric-family column one CDF value u in [0, 1], a categorical or boolean
column a one-hot block), in the VAE's model space (``vae.to_model_space``: a numeric column
as its normal score probit(u)). The columns fall in three roles: the **sensitive** columns
(categorical or boolean: what must no longer be inferable; never released), the **kept**
column (the target: released as it is, the label in clear) and the **released** columns
(every other column: regenerated close to the source row).

- **Privatizer** ``P([row, z, e])``: the source row (the target included; the sensitive
  columns zeroed unless ``sees_sensitive``), latent noise z ~ N(0, I) and the released
  columns' noise e -> Dense(ReLU) layers -> per released column a change. A numeric column is
  released as its normal score plus a Gaussian change m + s * e (mean m and scale s learnt
  per row, so that blurring a value is as easy to learn as shifting it); a category block as a
  straight-through Gumbel-softmax sample (Jang et al. 2017: forward the exact one-hot of
  argmax(logits + g), so released cells are valid categories; gradient that of
  softmax((logits + g) / tau)) of the logits ``KEEP`` * one-hot(source value) + change. The
  change layer starts at zero: training starts from the identity release. Its last output is
  the row's **distortion**: the mean over the released columns of a category's probability
  of being changed (1 - softmax(logits)[source]) and a numeric column's expected squared
  change in normal-score units (m² + s²) over 4, not capped (a cell moved by two standard
  deviations costs as much as a changed category; moving a whole column far costs more, so
  that the budget cannot be spent wrecking one column).
- **Adversary** ``A([released row, target])`` -> logits per sensitive column: tries to infer
  the sensitive values from what is published.
- **Objective** (a minimax game): the adversary's phase minimises its cross-entropy on the
  true sensitive values; the privatizer's phase minimises the cross-entropy of the
  adversary's prediction against the sensitive column's training shares (its prediction is
  driven to the marginal, which says nothing about the row: the maximum-entropy adversary
  loss of Roy & Boddeti 2019) plus ``thrift`` * mean distortion plus ``penalty`` * max(0,
  mean distortion - ``distortion``) (the distortion budget as a hinge penalty). Both terms
  run two networks on real rows, so they are **joint** terms (``phases.JointTerm``): plain
  training only. A desensitized release is never DP: its rows derive one-to-one from real
  rows.
- **Why the privatizer does not see the sensitive values** (by default): a released row is
  then a randomised function of the row's other columns alone, so by the data-processing
  inequality the Bayes-optimal inference of a sensitive value from it is no better than from
  the real other columns (the imputation baseline). That bounds what the rows hold, not what
  a given attacker learns from a few known rows: the privatizer learnt the columns' relation
  to the sensitive values from every training row, and its changes can make that relation
  easier to learn (measured: the fresh attackers' gain over the imputation baseline). A
  privatizer that reads them (``sees_sensitive``, the context-aware form) can also write the
  values into small changes an adversary misses: on the bank table it put ``loan`` into
  ``campaign``'s changes, which LightGBM read (AUC 0.527 against 0.502 for the dropped
  columns) while the adversary stayed at chance.
- **The adversary is not a straw man**: ``refresh_every`` epochs a fresh adversary
  (re-initialised) is trained alone for ``adversary_epochs`` epochs against the current
  privatizer before the game goes on, ``adversary_steps`` adversary steps per privatizer step
  (an adversary at chance during training says nothing, Elazar & Goldberg 2018: the release is
  judged by fresh attackers trained afterwards, ``tasks.privacy.attacks.attribute``).

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from cloakflow.models.heads import NUMERIC, Head, as_heads, block_noise, starts, total_width
from cloakflow.models.registry import ModelFamily
from cloakflow.models.vae import to_model_space

KEEP = 4.0  # a released category's logit for its source value before any change
SCALE_START = -4.0  # a numeric change's log scale before training (scale 0.018)
LEAK = 0.2  # the adversary's LeakyReLU slope


@dataclass(frozen=True)
class PrivatizerConfig:
    """Architecture and loop settings.

    ``heads``: every column's block (``TablePreprocessor.heads()``); ``sensitive``: indices of
    the sensitive columns' heads (categorical); ``kept``: indices of the heads released as
    they are (the target); ``shares``: per sensitive column its categories' training shares
    (the privatizer's target for the adversary's prediction); ``distortion``: the budget D
    of the mean distortion per row (see the module docstring; 0.05: on average one cell in
    twenty changed); ``penalty``: the hinge penalty's weight; ``thrift``: the weight of the mean
    distortion itself (below the budget too; 0: on the bank table any weight kept the
    privatizer from removing a weak signal); ``sees_sensitive``: whether the privatizer reads
    the sensitive columns (the context-aware privatizer of Huang et al.; by default it does
    not, see the module docstring); ``latent``: width of z;
    ``hidden`` / ``adversary_hidden``: Dense widths; ``adversary_linear``: a
    logistic branch added to the adversary's logits (a linear signal, which a logistic
    attacker reads, is then found and removed first); ``temperature``: the Gumbel-softmax tau;
    ``epochs``: passes over the rows by both phases' steps together (the phase trainer's
    epoch: with ``adversary_steps`` 5 the privatizer takes one step in six); ``refresh_every``:
    epochs between fresh adversaries; ``adversary_epochs``: epochs a fresh adversary trains
    alone; ``adversary_steps``: adversary steps per privatizer step; ``batch_size``;
    ``learning_rate`` (the privatizer's Adam, beta_1 0.5) and ``adversary_learning_rate`` (the
    adversary's Adam); ``column_names``: the heads' source columns (messages).
    """

    heads: tuple = ()
    sensitive: tuple[int, ...] = ()
    kept: tuple[int, ...] = ()
    shares: tuple[tuple[float, ...], ...] = ()
    distortion: float = 0.05
    penalty: float = 20.0
    thrift: float = 0.0
    sees_sensitive: bool = False
    latent: int = 8
    hidden: tuple[int, ...] = (256, 256)
    adversary_hidden: tuple[int, ...] = (128, 128)
    adversary_linear: bool = True
    temperature: float = 0.5
    epochs: int = 30
    refresh_every: int = 5
    adversary_epochs: int = 5
    adversary_steps: int = 5
    batch_size: int = 500
    learning_rate: float = 1e-3
    adversary_learning_rate: float = 3e-3
    steps_per_execution: int = 32
    column_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        heads = as_heads(self.heads)
        n = len(heads)
        if not self.sensitive:
            raise ValueError("a privatizer needs at least one sensitive column")
        bad = [i for i in (*self.sensitive, *self.kept) if not 0 <= i < n]
        if bad:
            raise ValueError(f"column indices {bad} are not among the {n} columns")
        if set(self.sensitive) & set(self.kept):
            raise ValueError("a column cannot be both sensitive and kept as it is")
        numeric = [self._name(i) for i in self.sensitive if heads[i].family == NUMERIC]
        if numeric:
            raise ValueError(f"sensitive columns must be categorical or boolean; {numeric} "
                             "are numeric")
        if not self.released:
            raise ValueError("nothing left to release: every column is sensitive or kept")
        if len(self.shares) != len(self.sensitive) or any(
                len(s) != heads[i].width or min(s) < 0 or not sum(s) > 0
                for s, i in zip(self.shares, self.sensitive, strict=False)):
            raise ValueError("give each sensitive column its categories' shares")
        if not self.distortion >= 0 or not self.penalty > 0 or not self.temperature > 0:
            raise ValueError("distortion >= 0, penalty > 0 and temperature > 0")
        if min(self.epochs, self.refresh_every, self.adversary_steps, self.batch_size) < 1 or \
                self.adversary_epochs < 0 or self.latent < 0:
            raise ValueError("epochs, refresh_every, adversary_steps and batch_size must be "
                             "positive, adversary_epochs and latent >= 0")

    def _name(self, i: int) -> str:
        return self.column_names[i] if self.column_names else str(i)

    @property
    def output_heads(self) -> tuple[Head, ...]:
        return as_heads(self.heads)

    @property
    def released(self) -> tuple[int, ...]:
        """The heads the privatizer regenerates: neither sensitive nor kept."""
        return tuple(i for i in range(len(self.heads))
                     if i not in self.sensitive and i not in self.kept)

    def to_dict(self) -> dict:
        return asdict(self)

    def training(self, epochs: int):
        """The loop settings (``trainer.TrainConfig``) of ``epochs`` epochs."""
        from cloakflow.models.training.trainer import TrainConfig

        return TrainConfig(epochs=epochs, batch_size=self.batch_size,
                           learning_rate=self.learning_rate,
                           steps_per_execution=self.steps_per_execution)


@dataclass(frozen=True)
class _Layout:
    starts: tuple[int, ...]  # each head's block start in the source row
    width: int  # source row width
    released: tuple[tuple[int, int, str], ...]  # (start, width, family) of each released head
    released_width: int  # width of a released row (the released heads' blocks)
    gumbel_width: int  # noise of the released blocks: one N(0, 1) per numeric, Gumbel per level
    kept: tuple[int, ...]  # source columns of the kept heads
    sensitive: tuple[tuple[int, int], ...]  # (start, width) of each sensitive head


@functools.cache
def _layout(heads: tuple[Head, ...], sensitive: tuple[int, ...], kept: tuple[int, ...]
            ) -> _Layout:
    st = starts(heads)
    released = [i for i in range(len(heads)) if i not in sensitive and i not in kept]
    rel = tuple((st[i], heads[i].width, heads[i].family) for i in released)
    kept_cols = tuple(c for i in kept for c in range(st[i], st[i] + heads[i].width))
    return _Layout(tuple(st), total_width(heads), rel, sum(w for _, w, _ in rel),
                   sum(w for _, w, _ in rel), kept_cols,
                   tuple((st[i], heads[i].width) for i in sensitive))


def layout(config: PrivatizerConfig) -> _Layout:
    return _layout(config.output_heads, tuple(config.sensitive), tuple(config.kept))


@functools.cache
def custom_layers() -> dict:
    """The Keras layers of the privatizer, registered for loading saved models."""
    import keras
    from keras import ops

    from cloakflow.models.heads import custom_layers as head_layers

    @keras.saving.register_keras_serializable(package="cloakflow")
    class PrivatizedRows(keras.layers.Layer):
        """[source row (model space), changes, Gumbel noise] -> [released row, distortion]
        (no weights): each released numeric column its normal score plus its change, each
        released category block a straight-through Gumbel-softmax sample of ``keep`` *
        one-hot(source) + change; the last column the row's distortion (module docstring)."""

        def __init__(self, released: list, temperature: float, keep: float, **kwargs):
            super().__init__(**kwargs)
            self.released = [[int(a), int(w), str(f)] for a, w, f in released]
            self.temperature, self.keep = float(temperature), float(keep)

        def call(self, inputs):
            row, change, noise = inputs
            parts, distortion, o, g = [], [], 0, 0
            for a, w, family in self.released:
                if family == NUMERIC:  # a Gaussian change: mean and log scale per row
                    mean, scale = change[:, o], ops.exp(change[:, o + 1] + SCALE_START)
                    parts.append(row[:, a:a + 1] + (mean + scale * noise[:, g])[:, None])
                    distortion.append((ops.square(mean) + ops.square(scale)) / 4.0)
                    o, g = o + 2, g + 1
                    continue
                source = row[:, a:a + w]
                logits = self.keep * source + change[:, o:o + w]
                soft = ops.softmax((logits + noise[:, g:g + w]) / self.temperature, axis=-1)
                hard = ops.one_hot(ops.argmax(soft, axis=-1), w, dtype=soft.dtype)
                parts.append(soft + ops.stop_gradient(hard - soft))
                kept = ops.sum(ops.softmax(logits, axis=-1) * source, axis=-1)
                distortion.append(1.0 - kept)
                o, g = o + w, g + w
            d = ops.mean(ops.stack(distortion, axis=-1), axis=-1, keepdims=True)
            return ops.concatenate([*parts, d], axis=-1)

        def compute_output_shape(self, shapes):
            return (shapes[0][0], sum(w for _, w, _ in self.released) + 1)

        def get_config(self):
            return {**super().get_config(), "released": self.released,
                    "temperature": self.temperature, "keep": self.keep}

    @keras.saving.register_keras_serializable(package="cloakflow")
    class ColumnMask(keras.layers.Layer):
        """The row with the columns ``hidden`` set to zero (no weights): what the privatizer
        reads of a row when it must not see its sensitive values."""

        def __init__(self, width: int, hidden: list, **kwargs):
            super().__init__(**kwargs)
            self.width, self.hidden = int(width), [int(i) for i in hidden]
            mask = np.ones((1, self.width), dtype=np.float32)
            mask[0, self.hidden] = 0.0
            self._mask = mask

        def call(self, row):
            return row * ops.convert_to_tensor(self._mask)

        def compute_output_shape(self, shape):
            return shape

        def get_config(self):
            return {**super().get_config(), "width": self.width, "hidden": self.hidden}

    return {**head_layers(), "PrivatizedRows": PrivatizedRows, "ColumnMask": ColumnMask}


def build_networks(config: PrivatizerConfig, seed: int) -> dict:
    """``{"privatizer": [row | z | g] -> [released row | distortion], "adversary":
    [released row | kept columns] -> sensitive logits}``, seeded initialisers (layer i gets
    ``seed + i``), compiled with Adam(``learning_rate``, beta_1 0.5) and
    Adam(``adversary_learning_rate``).

    Shapes: the privatizer's input (batch, row width + latent + Gumbel width), its output
    (batch, released width + 1); the adversary's input (batch, released width + kept width),
    its output (batch, the sensitive blocks' total width)."""
    import keras
    from keras import layers

    cfg = config
    lay = layout(cfg)
    counter = iter(range(10_000))
    block = custom_layers()["CodeBlock"]

    def dense(units: int, activation=None, name: str | None = None, zero: bool = False):
        init = "zeros" if zero else keras.initializers.GlorotUniform(seed=seed + next(counter))
        return layers.Dense(units, activation=activation, name=name, kernel_initializer=init)

    width_in = lay.width + cfg.latent + lay.gumbel_width
    p_in = keras.Input(shape=(width_in,), name="row_and_noise")
    row = block(0, lay.width, name="row")(p_in)
    noise = block(lay.width + cfg.latent, width_in, name="gumbel")(p_in)
    z = block(lay.width, lay.width + cfg.latent, name="z")(p_in)
    seen = row if cfg.sees_sensitive else custom_layers()["ColumnMask"](
        lay.width, [c for a, k in lay.sensitive for c in range(a, a + k)],
        name="without_sensitive")(row)
    h = layers.Concatenate(name="row_and_z")([seen, z]) if cfg.latent else seen
    for i, units in enumerate(cfg.hidden):
        h = dense(units, "relu", name=f"privatizer_{i}")(h)
    raw = sum(2 if f == NUMERIC else w for _, w, f in lay.released)
    change = dense(raw, name="change", zero=True)(h)  # starts as the identity release
    out = custom_layers()["PrivatizedRows"]([list(r) for r in lay.released], cfg.temperature,
                                            KEEP, name="released")([row, change, noise])
    privatizer = keras.Model(p_in, out, name="privatizer")

    a_in = keras.Input(shape=(lay.released_width + len(lay.kept),), name="released_row")
    a = a_in
    for i, units in enumerate(cfg.adversary_hidden):
        a = layers.LeakyReLU(LEAK, name=f"adversary_act_{i}")(
            dense(units, name=f"adversary_{i}")(a))
    width = sum(w for _, w in lay.sensitive)
    logits = dense(width, name="sensitive_logits")(a)
    if cfg.adversary_linear:  # a logistic branch beside the MLP: linear signal is found first
        logits = layers.Add(name="with_linear")([logits, dense(width, name="linear_logits")(
            a_in)])
    adversary = keras.Model(a_in, logits, name="adversary")
    privatizer.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate, beta_1=0.5))
    adversary.compile(optimizer=keras.optimizers.Adam(cfg.adversary_learning_rate))
    return {"privatizer": privatizer, "adversary": adversary}


def noise_columns(config: PrivatizerConfig, rng: np.random.Generator, rows: int) -> np.ndarray:
    """The privatizer's noise for ``rows`` rows, float32 (rows, latent + released noise): z ~
    N(0, I), then per released numeric column one N(0, 1) draw (its Gaussian change) and per
    released category block standard Gumbel noise, in the released columns' order."""
    z = rng.standard_normal((rows, config.latent), dtype=np.float32)
    return np.concatenate([z, block_noise([(f, w) for _, w, f in layout(config).released], rng,
                                          rows)], axis=1)


def _sensitive_ce(config: PrivatizerConfig, logits, target):
    """Per-row cross-entropy summed over the sensitive columns: ``target`` (batch, sensitive
    width) one-hots or shares."""
    from keras import ops

    total, o = 0.0, 0
    for _, w in layout(config).sensitive:
        total = total + -ops.sum(target[:, o:o + w] * ops.log_softmax(logits[:, o:o + w],
                                                                      axis=-1), axis=-1)
        o += w
    return total


def phases(config: PrivatizerConfig, adversary_only: bool = False) -> list:
    """The adversary's phase (its cross-entropy on the true sensitive values of the
    privatized rows) and the privatizer's (the adversary's cross-entropy against the shares,
    plus the distortion penalty), ``adversary_steps`` to one; with ``adversary_only`` the
    adversary's phase alone (a fresh adversary's training). Both joint terms: plain only."""
    from keras import ops

    from cloakflow.models.training.phases import JointTerm, Phase

    lay = layout(config)
    w, rw = lay.width, lay.released_width
    sens_cols = np.asarray([c for a, k in lay.sensitive for c in range(a, a + k)])
    kept_cols = np.asarray(lay.kept, dtype=np.int64)
    prior = np.concatenate([np.asarray(s, np.float32) / np.float32(sum(s))
                            for s in config.shares])[None, :]

    def released(view, x):
        out = view("privatizer", x)
        rows = out[:, :rw]
        if len(kept_cols):
            rows = ops.concatenate([rows, ops.take(x[:, :w], kept_cols, axis=1)], axis=1)
        return rows, out[:, rw]

    def masked_mean(v, mask):
        return ops.sum(v * mask) / ops.maximum(ops.sum(mask), 1.0)

    def adversary_loss(view, x, mask):
        rows, _ = released(view, x)
        truth = ops.take(x, sens_cols, axis=1)
        return masked_mean(_sensitive_ce(config, view("adversary", rows), truth), mask)

    budget, penalty, thrift = float(config.distortion), float(config.penalty), \
        float(config.thrift)

    def privatizer_loss(view, x, mask):
        rows, distortion = released(view, x)
        shares = ops.broadcast_to(ops.convert_to_tensor(prior), (ops.shape(x)[0],
                                                                 prior.shape[1]))
        confusion = masked_mean(_sensitive_ce(config, view("adversary", rows), shares), mask)
        moved = masked_mean(distortion, mask)
        return confusion + thrift * moved + penalty * ops.relu(moved - budget)

    adversary = Phase("adversary", ("adversary",), joint=JointTerm(adversary_loss),
                      steps=config.adversary_steps)
    if adversary_only:
        return [adversary]
    return [adversary, Phase("privatizer", ("privatizer",), joint=JointTerm(privatizer_loss))]


class Privatizer:
    """A trained privatizer: ``release(x, rng)`` privatizes preprocessed rows."""

    def __init__(self, config: PrivatizerConfig, networks: dict):
        self.config = config
        self.networks = networks
        self.privatizer = networks["privatizer"]

    def release(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                          np.ndarray]:
        """(released rows, each row's distortion) of the preprocessed rows ``x`` (rows,
        width): the released rows in the preprocessor's space with the sensitive blocks all
        zeros (they are not published) and the kept blocks copied; numerics as CDF values in
        [0, 1], categories one-hot. Noise from ``rng``."""
        from scipy.special import ndtr

        cfg, lay = self.config, layout(self.config)
        xm = to_model_space(x, cfg.output_heads)
        inputs = np.concatenate([xm, noise_columns(cfg, rng, len(x))], axis=1)
        out = np.concatenate([np.asarray(self.privatizer(inputs[i:i + 8192], training=False))
                              for i in range(0, len(x), 8192)]) if len(x) else \
            np.zeros((0, lay.released_width + 1), np.float32)
        rows = np.zeros_like(x, dtype=np.float32)
        rows[:, list(lay.kept)] = x[:, list(lay.kept)]
        o = 0
        for a, w, family in lay.released:
            rows[:, a:a + w] = np.clip(ndtr(out[:, o:o + w]), 0, 1) if family == NUMERIC \
                else out[:, o:o + w]
            o += w
        return rows, out[:, -1].astype(np.float64)


@dataclass
class PrivatizerResult:
    """A trained privatizer and what its training did (``log``: epochs run, per-epoch
    history, seconds; ``health``: the fresh adversaries' losses and the shares' entropy)."""

    privatizer: Privatizer
    log: object
    health: dict


@dataclass
class PrivatizerWeights:
    """A trained privatizer as plain data (crosses task boundaries); ``result()`` rebuilds
    it."""

    config: PrivatizerConfig
    weights: dict
    log: object = None
    health: dict | None = None

    def result(self) -> PrivatizerResult:
        nets = build_networks(self.config, 0)
        for n, m in nets.items():
            m.set_weights(self.weights[n])
        return PrivatizerResult(Privatizer(self.config, nets), self.log, self.health or {})


def train_privatizer(x: np.ndarray, config: PrivatizerConfig, seed: int = 0, *,
                     on_epoch=None) -> PrivatizerWeights:
    """Train the privatizer and its adversary on the preprocessed rows ``x`` (rows, width) in
    the phase trainer, plainly (a desensitized release is never DP).

    Every ``refresh_every`` epochs: a fresh adversary (re-initialised) trains alone for
    ``adversary_epochs`` epochs against the current privatizer, then the game runs
    ``refresh_every`` epochs (the privatizer's noise redrawn for each stretch). Seeds:
    initialisation, row order and noise from ``seed``.

    Args:
        on_epoch: ``on_epoch(epoch, metrics)`` after each epoch of the game, metrics
            ``"adversary"`` (its cross-entropy on the true values, nats per row, summed over
            the sensitive columns), ``"privatizer"`` (its loss), ``"fresh_adversary"`` (the
            fresh adversary's cross-entropy after its own training, on the stretch's first
            epoch).

    Returns:
        ``PrivatizerWeights`` with ``log`` (epochs run, per-epoch history, seconds) and
        ``health`` (``{"fresh_adversary": [cross-entropy per refresh], "baseline": the
        cross-entropy of predicting the shares}``).

    Raises:
        ValueError: ``x`` does not match the heads' width; a loss that became NaN.
    """
    import time

    from cloakflow.models.training.phases import train_phases
    from cloakflow.models.training.trainer import TrainLog

    cfg, lay = config, layout(config)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2 or x.shape[1] != lay.width:
        raise ValueError(f"need a (rows >= 2, {lay.width}) matrix for these heads, got shape "
                         f"{x.shape}")
    xm = to_model_space(x, cfg.output_heads)
    rng = np.random.default_rng([seed, 7])
    nets = build_networks(cfg, seed)
    history: dict[str, list[float]] = {"adversary": [], "privatizer": [], "fresh_adversary": []}
    baseline = float(sum(-(np.asarray(s) / sum(s) * np.log(np.maximum(np.asarray(s) / sum(s),
                                                                       1e-12))).sum()
                         for s in cfg.shares))
    start, epoch, stretch = time.perf_counter(), 0, 0
    while epoch < cfg.epochs:
        epochs = min(cfg.refresh_every, cfg.epochs - epoch)
        xa = np.concatenate([xm, noise_columns(cfg, rng, len(xm))], axis=1)
        fresh = build_networks(cfg, seed + 1000 * (stretch + 1))["adversary"]
        nets["adversary"].set_weights(fresh.get_weights())
        fresh_loss = float("nan")
        if cfg.adversary_epochs:
            log, _ = train_phases(nets, phases(cfg, adversary_only=True), xa,
                                  cfg.training(cfg.adversary_epochs),
                                  seed=int(rng.integers(2**31)))
            fresh_loss = log.history["adversary.private"][-1]
        history["fresh_adversary"].append(fresh_loss)

        def epoch_done(e: int, metrics: dict, offset=epoch, fresh_loss=fresh_loss) -> None:
            m = {"adversary": metrics["adversary.private"],
                 "privatizer": metrics["privatizer.private"],
                 **({"fresh_adversary": fresh_loss} if e == 1 else {})}
            if not all(np.isfinite(v) for v in (m["adversary"], m["privatizer"])):
                raise ValueError(f"privatizer training diverged at epoch {offset + e}: {m}")
            history["adversary"].append(m["adversary"])
            history["privatizer"].append(m["privatizer"])
            if on_epoch is not None:
                on_epoch(offset + e, m)

        train_phases(nets, phases(cfg), xa, cfg.training(epochs), seed=int(rng.integers(2**31)),
                     on_epoch=epoch_done)
        epoch += epochs
        stretch += 1
    log = TrainLog(None, float("inf"))
    log.epochs_run, log.seconds = epoch, time.perf_counter() - start
    log.history = history
    return PrivatizerWeights(cfg, {n: m.get_weights() for n, m in nets.items()}, log,
                             {"fresh_adversary": history["fresh_adversary"],
                              "baseline": baseline})


class PrivatizerFamily(ModelFamily):
    """The privatizer as a registered model (``models.registry``): networks ``privatizer``
    and ``adversary``, two joint phases (plain only). Feeds desensitized releases."""

    name = "privatizer"
    description = ("an adversarially trained privatizer (generative adversarial privacy): "
                   "real rows with the sensitive columns' signal removed")
    models_target = False
    release = "desensitized"
    command = "cloakflow desensitize"
    federates = False

    def spec(self, pre, loop, sensitive: Sequence[str] = (), distortion: float = 0.05):
        """The ``PrivatizerConfig`` over a fitted preprocessor (with the target) for the
        ``sensitive`` source columns (uniform shares: the real ones come from the rows)."""
        names = [s.name for s in pre.specs]
        heads = pre.heads()
        sens = tuple(names.index(c) for c in sensitive)
        kept = tuple(i for i, s in enumerate(pre.specs) if s.name == pre.profile.target.column)
        return PrivatizerConfig(heads=heads, sensitive=sens, kept=kept,
                                shares=tuple((1.0,) * heads[i][1] for i in sens),
                                distortion=distortion, epochs=loop.epochs,
                                batch_size=loop.batch_size, learning_rate=loop.learning_rate,
                                column_names=tuple(names))

    def member_names(self, profile) -> list[str]:
        return ["privatizer", "adversary"]

    def networks(self, spec: PrivatizerConfig, seed: int) -> dict:
        return build_networks(spec, seed)

    def phases(self, spec: PrivatizerConfig, networks: dict) -> list:
        return phases(spec)

    def inputs(self, spec: PrivatizerConfig, x: np.ndarray) -> np.ndarray:
        return np.concatenate([to_model_space(x, spec.output_heads),
                               noise_columns(spec, np.random.default_rng(0), len(x))], axis=1)

    def loop(self, spec: PrivatizerConfig):
        return spec.training(spec.epochs)


PRIVATIZER = PrivatizerFamily()

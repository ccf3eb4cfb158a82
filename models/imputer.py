"""GAN imputer for masking: chosen cells regenerated from the rest of the row, in the family of
GAIN (Yoon, Jordon & van der Schaar 2018, "GAIN: Missing data imputation using generative
adversarial nets"), in backend-agnostic Keras 3, trained as two phases of the one phase
trainer.

It works on the preprocessed matrix of ``tasks.data.preprocess.TablePreprocessor`` in the
VAE's model space (``vae.to_model_space``), as the other models. Some columns are
**maskable** (the ones a release regenerates); a mask m gives, per maskable column and row, 1
where the cell is kept and 0 where it is regenerated.

- **Generator** ``G([row with masked cells zeroed, m, z, e])`` -> per maskable column a
  distribution: a numeric column's mean and log scale (its draw mean + scale * e, e ~ N(0, 1)),
  a category block's logits (its draw a straight-through Gumbel-softmax sample). Cells are
  **drawn** from the conditional distribution, not set to its mean: a mean is what an
  imputation's RMSE rewards and what defeats masking (every masked row gets the typical
  value, which a linkage attack reads as "masked"; the true value is recovered where the
  conditional is narrow anyway).
- **Discriminator** ``D([completed row, hint])`` -> per maskable column the logit that the
  cell was kept; the hint (GAIN's hint mechanism) reveals the mask of a cell with probability
  ``hint_rate`` (0.5 elsewhere), so that D must judge the others.
- **Objective**: D minimises the cross-entropy of the mask; G minimises the non-saturating
  adversarial loss on its generated cells plus ``likelihood`` times the negative
  log-likelihood of the true values of cells masked for training (Gaussian for a numeric
  column, categorical cross-entropy for a category block): the likelihood term learns the
  conditional distribution, the adversarial term sharpens its joint draws. Training masks are
  drawn at ``mask_rate`` per cell, redrawn every ``refresh_every`` epochs with the noise and
  hints. Both terms run two networks on real rows: **joint** terms (``phases.JointTerm``),
  plain training only.

A masked release imputes each row with a model trained without that row (K folds,
``tasks.release.masked``), so a row's true cells never reach its own imputation.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from cloakflow.models.heads import NUMERIC, Head, as_heads, block_noise, starts, total_width
from cloakflow.models.registry import ModelFamily
from cloakflow.models.vae import to_model_space

LEAK = 0.2  # the discriminator's LeakyReLU slope
LOG_SCALE_MIN = -7.0  # a numeric draw's smallest log scale (no zero-width distribution)


@dataclass(frozen=True)
class ImputerConfig:
    """Architecture and loop settings.

    ``heads``: every column's block (``TablePreprocessor.heads()``); ``maskable``: indices of
    the heads that may be masked (regenerated); ``latent``: width of z; ``hidden`` /
    ``discriminator_hidden``: Dense widths; ``hint_rate``: the share of mask cells the hint
    reveals; ``mask_rate``: the share of maskable cells masked in training; ``likelihood``:
    the weight of the likelihood term; ``temperature``: the Gumbel-softmax tau; ``epochs``:
    passes over the rows by both phases' steps together; ``refresh_every``: epochs between
    fresh training masks, noise and hints; ``batch_size``, ``learning_rate`` (Adam, beta_1
    0.5, both networks); ``column_names``: the heads' source columns (messages).
    """

    heads: tuple = ()
    maskable: tuple[int, ...] = ()
    latent: int = 8
    hidden: tuple[int, ...] = (256, 256)
    discriminator_hidden: tuple[int, ...] = (128, 128)
    hint_rate: float = 0.9
    mask_rate: float = 0.5
    likelihood: float = 1.0
    temperature: float = 0.5
    epochs: int = 30
    refresh_every: int = 5
    batch_size: int = 500
    learning_rate: float = 1e-3
    steps_per_execution: int = 32
    column_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        n = len(as_heads(self.heads))
        if not self.maskable:
            raise ValueError("an imputer needs at least one maskable column")
        bad = [i for i in self.maskable if not 0 <= i < n]
        if bad:
            raise ValueError(f"column indices {bad} are not among the {n} columns")
        if len(self.maskable) == n:
            raise ValueError("every column is maskable: nothing is left to impute from")
        if not (0 <= self.hint_rate < 1 and 0 < self.mask_rate < 1 and self.likelihood >= 0
                and self.temperature > 0):
            raise ValueError("hint_rate in [0, 1), mask_rate in (0, 1), likelihood >= 0, "
                             "temperature > 0")
        if min(self.epochs, self.refresh_every, self.batch_size) < 1 or self.latent < 0:
            raise ValueError("epochs, refresh_every and batch_size must be positive, "
                             "latent >= 0")

    @property
    def output_heads(self) -> tuple[Head, ...]:
        return as_heads(self.heads)

    def to_dict(self) -> dict:
        return asdict(self)

    def training(self, epochs: int):
        from cloakflow.models.training.trainer import TrainConfig

        return TrainConfig(epochs=epochs, batch_size=self.batch_size,
                           learning_rate=self.learning_rate,
                           steps_per_execution=self.steps_per_execution)


@dataclass(frozen=True)
class _Layout:
    width: int  # row width
    blocks: tuple[tuple[int, int, str], ...]  # (start, width, family) of each maskable head
    k: int  # maskable columns (the mask's width)
    noise: int  # the draws' noise: one N(0, 1) per numeric, Gumbel per level
    params: int  # the generator's raw outputs: numeric mean and log scale, category logits

    @property
    def cells(self) -> tuple[int, ...]:
        """The row's columns of the maskable blocks."""
        return tuple(c for a, w, _ in self.blocks for c in range(a, a + w))


@functools.cache
def _layout(heads: tuple[Head, ...], maskable: tuple[int, ...]) -> _Layout:
    st = starts(heads)
    blocks = tuple((st[i], heads[i].width, heads[i].family) for i in maskable)
    return _Layout(total_width(heads), blocks, len(blocks), sum(w for _, w, _ in blocks),
                   sum(2 if f == NUMERIC else w for _, w, f in blocks))


def layout(config: ImputerConfig) -> _Layout:
    return _layout(config.output_heads, tuple(config.maskable))


def cell_mask(config: ImputerConfig, mask: np.ndarray) -> np.ndarray:
    """A per-column mask (rows, k) spread over each block's row columns: float32 (rows,
    width), 1 where a cell is kept (every column outside the maskable blocks too)."""
    lay = layout(config)
    out = np.ones((len(mask), lay.width), dtype=np.float32)
    for j, (a, w, _) in enumerate(lay.blocks):
        out[:, a:a + w] = mask[:, j:j + 1]
    return out


def _draws(lay: _Layout, params, noise, temperature: float):
    """(the drawn blocks, per maskable column) from the generator's raw outputs."""
    from keras import ops

    out, o, g = [], 0, 0
    for _, w, family in lay.blocks:
        if family == NUMERIC:
            mean = params[:, o]
            scale = ops.exp(ops.maximum(params[:, o + 1], LOG_SCALE_MIN))
            out.append((mean + scale * noise[:, g])[:, None])
            o, g = o + 2, g + 1
            continue
        soft = ops.softmax((params[:, o:o + w] + noise[:, g:g + w]) / temperature, axis=-1)
        hard = ops.one_hot(ops.argmax(soft, axis=-1), w, dtype=soft.dtype)
        out.append(soft + ops.stop_gradient(hard - soft))
        o, g = o + w, g + w
    return out


def _nll(lay: _Layout, params, truth):
    """Per row and maskable column, the negative log-likelihood of the true block ``truth``
    (rows, cells) under the generator's distribution: (rows, k)."""
    from keras import ops

    out, o, c = [], 0, 0
    for _, w, family in lay.blocks:
        if family == NUMERIC:
            mean, log_scale = params[:, o], ops.maximum(params[:, o + 1], LOG_SCALE_MIN)
            z = (truth[:, c] - mean) / ops.exp(log_scale)
            out.append(0.5 * ops.square(z) + log_scale + 0.9189385)
            o, c = o + 2, c + 1
            continue
        out.append(-ops.sum(truth[:, c:c + w] * ops.log_softmax(params[:, o:o + w], axis=-1),
                            axis=-1))
        o, c = o + w, c + w
    return ops.stack(out, axis=-1)


def build_networks(config: ImputerConfig, seed: int) -> dict:
    """``{"generator": [row | mask | z] -> distribution parameters, "discriminator":
    [completed row | hint] -> kept logits}``, seeded initialisers, each compiled with
    Adam(``learning_rate``, beta_1 0.5). Shapes: the generator's input (batch, width + k +
    latent), its output (batch, params); the discriminator's input (batch, width + k), its
    output (batch, k)."""
    import keras
    from keras import layers

    cfg, lay = config, layout(config)
    counter = iter(range(10_000))

    def dense(units: int, activation=None, name: str | None = None):
        return layers.Dense(units, activation=activation, name=name,
                            kernel_initializer=keras.initializers.GlorotUniform(
                                seed=seed + next(counter)))

    g_in = keras.Input(shape=(lay.width + lay.k + cfg.latent,), name="row_mask_and_z")
    h = g_in
    for i, units in enumerate(cfg.hidden):
        h = dense(units, "relu", name=f"generator_{i}")(h)
    generator = keras.Model(g_in, dense(lay.params, name="distribution")(h), name="imputer")
    d_in = keras.Input(shape=(lay.width + lay.k,), name="row_and_hint")
    d = d_in
    for i, units in enumerate(cfg.discriminator_hidden):
        d = layers.LeakyReLU(LEAK, name=f"discriminator_act_{i}")(
            dense(units, name=f"discriminator_{i}")(d))
    discriminator = keras.Model(d_in, dense(lay.k, name="kept_logits")(d),
                                name="discriminator")
    nets = {"generator": generator, "discriminator": discriminator}
    for net in nets.values():
        net.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate, beta_1=0.5))
    return nets


def training_columns(config: ImputerConfig, rng: np.random.Generator, rows: int) -> np.ndarray:
    """What a training row carries beside itself, float32 (rows, 2k + latent + noise): its
    training mask (each maskable cell masked at ``mask_rate``), the hint's reveal draws (1:
    the hint shows the mask), z and the draws' noise."""
    lay = layout(config)
    mask = (rng.random((rows, lay.k)) >= config.mask_rate).astype(np.float32)
    reveal = (rng.random((rows, lay.k)) < config.hint_rate).astype(np.float32)
    return np.concatenate([mask, reveal, draw_noise(config, rng, rows)], axis=1)


def draw_noise(config: ImputerConfig, rng: np.random.Generator, rows: int) -> np.ndarray:
    """z ~ N(0, I) and the draws' noise (one N(0, 1) per numeric column, Gumbel per level),
    float32 (rows, latent + noise)."""
    z = rng.standard_normal((rows, config.latent), dtype=np.float32)
    return np.concatenate([z, block_noise([(f, w) for _, w, f in layout(config).blocks], rng,
                                          rows)], axis=1)


def _complete(config: ImputerConfig, view, x):
    """(completed rows, generator parameters, mask, hint) of a training batch ``x`` = [row |
    mask | reveal | z | noise]."""
    from keras import ops

    lay = layout(config)
    w, k, z = lay.width, lay.k, config.latent
    row, mask, reveal = x[:, :w], x[:, w:w + k], x[:, w + k:w + 2 * k]
    latent, noise = x[:, w + 2 * k:w + 2 * k + z], x[:, w + 2 * k + z:]
    spread = _spread(lay, mask)
    observed = row * spread
    params = view("generator", ops.concatenate([observed, mask, latent], axis=1))
    draws = _draws(lay, params, noise, config.temperature)
    parts, o = [], 0
    cells = np.asarray(lay.cells)
    for j, (_, width, _) in enumerate(lay.blocks):
        kept = mask[:, j:j + 1]
        parts.append(kept * ops.take(row, cells[o:o + width], axis=1) + (1 - kept) * draws[j])
        o += width
    completed = _scatter(lay, observed, ops.concatenate(parts, axis=1))
    hint = reveal * mask + 0.5 * (1 - reveal)
    return completed, params, mask, hint


def _spread(lay: _Layout, mask):
    """The per-column mask (batch, k) as a per-cell one (batch, width): the maskable blocks
    by their column's mask, every other column 1."""
    from keras import ops

    parts, prev = [], 0
    ones = ops.ones_like(mask[:, :1])
    for j, (a, w, _) in enumerate(lay.blocks):
        if a > prev:
            parts.append(ops.repeat(ones, a - prev, axis=1))
        parts.append(ops.repeat(mask[:, j:j + 1], w, axis=1))
        prev = a + w
    if lay.width > prev:
        parts.append(ops.repeat(ones, lay.width - prev, axis=1))
    return ops.concatenate(parts, axis=1)


def _scatter(lay: _Layout, row, blocks):
    """``row`` with its maskable blocks' columns replaced by ``blocks`` (batch, cells)."""
    from keras import ops

    parts, prev, o = [], 0, 0
    for a, w, _ in lay.blocks:
        if a > prev:
            parts.append(row[:, prev:a])
        parts.append(blocks[:, o:o + w])
        prev, o = a + w, o + w
    if lay.width > prev:
        parts.append(row[:, prev:])
    return ops.concatenate(parts, axis=1)


def phases(config: ImputerConfig) -> list:
    """The discriminator's phase (the mask's cross-entropy on completed rows) and the
    generator's (adversarial loss on generated cells plus the likelihood of the true values
    of the cells masked for training). Both joint terms: plain only."""
    from keras import ops

    from cloakflow.models.training.phases import JointTerm, Phase

    lay = layout(config)
    cells = np.asarray(lay.cells)
    weight = float(config.likelihood)

    def masked_mean(v, rows):
        return ops.sum(v * rows[:, None]) / ops.maximum(ops.sum(rows) * v.shape[1], 1.0)

    def discriminator_loss(view, x, rows):
        completed, _, mask, hint = _complete(config, view, x)
        logits = view("discriminator", ops.concatenate([ops.stop_gradient(completed), hint],
                                                       axis=1))
        ce = ops.softplus(logits) - mask * logits  # BCE with logits, target: kept
        return masked_mean(ce, rows)

    def generator_loss(view, x, rows):
        completed, params, mask, hint = _complete(config, view, x)
        logits = view("discriminator", ops.concatenate([completed, hint], axis=1))
        fooled = (1 - mask) * ops.softplus(-logits)  # generated cells judged kept
        nll = (1 - mask) * _nll(lay, params, ops.take(x[:, :lay.width], cells, axis=1))
        generated = ops.maximum(ops.sum((1 - mask) * rows[:, None]), 1.0)
        return (ops.sum(fooled * rows[:, None]) + weight * ops.sum(nll * rows[:, None])) / \
            generated

    return [Phase("discriminator", ("discriminator",), joint=JointTerm(discriminator_loss)),
            Phase("generator", ("generator",), joint=JointTerm(generator_loss))]


class Imputer:
    """A trained imputer: ``impute(x, mask, rng)`` regenerates masked cells."""

    def __init__(self, config: ImputerConfig, networks: dict):
        self.config = config
        self.generator = networks["generator"]

    def impute(self, x: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Rows ``x`` (rows, width; the preprocessor's space) with the cells of ``mask``
        (rows, k; 0: regenerate) drawn from the model given the row's kept cells (the masked
        cells' true values are never read); numerics as CDF values, categories one-hot."""
        from keras import ops
        from scipy.special import ndtr

        cfg, lay = self.config, layout(self.config)
        mask = np.asarray(mask, dtype=np.float32)
        xm = to_model_space(x, cfg.output_heads) * cell_mask(cfg, mask)
        noise = draw_noise(cfg, rng, len(x))
        out = np.array(x, dtype=np.float32, copy=True)
        for i in range(0, len(x), 8192):
            sl = slice(i, i + 8192)
            params = self.generator(np.concatenate([xm[sl], mask[sl], noise[sl, :cfg.latent]],
                                                   axis=1), training=False)
            draws = _draws(lay, params, ops.convert_to_tensor(noise[sl, cfg.latent:]),
                           cfg.temperature)
            for j, (a, w, family) in enumerate(lay.blocks):
                d = np.asarray(draws[j])
                if family == NUMERIC:
                    d = np.clip(ndtr(d), 0.0, 1.0)
                keep = mask[sl, j:j + 1]
                out[sl, a:a + w] = keep * x[sl, a:a + w] + (1 - keep) * d
        return out


@dataclass
class ImputerResult:
    imputer: Imputer
    log: object


@dataclass
class ImputerWeights:
    """A trained imputer as plain data (crosses task boundaries); ``result()`` rebuilds it."""

    config: ImputerConfig
    weights: dict
    log: object = None

    def result(self) -> ImputerResult:
        nets = build_networks(self.config, 0)
        for n, m in nets.items():
            m.set_weights(self.weights[n])
        return ImputerResult(Imputer(self.config, nets), self.log)


def train_imputer(x: np.ndarray, config: ImputerConfig, seed: int = 0, *,
                  on_epoch=None) -> ImputerWeights:
    """Train the imputer on the preprocessed rows ``x`` (rows, width), plainly: training
    masks, hints and noise redrawn every ``refresh_every`` epochs (seeded by ``seed``).

    Args:
        on_epoch: ``on_epoch(epoch, metrics)``, metrics ``"discriminator"`` (its
            cross-entropy per cell, nats) and ``"generator"`` (its loss per generated cell).

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
    rng = np.random.default_rng([seed, 9])
    nets = build_networks(cfg, seed)
    history: dict[str, list[float]] = {"discriminator": [], "generator": []}
    start, epoch = time.perf_counter(), 0
    while epoch < cfg.epochs:
        epochs = min(cfg.refresh_every, cfg.epochs - epoch)
        xa = np.concatenate([xm, training_columns(cfg, rng, len(xm))], axis=1)

        def epoch_done(e: int, metrics: dict, offset=epoch) -> None:
            m = {"discriminator": metrics["discriminator.private"],
                 "generator": metrics["generator.private"]}
            if not all(np.isfinite(v) for v in m.values()):
                raise ValueError(f"imputer training diverged at epoch {offset + e}: {m}")
            for k_, v in m.items():
                history[k_].append(v)
            if on_epoch is not None:
                on_epoch(offset + e, m)

        train_phases(nets, phases(cfg), xa, cfg.training(epochs),
                     seed=int(rng.integers(2**31)), on_epoch=epoch_done)
        epoch += epochs
    log = TrainLog(None, float("inf"))
    log.epochs_run, log.seconds = epoch, time.perf_counter() - start
    log.history = history
    return ImputerWeights(cfg, {n: m.get_weights() for n, m in nets.items()}, log)


class ImputerFamily(ModelFamily):
    """The GAN imputer as a registered model (``models.registry``): networks ``generator``
    and ``discriminator``, two joint phases (plain only). Feeds masked releases."""

    name = "imputer"
    description = ("a GAN imputer (GAIN's hint mechanism, a likelihood term): masked cells "
                   "drawn from their conditional distribution given the rest of the row")
    release = "masked"
    command = "cloakflow mask"
    federates = False

    def spec(self, pre, loop, columns=()):
        names = [s.name for s in pre.specs]
        return ImputerConfig(heads=pre.heads(), maskable=tuple(names.index(c) for c in columns),
                             epochs=loop.epochs, batch_size=loop.batch_size,
                             learning_rate=loop.learning_rate, column_names=tuple(names))

    def member_names(self, profile) -> list[str]:
        return ["generator", "discriminator"]

    def networks(self, spec: ImputerConfig, seed: int) -> dict:
        return build_networks(spec, seed)

    def phases(self, spec: ImputerConfig, networks: dict) -> list:
        return phases(spec)

    def inputs(self, spec: ImputerConfig, x: np.ndarray) -> np.ndarray:
        return np.concatenate([to_model_space(x, spec.output_heads),
                               training_columns(spec, np.random.default_rng(0), len(x))], axis=1)

    def loop(self, spec: ImputerConfig):
        return spec.training(spec.epochs)


IMPUTER = ImputerFamily()

"""A small VAE-shaped, non-chain model and a one-row-at-a-time gradient reference, shared by
the per-example tests and their jax subprocess (not a test module)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

CATEGORIES, NUMERIC, LATENT = 3, 2, 2


class Sampling(keras.layers.Layer):
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, 1) from the layer's seed generator."""

    def __init__(self, seed: int = 0, **kw):
        super().__init__(**kw)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mu, logvar = inputs
        eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        return mu + ops.exp(0.5 * logvar) * eps


def vae_like(layer_norm: bool = False, seed: int = 0):
    """input -> Dense [-> LayerNormalization] -> Dense(mu), Dense(logvar) -> Sampling -> Dense
    -> softmax head (categorical block) and linear head (numeric block)."""
    init = keras.initializers.GlorotUniform
    inputs = keras.Input((CATEGORIES + NUMERIC,))
    h = keras.layers.Dense(6, activation="tanh", kernel_initializer=init(seed))(inputs)
    if layer_norm:
        h = keras.layers.LayerNormalization(name="norm")(h)
    mu = keras.layers.Dense(LATENT, kernel_initializer=init(seed + 1), name="mu")(h)
    logvar = keras.layers.Dense(LATENT, kernel_initializer=init(seed + 2), name="logvar")(h)
    z = Sampling(seed + 3, name="sampling")([mu, logvar])
    d = keras.layers.Dense(5, activation="relu", kernel_initializer=init(seed + 4))(z)
    cat = keras.layers.Dense(CATEGORIES, activation="softmax", kernel_initializer=init(seed + 5),
                             name="categorical")(d)
    num = keras.layers.Dense(NUMERIC, kernel_initializer=init(seed + 6), name="numeric")(d)
    return keras.Model(inputs, [cat, num], name="vae_like")


def heads_loss(y, outputs):
    """Per-row loss summed over heads: cross-entropy of the categorical block plus the MSE of
    the numeric block, shape (batch,)."""
    cat, num = outputs
    ce = -ops.sum(y[:, :CATEGORIES] * ops.log(cat + 1e-7), axis=1)
    return ce + ops.mean(ops.square(num - y[:, CATEGORIES:]), axis=1)


def data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    onehot = np.eye(CATEGORIES, dtype=np.float32)[rng.integers(0, CATEGORIES, n)]
    return np.concatenate([onehot, rng.random((n, NUMERIC), dtype=np.float32)], axis=1)


def batch_noise(model, rows: int) -> np.ndarray:
    """The eps a forward pass over ``rows`` rows draws from the sampling layer's current seed
    state (the state itself is left as it is)."""
    layer = model.get_layer("sampling")
    state = np.asarray(layer.seed_generator.state.value)
    fresh = keras.random.SeedGenerator(0)
    fresh.state.assign(state)
    return np.asarray(keras.random.normal((rows, LATENT), seed=fresh))


def _manual_loss(model, values: list, row, eps_row):
    """The model's loss on one row, written out layer by layer with explicit values."""
    w = {v.path: value for v, value in zip(model.trainable_variables, values, strict=True)}

    def dense(name, a, activation=None):
        layer = model.get_layer(name)
        z = ops.matmul(a, w[layer.kernel.path]) + w[layer.bias.path]
        return activation(z) if activation else z

    names = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    h = dense(names[0], row, ops.tanh)
    if any(layer.name == "norm" for layer in model.layers):
        norm = model.get_layer("norm")
        mean = ops.mean(h, axis=-1, keepdims=True)
        var = ops.mean(ops.square(h - mean), axis=-1, keepdims=True)
        h = (h - mean) / ops.sqrt(var + norm.epsilon) * w[norm.gamma.path] + w[norm.beta.path]
    mu, logvar = dense("mu", h), dense("logvar", h)
    z = mu + ops.exp(0.5 * logvar) * eps_row
    d = dense(names[3], z, keras.activations.relu)
    outputs = [dense("categorical", d, keras.activations.softmax), dense("numeric", d)]
    return ops.sum(heads_loss(row, outputs))


def one_row_norms(model, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Each row's gradient norm, one row at a time, with row i's noise ``eps[i]``."""
    backend = keras.backend.backend()
    values = [v.value for v in model.trainable_variables]
    norms = []
    for i in range(len(x)):
        row, e = ops.convert_to_tensor(x[i:i + 1]), ops.convert_to_tensor(eps[i:i + 1])
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                tape.watch(values)
                loss = _manual_loss(model, values, row, e)
            grads = tape.gradient(loss, values)
        else:
            import jax

            grads = jax.grad(lambda v, r=row, e=e: _manual_loss(model, v, r, e))(values)
        norms.append(np.sqrt(sum(float(np.sum(np.square(np.asarray(g)))) for g in grads)))
    return np.array(norms)

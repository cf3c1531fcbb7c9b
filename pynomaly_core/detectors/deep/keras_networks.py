"""Keras (TensorFlow backend) networks and their losses/scores, imported only when a Keras detector runs.

Models are plain functional ``keras.Model`` objects built from built-in layers, so
they save to the ``.keras`` format and load with ``safe_mode=True`` and no custom
objects. Losses and scores are functions of ``(models, x)`` used inside
``tf.function``-compiled training epochs and scoring.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import tensorflow as tf

if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the Keras detectors need the TensorFlow backend, but Keras was loaded with "
        f"{keras.backend.backend()!r} (KERAS_BACKEND); set KERAS_BACKEND=tensorflow."
    )


class Seeds:
    """Successive integer seeds from ``random_state`` (``None`` stays unseeded)."""

    def __init__(self, random_state: int | None) -> None:
        self._next = random_state

    def __call__(self) -> int | None:
        if self._next is None:
            return None
        seed, self._next = self._next, self._next + 1
        return seed


def _dense(units: int, seeds: Seeds, dtype: str, *, use_bias: bool = True) -> keras.layers.Dense:
    return keras.layers.Dense(
        units,
        use_bias=use_bias,
        dtype=dtype,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds()),
    )


def _stack(
    x: Any,
    widths: Sequence[int],
    seeds: Seeds,
    dtype: str,
    *,
    batch_norm: bool,
    dropout_rate: float,
    use_bias: bool = True,
) -> Any:
    """Dense -> [BatchNormalization] -> ReLU -> [Dropout] for every width."""
    for units in widths:
        x = _dense(units, seeds, dtype, use_bias=use_bias)(x)
        if batch_norm:
            # momentum 0.9 = torch's 0.1: Keras' 0.99 leaves the moving statistics near
            # their initial values after the few hundred steps of a small training set.
            x = keras.layers.BatchNormalization(momentum=0.9, dtype=dtype)(x)
        x = keras.layers.ReLU(dtype=dtype)(x)
        if dropout_rate > 0:
            x = keras.layers.Dropout(dropout_rate, seed=seeds(), dtype=dtype)(x)
    return x


def build_autoencoder(
    n_features: int,
    hidden_neurons: Sequence[int],
    batch_norm: bool,
    dropout_rate: float,
    seeds: Seeds,
    dtype: str,
) -> dict[str, keras.Model]:
    """Symmetric MLP autoencoder; the output layer computes in float32."""
    hidden = list(hidden_neurons)
    inputs = keras.Input((n_features,))
    h = _stack(
        inputs,
        [*hidden, *hidden[-2::-1]],
        seeds,
        dtype,
        batch_norm=batch_norm,
        dropout_rate=dropout_rate,
    )
    outputs = _dense(n_features, seeds, "float32")(h)
    return {"model": keras.Model(inputs, outputs, name="autoencoder")}


def build_vae(
    n_features: int,
    hidden_neurons: Sequence[int],
    latent_dim: int,
    batch_norm: bool,
    dropout_rate: float,
    seeds: Seeds,
    dtype: str,
) -> dict[str, keras.Model]:
    """Gaussian VAE as two models: encoder -> (mean, log_var) and decoder."""
    hidden = list(hidden_neurons)
    inputs = keras.Input((n_features,))
    h = _stack(inputs, hidden, seeds, dtype, batch_norm=batch_norm, dropout_rate=dropout_rate)
    mean = _dense(latent_dim, seeds, "float32")(h)
    log_var = _dense(latent_dim, seeds, "float32")(h)
    encoder = keras.Model(inputs, [mean, log_var], name="encoder")
    code = keras.Input((latent_dim,))
    h = _stack(code, hidden[::-1], seeds, dtype, batch_norm=batch_norm, dropout_rate=dropout_rate)
    decoder = keras.Model(code, _dense(n_features, seeds, "float32")(h), name="decoder")
    return {"encoder": encoder, "decoder": decoder}


def build_deep_svdd(
    n_features: int, hidden_neurons: Sequence[int], dropout_rate: float, seeds: Seeds, dtype: str
) -> dict[str, keras.Model]:
    """Bias-free MLP embedding for Deep SVDD (no biases, no batch-norm: avoids collapse)."""
    hidden = list(hidden_neurons)
    inputs = keras.Input((n_features,))
    h = _stack(
        inputs,
        hidden[:-1],
        seeds,
        dtype,
        batch_norm=False,
        dropout_rate=dropout_rate,
        use_bias=False,
    )
    outputs = _dense(hidden[-1], seeds, "float32", use_bias=False)(h)
    return {"model": keras.Model(inputs, outputs, name="deep_svdd")}


def _distance(x: tf.Tensor, x_hat: tf.Tensor) -> tf.Tensor:
    return tf.norm(tf.cast(x_hat, tf.float32) - x, axis=1)


def autoencoder_loss(
    models: dict[str, keras.Model], x: tf.Tensor, training: bool, state: dict[str, Any]
) -> tf.Tensor:
    return tf.reduce_mean(tf.square(models["model"](x, training=training) - x))


def autoencoder_score(
    models: dict[str, keras.Model], x: tf.Tensor, state: dict[str, Any]
) -> tf.Tensor:
    return _distance(x, models["model"](x, training=False))


def vae_loss(
    models: dict[str, keras.Model], x: tf.Tensor, training: bool, state: dict[str, Any]
) -> tf.Tensor:
    mean, log_var = models["encoder"](x, training=training)
    log_var = tf.clip_by_value(log_var, -10.0, 10.0)
    z = mean
    if training:
        z = mean + keras.random.normal(tf.shape(mean), seed=state["sampler"]) * tf.exp(
            0.5 * log_var
        )
    x_hat = models["decoder"](z, training=training)
    reconstruction = 0.5 * tf.reduce_sum(tf.square(x_hat - x), axis=1)
    kl = -0.5 * tf.reduce_sum(1.0 + log_var - tf.square(mean) - tf.exp(log_var), axis=1)
    return tf.reduce_mean(reconstruction + state["beta"] * kl)


def vae_score(models: dict[str, keras.Model], x: tf.Tensor, state: dict[str, Any]) -> tf.Tensor:
    mean, _ = models["encoder"](x, training=False)
    return _distance(x, models["decoder"](mean, training=False))


def deep_svdd_loss(
    models: dict[str, keras.Model], x: tf.Tensor, training: bool, state: dict[str, Any]
) -> tf.Tensor:
    embedding = models["model"](x, training=training)
    return tf.reduce_mean(tf.reduce_sum(tf.square(embedding - state["center"]), axis=1))


def deep_svdd_score(
    models: dict[str, keras.Model], x: tf.Tensor, state: dict[str, Any]
) -> tf.Tensor:
    return tf.reduce_sum(tf.square(models["model"](x, training=False) - state["center"]), axis=1)

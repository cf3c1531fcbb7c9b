"""Registry entries of our own torch and Keras detectors (deep, window, torch k-NN and LOF).

Imported at the end of :mod:`pynomaly_core.detectors.catalog`; the targets are
resolved only when a detector is created, so neither torch nor TensorFlow is
imported here.
"""

from __future__ import annotations

from pynomaly_core.detectors.registry import DetectorSpec, register

_TORCH = "pynomaly_core.detectors.deep.torch_models"
_KERAS = "pynomaly_core.detectors.deep.keras_models"
_WINDOW = "pynomaly_core.detectors.deep.window_models"
_WINDOW_COST = "fit O(e·n·w·d·h), score O(m·w·d·h) (w = window_size)"
_PROXIMITY = "pynomaly_core.detectors.proximity"
_DEEP_COST = "fit O(e·n·d·h), score O(m·d·h)"
_NEIGHBOUR_COST = (
    "fit O(n²·d) brute / O(n log n·d) tree, score O(m·n·d) brute / O(m·k log n·d) tree"
)


def _torch(name: str, target: str, family: str, cost: str, description: str) -> None:
    register(
        DetectorSpec(
            name=name,
            family=family,
            framework="torch",
            target=target,
            gpu=True,
            cost_class=cost,
            extra="torch",
            requires_module="torch",
            description=description,
        )
    )


def _keras(name: str, cls: str, description: str) -> None:
    register(
        DetectorSpec(
            name=name,
            family="neural",
            framework="tensorflow",
            target=f"{_KERAS}:{cls}",
            gpu=True,
            cost_class=_DEEP_COST,
            extra="tensorflow",
            requires_module="tensorflow",
            description=description,
        )
    )


_torch(
    "AutoEncoder",
    f"{_TORCH}:AutoEncoder",
    "neural",
    _DEEP_COST,
    "MLP autoencoder, reconstruction error; GPU-aware, early stopping, fast batched scoring.",
)
_torch(
    "VAE",
    f"{_TORCH}:VAE",
    "neural",
    _DEEP_COST,
    "Variational autoencoder; reconstruction error of the latent mean.",
)
_torch(
    "DeepSVDD",
    f"{_TORCH}:DeepSVDD",
    "neural",
    _DEEP_COST,
    "Deep SVDD: distance to a hypersphere centre in a learned embedding.",
)
_torch(
    "DAGMM",
    f"{_TORCH}:DAGMM",
    "neural",
    _DEEP_COST,
    "Deep autoencoding Gaussian mixture: energy of code + reconstruction features.",
)
_torch(
    "ConvAE",
    f"{_WINDOW}:ConvAE",
    "sequence",
    _WINDOW_COST,
    "Sequence-aware: 1-D convolutional autoencoder over the window of window_size rows "
    "ending at each row (rows are time steps of one series, in order); score = the window's "
    "reconstruction error. For sensors whose anomalies are in the shape of the sequence.",
)
_torch(
    "LSTMAE",
    f"{_WINDOW}:LSTMAE",
    "sequence",
    _WINDOW_COST,
    "Sequence-aware: LSTM sequence-to-sequence autoencoder over the window of window_size "
    "rows ending at each row; score = the window's reconstruction error. Slower than ConvAE.",
)
_torch(
    "TorchKNN",
    f"{_PROXIMITY}:TorchKNN",
    "proximity",
    _NEIGHBOUR_COST,
    "Exact k-NN distance (PyOD KNN scores) by tiled GPU/CPU matrix products or a KD-tree.",
)
_torch(
    "TorchLOF",
    f"{_PROXIMITY}:TorchLOF",
    "proximity",
    _NEIGHBOUR_COST,
    "Local outlier factor (PyOD/scikit-learn LOF scores) on the torch k-NN search.",
)

_keras(
    "KerasAutoEncoder",
    "KerasAutoEncoder",
    "MLP autoencoder in Keras (TensorFlow), reconstruction error.",
)
_keras("KerasVAE", "KerasVAE", "Variational autoencoder in Keras (TensorFlow).")
_keras("KerasDeepSVDD", "KerasDeepSVDD", "Deep SVDD in Keras (TensorFlow).")

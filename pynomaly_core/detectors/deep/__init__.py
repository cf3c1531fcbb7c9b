"""Deep-learning detectors: our own GPU-aware torch models and Keras (TensorFlow) models.

Importing this package does not import torch or TensorFlow; each detector imports its
framework when it is fitted, scored or loaded, and raises
:class:`~pynomaly_core.detectors.registry.MissingExtraError` naming the extra to
install when the framework is missing.
"""

from pynomaly_core.detectors.deep.keras_models import KerasAutoEncoder, KerasDeepSVDD, KerasVAE
from pynomaly_core.detectors.deep.torch_models import DAGMM, VAE, AutoEncoder, DeepSVDD
from pynomaly_core.detectors.deep.window_models import LSTMAE, ConvAE

__all__ = [
    "DAGMM",
    "LSTMAE",
    "VAE",
    "AutoEncoder",
    "ConvAE",
    "DeepSVDD",
    "KerasAutoEncoder",
    "KerasDeepSVDD",
    "KerasVAE",
]

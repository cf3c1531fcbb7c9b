"""Every anomaly detector behind one contract, and the registry that names them.

>>> from pynomaly_core.detectors import available, create
>>> "IForest" in {spec.name for spec in available()}
True
"""

from pynomaly_core.detectors.base import BaseDetector, DetectorError, NotFittedError
from pynomaly_core.detectors.persistence import ModelIntegrityError, load_object, save_object
from pynomaly_core.detectors.registry import (
    DetectorSpec,
    MissingExtraError,
    available,
    create,
    get_spec,
)

__all__ = [
    "BaseDetector",
    "DetectorError",
    "DetectorSpec",
    "MissingExtraError",
    "ModelIntegrityError",
    "NotFittedError",
    "available",
    "create",
    "get_spec",
    "load_object",
    "save_object",
]

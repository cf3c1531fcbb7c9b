"""Framework-independent parts of deep-detector training.

Parameter checks (errors name the parameter and the allowed values), input
standardization, the validation split size, early stopping, the ``config.json`` beside
the framework's weight files and the shared parameter documentation, shared by the torch
and Keras detectors.
"""

from __future__ import annotations

import inspect
import json
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from pynomaly_core.detectors.base import DetectorError


def check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    """``value`` must be an int (not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DetectorError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}.")


def check_real(
    owner: str,
    name: str,
    value: Any,
    low: float,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = False,
) -> None:
    """``value`` must be a real number in the interval given by ``low`` / ``high``."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and bool(np.isfinite(cast(float, value)))
    )
    if ok:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        interval = (
            ("[" if low_inclusive else "(")
            + f"{low}, "
            + ("inf)" if high is None else f"{high}" + ("]" if high_inclusive else ")"))
        )
        raise DetectorError(f"{owner}: {name} must be a float in {interval}, got {value!r}.")


def check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise DetectorError(f"{owner}: {name} must be True or False, got {value!r}.")


def check_layers(owner: str, name: str, value: Any) -> None:
    """``value`` must be a non-empty sequence of positive ints (layer widths)."""
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) == 0
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in value)
    ):
        raise DetectorError(
            f"{owner}: {name} must be a non-empty tuple of positive ints such as (64, 32), "
            f"got {value!r}."
        )


def check_random_state(owner: str, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0
    ):
        raise DetectorError(
            f"{owner}: random_state must be None or a non-negative int seed, got {value!r}."
        )


def check_training_params(detector: Any) -> None:
    """Checks of the parameters every deep detector shares."""
    owner = type(detector).__name__
    check_int(owner, "epochs", detector.epochs, 1)
    check_int(owner, "batch_size", detector.batch_size, 1)
    check_real(owner, "learning_rate", detector.learning_rate, 0.0, low_inclusive=False)
    check_real(owner, "weight_decay", detector.weight_decay, 0.0)
    check_real(owner, "validation_fraction", detector.validation_fraction, 0.0, 1.0)
    check_int(owner, "patience", detector.patience, 1)
    check_real(owner, "tol", detector.tol, 0.0)
    check_bool(owner, "standardize", detector.standardize)
    check_bool(owner, "mixed_precision", detector.mixed_precision)
    check_random_state(owner, detector.random_state)
    if detector.score_batch_size is not None:
        check_int(owner, "score_batch_size", detector.score_batch_size, 1)


def standardizer(X: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and scale of ``X`` (shape ``(n_features,)`` each).

    Constant features get scale 1; ``standardize=False`` gives the identity (0, 1).
    """
    if not standardize:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    return mean, scale


def validation_size(n_samples: int, fraction: float) -> int:
    """Rows held out for early stopping: ``floor(n * fraction)``, or 0 if that leaves < 2 to train on."""
    n_validation = int(n_samples * fraction)
    return n_validation if n_samples - n_validation >= 2 else 0


class EarlyStopping:
    """Tracks the validation loss; stops after ``patience`` epochs without improvement.

    An epoch improves when its loss is below ``best - tol * |best|``.
    """

    def __init__(self, patience: int, tol: float) -> None:
        self.patience = patience
        self.tol = tol
        self.best = np.inf
        self.best_epoch = -1
        self._epochs_without_improvement = 0

    def update(self, epoch: int, loss: float) -> bool:
        """Record ``loss`` of ``epoch``; returns whether it is the new best."""
        if loss < self.best - self.tol * abs(self.best) or self.best_epoch < 0:
            self.best, self.best_epoch = loss, epoch
            self._epochs_without_improvement = 0
            return True
        self._epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self._epochs_without_improvement >= self.patience


#: documentation shared by the torch and Keras detectors, spliced into each family's template
#: (``{name}`` fields are the class's defaults, see :func:`document_params`)
EPOCHS_PARAMS_DOC = """    epochs : int, default={epochs}
        Maximum number of passes over the training rows (early stopping may end sooner).
    batch_size : int, default={batch_size}
        Rows per gradient step.
    learning_rate : float, default={learning_rate}
        Adam learning rate.
"""
STOPPING_PARAMS_DOC = """    patience : int, default={patience}
        Epochs without a relative improvement of ``tol`` in validation loss before
        training stops; the best epoch's weights are kept.
    tol : float, default={tol}
        Minimum relative decrease of the validation loss that counts as improvement.
    standardize : bool, default={standardize}
        Standardize features with the training mean and standard deviation.
"""
TRAINED_ATTRIBUTES_DOC = """    scaler_mean_, scaler_scale_ : ndarray of shape (n_features,)
        Standardization statistics of the training data.
    n_epochs_ : int
        Epochs actually run.
    best_epoch_ : int
        Epoch (0-based) whose weights were kept.
    loss_curve_ : list of float
        Mean training loss per epoch.
    validation_loss_curve_ : list of float
        Validation loss per epoch (empty without a validation split).
    decision_scores_, threshold_, labels_
        See :class:`~pynomaly_core.detectors.base.BaseDetector`.
"""


def document_params(template: str) -> Callable[[type], type]:
    """A class decorator appending ``template`` (parameter/attribute docs) to the docstring.

    ``template``'s ``{name}`` fields are filled with the decorated class's ``__init__``
    defaults, so every detector documents the training parameters it shares with its
    family, with its own defaults, without repeating them.
    """

    def decorate(cls: type) -> type:
        defaults = {
            name: p.default
            for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
        cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + template.format(**defaults)
        return cls

    return decorate


CONFIG_FILE = "config.json"
#: fitted state kept in ``config.json``; weights and arrays go to the framework's own files
TRAINED_STATE = ("device_", "n_epochs_", "best_epoch_", "loss_curve_", "validation_loss_curve_")


def write_config(detector: Any, dirpath: Path, **extra: Any) -> None:
    """Write ``config.json``: the class, its parameters, ``extra`` entries and the fitted state."""
    config = {
        "class": type(detector).__name__,
        "params": detector.get_params(),
        **extra,
        "n_features_in_": int(detector.n_features_in_),
        "threshold_": float(detector.threshold_),
        **{name: getattr(detector, name) for name in TRAINED_STATE},
    }
    (Path(dirpath) / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def read_config(cls: type, dirpath: Path) -> tuple[Any, dict[str, Any]]:
    """An unfitted ``cls`` with the saved parameters, and the saved config.

    Files written for another class are refused; JSON lists (layer widths) become tuples again.
    """
    config = json.loads((Path(dirpath) / CONFIG_FILE).read_text())
    if config["class"] != cls.__name__:
        raise DetectorError(f"{dirpath} holds a {config['class']}, not a {cls.__name__}.")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()}
    return cls(**params), config


def restore_trained_state(detector: Any, config: dict[str, Any], decision_scores: Any) -> None:
    """Set the fitted state :func:`write_config` saved, the training scores and their labels."""
    detector.n_features_in_ = config["n_features_in_"]
    for name in TRAINED_STATE:
        setattr(detector, name, config[name])
    detector.decision_scores_ = decision_scores
    detector.threshold_ = config["threshold_"]
    detector.labels_ = (detector.decision_scores_ > detector.threshold_).astype(int)

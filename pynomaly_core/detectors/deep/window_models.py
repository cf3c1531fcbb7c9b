"""Sequence-aware torch detectors over sliding windows: ConvAE and LSTMAE.

A window detector reads the rows of ``X`` as consecutive time steps of one series (see
:mod:`pynomaly_core.detectors.sequence` for what that asks of the caller). It learns to
reconstruct windows of ``window_size`` consecutive rows of normal operation; a row's score
is the root mean squared reconstruction error of the window ENDING at that row, so:

* scores are past-only: changing a later row never changes an earlier row's score;
* a row is anomalous in context: a value that is normal on its own but arrives in the
  wrong order (a stuck sensor, a broken rhythm, a slow drift of one sensor against the others)
  reconstructs badly, which a row-wise detector, seeing one row at a time, may miss;
* the first ``window_size - 1`` rows of a call are scored on a window left-padded by repeating
  the call's first row (edge padding). Training pads its first rows the same way, so the
  network has learnt such windows too; a caller scoring a partition of a longer series
  prepends the ``window_size - 1`` previous rows instead
  (:func:`~pynomaly_core.detectors.sequence.warmup_rows`) and drops their scores.

Everything else is :class:`~pynomaly_core.detectors.deep.torch_base.TorchDetector`'s: inputs
standardized with the training statistics, device choice (``"auto"``: CUDA, then MPS, then CPU),
seeding, flat-buffer Adam, mixed precision on GPUs, early stopping and signed save/load
(weights with ``torch.save`` of tensors only, parameters in JSON). Two differences, both
because windows overlap: the validation split for early stopping is the LAST
``validation_fraction`` of the training windows (a random split would validate on windows that
share all but one row with training windows), and scoring chunks count windows, sized so a
chunk's widest activation stays within the CPU cache.

torch is imported inside the methods, never at module import.

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors.deep.window_models import ConvAE
>>> t = np.arange(600)
>>> X = np.c_[np.sin(t / 5.0), np.cos(t / 5.0)]   # two sensors in quadrature
>>> X_new = X[:200].copy()
>>> X_new[150:170, 1] = X_new[150, 1]              # one sensor sticks for 20 rows
>>> det = ConvAE(window_size=16, epochs=20, random_state=0, device="cpu").fit(X)
>>> scores = det.decision_function(X_new)
>>> bool(scores[165] > det.threshold_), bool(scores[120] > det.threshold_)
(True, False)
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar, cast

import numpy as np

from pynomaly_core.detectors.base import DetectorError
from pynomaly_core.detectors.deep.device import (
    autocast_dtype,
    check_device,
    check_n_jobs,
    cpu_threads,
    import_torch,
    map_on_cpu_threads,
    resolve_device,
)
from pynomaly_core.detectors.deep.torch_base import COMMON_PARAMS_DOC, TorchDetector
from pynomaly_core.detectors.deep.training import (
    check_int,
    check_layers,
    check_real,
    check_training_params,
    document_params,
)
from pynomaly_core.detectors.sequence import check_window_size

#: Floats of the widest activation per scoring chunk on CPU (~2 MB, as for the row models).
_CPU_CHUNK_FLOATS = 1 << 19
#: Windows per scoring chunk on a GPU.
_GPU_CHUNK_WINDOWS = 1 << 14

WINDOW_PARAMS_DOC = """    window_size : int, default={window_size}
        Rows per window: the scored row and the ``window_size - 1`` rows before it.
"""


class WindowDetector(TorchDetector):
    """Base class of the window detectors: windowing, time-ordered validation, chunked scoring.

    Subclasses set :attr:`network_class` (a class in
    :mod:`~pynomaly_core.detectors.deep.window_networks`), implement :meth:`_network_kwargs`,
    :meth:`_window_width` and :meth:`_window_work`, and declare ``window_size`` and
    ``dropout_rate`` among their parameters.
    """

    #: rows are time steps of one series, to be fed in time order per entity with
    #: ``window_size - 1`` warm-up rows (pynomaly_core.detectors.sequence). The model pipeline
    #: does not do that yet: it passes a partition's rows as they are, edge-padded
    sequence_aware: ClassVar[bool] = True

    # ---------------------------------------------------------------- subclass hooks
    def _window_width(self, n_features: int) -> int:  # pragma: no cover - abstract
        """Widest activation of one window, in floats per row of the window."""
        raise NotImplementedError

    def _window_work(self, n_features: int) -> int:  # pragma: no cover - abstract
        """Multiply-adds of the largest layer on one window (for the CPU thread choice)."""
        raise NotImplementedError

    def _hidden_widths(self) -> list[int]:
        return []

    def _check_params(self) -> None:
        owner = type(self).__name__
        check_training_params(self)
        check_device(self.device, owner)
        check_n_jobs(self.n_jobs, owner)
        check_window_size(owner, self.window_size)
        check_real(owner, "dropout_rate", self.dropout_rate, 0.0, 1.0)

    # ---------------------------------------------------------------------- helpers
    def _build_network(self, n_features: int) -> Any:
        from pynomaly_core.detectors.deep import window_networks

        return getattr(window_networks, self.network_class)(
            n_features, int(self.window_size), **self._network_kwargs()
        )

    def _max_layer_work(self, n_features: int) -> int:
        return self._window_work(n_features)

    def _score_chunk_rows(self, device: Any, n_features: int) -> int:
        """Windows per chunk (for scoring and the validation loss)."""
        if self.score_batch_size is not None:
            return int(self.score_batch_size)
        if device.type != "cpu":
            return _GPU_CHUNK_WINDOWS
        per_window = int(self.window_size) * self._window_width(n_features)
        return int(np.clip(_CPU_CHUNK_FLOATS // max(per_window, 1), 64, 65536))

    def _windows(self, torch: Any, X: np.ndarray, device: Any) -> Any:
        """Standardized windows ending at each row of ``X``: shape ``(n, n_features, window)``.

        The series is left-padded with ``window_size - 1`` copies of its first row, then
        ``unfold`` makes the windows as views of it (no copy per window).
        """
        series = self._standardized(torch, X, self._affine(torch), device)
        width = int(self.window_size)
        series = torch.cat([series[:1].expand(width - 1, -1), series])
        return series.unfold(0, width, 1)

    # --------------------------------------------------------------------- training
    def _training_data(
        self, torch: Any, X: np.ndarray, device: Any, n_validation: int
    ) -> tuple[Any, Any, Any]:
        """The windows ending at each row; the last ``n_validation`` validate, later in time than the
        rest (neighbouring windows share almost all their rows: a random split would leak)."""
        windows = self._windows(torch, X, device)
        split = X.shape[0] - n_validation
        return windows, windows[:split], windows[split:]

    # ---------------------------------------------------------------------- scoring
    def _score(self, X: np.ndarray) -> np.ndarray:
        torch = import_torch()
        device = resolve_device(torch, self.device, type(self).__name__)
        network = self.network_.to(device)
        chunk = self._score_chunk_rows(device, X.shape[1])
        with torch.inference_mode():
            windows = self._windows(torch, X, device)
            score_windows = network.scorer()
        starts = range(0, X.shape[0], chunk)

        def score_chunk(start: int) -> Any:
            return score_windows(windows[start : start + chunk])

        if device.type == "cpu":
            scores = map_on_cpu_threads(torch, score_chunk, starts, cpu_threads(self.n_jobs))
        else:
            amp_dtype = autocast_dtype(torch, device) if self.mixed_precision else None
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None),
            ):
                scores = [score_chunk(start) for start in starts]
        return cast("np.ndarray", torch.cat(scores).cpu().double().numpy())


@document_params(WINDOW_PARAMS_DOC + COMMON_PARAMS_DOC)
class ConvAE(WindowDetector):
    """Convolutional autoencoder over sliding windows (torch), sequence-aware.

    The architecture of the Conv-AE of the SKAB benchmark: per entry of ``channels`` a
    ``Conv1d`` of stride 2 (ReLU, dropout between), mirrored by ``ConvTranspose1d`` layers and a
    final ``Conv1d`` back to the features. Score of a row = root mean squared reconstruction
    error of the standardized window ending at that row (see the module docstring for the
    window, the padding of the first rows and the time-ordered validation split).

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    channels : tuple of int, default=(32, 16)
        Convolution channels of the encoder, each layer halving the window's length; the
        decoder mirrors them.
    kernel_size : int, default=7
        Odd convolution kernel width (rows).
    dropout_rate : float in [0, 1), default=0.2
        Dropout between convolutions during training.
    """

    network_class = "ConvAENet"

    def __init__(
        self,
        contamination: float = 0.1,
        window_size: int = 32,
        channels: tuple[int, ...] = (32, 16),
        kernel_size: int = 7,
        dropout_rate: float = 0.2,
        epochs: int = 50,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        validation_fraction: float = 0.1,
        patience: int = 5,
        tol: float = 1e-4,
        standardize: bool = True,
        device: str = "auto",
        mixed_precision: bool = True,
        n_jobs: int | None = None,
        score_batch_size: int | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.window_size = window_size
        self.channels = channels
        self.kernel_size = kernel_size
        self.dropout_rate = dropout_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.standardize = standardize
        self.device = device
        self.mixed_precision = mixed_precision
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        check_layers(owner, "channels", self.channels)
        check_int(owner, "kernel_size", self.kernel_size, 1)
        if self.kernel_size % 2 == 0:
            raise DetectorError(
                f"{owner}: kernel_size must be odd (the window is padded by "
                f"kernel_size // 2 on both sides), got {self.kernel_size!r}."
            )

    def _network_kwargs(self) -> dict[str, Any]:
        return {
            "channels": tuple(self.channels),
            "kernel_size": int(self.kernel_size),
            "dropout_rate": float(self.dropout_rate),
        }

    def _window_width(self, n_features: int) -> int:
        return max(n_features, *self.channels)

    def _window_work(self, n_features: int) -> int:
        widths = [n_features, *self.channels]
        return (
            int(self.window_size)
            * int(self.kernel_size)
            * max(a * b for a, b in itertools.pairwise(widths))
        )


@document_params(WINDOW_PARAMS_DOC + COMMON_PARAMS_DOC)
class LSTMAE(WindowDetector):
    """Sequence-to-sequence LSTM autoencoder over sliding windows (torch), sequence-aware.

    An encoder LSTM reads the window's rows in order, its last hidden state is repeated once
    per row and a decoder LSTM plus a linear layer reconstructs the window (the LSTM-AE of the
    SKAB benchmark). Score of a row = root mean squared reconstruction error of the
    standardized window ending at that row (see the module docstring). The recurrent layers
    always run in float32, also under ``mixed_precision`` on a GPU.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    hidden_size : int, default=64
        Width of the LSTM states and of the code.
    n_layers : int, default=1
        Stacked LSTM layers in the encoder and in the decoder.
    dropout_rate : float in [0, 1), default=0.0
        Dropout between stacked LSTM layers (unused with one layer).
    """

    network_class = "LSTMAENet"

    def __init__(
        self,
        contamination: float = 0.1,
        window_size: int = 32,
        hidden_size: int = 64,
        n_layers: int = 1,
        dropout_rate: float = 0.0,
        epochs: int = 50,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        validation_fraction: float = 0.1,
        patience: int = 5,
        tol: float = 1e-4,
        standardize: bool = True,
        device: str = "auto",
        mixed_precision: bool = True,
        n_jobs: int | None = None,
        score_batch_size: int | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.window_size = window_size
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.dropout_rate = dropout_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.standardize = standardize
        self.device = device
        self.mixed_precision = mixed_precision
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        owner = type(self).__name__
        check_int(owner, "hidden_size", self.hidden_size, 1)
        check_int(owner, "n_layers", self.n_layers, 1)

    def _network_kwargs(self) -> dict[str, Any]:
        return {
            "hidden_size": int(self.hidden_size),
            "n_layers": int(self.n_layers),
            "dropout_rate": float(self.dropout_rate),
        }

    def _window_width(self, n_features: int) -> int:
        return 4 * int(self.hidden_size) + n_features  # the four gates dominate

    def _window_work(self, n_features: int) -> int:
        hidden = int(self.hidden_size)
        return int(self.window_size) * 4 * hidden * (max(n_features, hidden) + hidden)

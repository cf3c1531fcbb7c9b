"""GPU-aware torch detectors: AutoEncoder, VAE, DeepSVDD and DAGMM.

All four share :class:`TorchDetector`: inputs are standardized with statistics of the
training data, the whole training set is moved to the device once and shuffled there
(no ``DataLoader``, no per-batch host transfers), training uses a flat-buffer Adam
(:class:`~pynomaly_core.detectors.deep.optim.FlatAdam`), mixed precision on
GPUs and early stopping on a validation split, and scoring runs large
cache-sized chunks under :func:`torch.inference_mode` through a folded copy of the
network (see :mod:`pynomaly_core.detectors.deep.torch_networks`).

torch is imported inside the methods, never at module import.

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors.deep import AutoEncoder
>>> rng = np.random.default_rng(0)
>>> t = rng.normal(size=(300, 1))  # rows near a line in 4-D, plus one row off it
>>> X = np.vstack([t @ [[1.0, 2.0, -1.0, 0.5]] + 0.05 * rng.normal(size=(300, 4)),
...                [[1.0, -1.0, 1.0, -1.0]]])
>>> det = AutoEncoder(epochs=20, random_state=0, device="cpu").fit(X)
>>> int(np.argmax(det.decision_scores_))
300
>>> det.predict([[1.0, -1.0, 1.0, -1.0], [0.5, 1.0, -0.5, 0.25]]).tolist()
[1, 0]
"""

from __future__ import annotations

import inspect
import itertools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError
from pynomaly_core.detectors.deep.device import (
    autocast_dtype,
    check_device,
    check_n_jobs,
    cpu_threads,
    import_torch,
    map_on_cpu_threads,
    resolve_device,
    seeded,
    torch_threads,
)
from pynomaly_core.detectors.deep.training import (
    EarlyStopping,
    check_int,
    check_layers,
    check_real,
    check_training_params,
    standardizer,
    validation_size,
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
#: Rows per scoring chunk on CPU are sized so the widest activation fits in ~2 MB of
#: cache; GPUs take large fixed chunks.
_CPU_CHUNK_FLOATS = 1 << 19
_GPU_CHUNK_ROWS = 1 << 16

_COMMON_PARAMS_DOC = """
    epochs : int, default={epochs}
        Maximum number of passes over the training rows (early stopping may end sooner).
    batch_size : int, default={batch_size}
        Rows per gradient step.
    learning_rate : float, default={learning_rate}
        Adam learning rate.
    weight_decay : float, default={weight_decay}
        L2 penalty applied by Adam.
    validation_fraction : float in [0, 1), default={validation_fraction}
        Share of the training rows held out to decide early stopping; 0 disables it
        and trains for exactly ``epochs``.
    patience : int, default={patience}
        Epochs without a relative improvement of ``tol`` in validation loss before
        training stops; the best epoch's weights are kept.
    tol : float, default={tol}
        Minimum relative decrease of the validation loss that counts as improvement.
    standardize : bool, default={standardize}
        Standardize features with the training mean and standard deviation.
    device : {{"auto", "cpu", "cuda", "cuda:N", "mps"}}, default="{device}"
        ``"auto"`` picks CUDA, then Apple MPS, then CPU.
    mixed_precision : bool, default={mixed_precision}
        On a GPU, train and score under autocast (bf16 where supported, else fp16 with
        gradient scaling). Ignored on CPU, which always uses float32.
    n_jobs : int or None, default={n_jobs}
        CPU threads for torch during ``fit``/scoring; ``None`` uses one thread for small
        batches and all available cores for large ones, ``-1`` all cores. The caller's
        ``torch.get_num_threads()`` is restored afterwards.
    score_batch_size : int or None, default={score_batch_size}
        Rows per scoring chunk; ``None`` sizes chunks to the CPU cache (or 65536 rows on
        a GPU).
    random_state : int or None, default={random_state}
        Seed for initialisation, shuffling and dropout; the same seed gives identical
        scores on CPU. The global torch RNG state is restored after ``fit``.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained network (in eval mode).
    device_ : str
        Device used for training.
    scaler_mean_, scaler_scale_ : ndarray of shape (n_features,)
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


def _document_common_params(cls: type) -> type:
    """Append the shared parameter/attribute docs, with this class's defaults, to its docstring."""
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + _COMMON_PARAMS_DOC.format(**defaults)
    return cls


class TorchDetector(BaseDetector):
    """Base class of the torch detectors: training loop, scoring and persistence.

    Subclasses set :attr:`network_class` (a class name in
    :mod:`~pynomaly_core.detectors.deep.torch_networks`), implement
    :meth:`_network_kwargs` and :meth:`_hidden_widths`, and declare their parameters
    in ``__init__`` (scikit-learn style: stored unchanged, validated in ``fit``).
    """

    network_class: ClassVar[str] = ""

    # ---------------------------------------------------------------- subclass hooks
    def _network_kwargs(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hidden_widths(self) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_params(self) -> None:
        owner = type(self).__name__
        check_training_params(self)
        check_device(self.device, owner)
        check_n_jobs(self.n_jobs, owner)
        check_layers(owner, "hidden_neurons", self.hidden_neurons)
        check_real(owner, "dropout_rate", self.dropout_rate, 0.0, 1.0)
        if getattr(self, "batch_norm", False) and self.batch_size < 2:
            raise DetectorError(f"{owner}: batch_size must be >= 2 with batch_norm=True, "
                                f"got {self.batch_size}.")

    # ---------------------------------------------------------------------- helpers
    def _build_network(self, n_features: int) -> Any:
        from pynomaly_core.detectors.deep import torch_networks

        return getattr(torch_networks, self.network_class)(n_features, **self._network_kwargs())

    def _max_layer_work(self, n_features: int) -> int:
        widths = [n_features, *self._hidden_widths(), n_features]
        return max(a * b for a, b in itertools.pairwise(widths))

    def _affine(self, torch: Any) -> tuple[Any, Any]:
        """float64 ``(offset, scale)`` with ``standardized = X * scale + offset``."""
        scale = 1.0 / self.scaler_scale_
        return torch.from_numpy(-self.scaler_mean_ * scale), torch.from_numpy(scale)

    @staticmethod
    def _standardized(torch: Any, X: np.ndarray, affine: tuple[Any, Any], device: Any) -> Any:
        """``X`` standardized as float32 on ``device``.

        The arithmetic runs in float64 on the host and only the result is rounded, so
        features with a large offset (timestamps, IDs) keep their variation; the float32
        copy also halves the bytes sent to a GPU.
        """
        offset, scale = affine
        x = torch.empty(X.shape, dtype=torch.float32)
        torch.addcmul(offset, torch.from_numpy(X), scale, out=x)
        return x.to(device, non_blocking=True)

    def _score_chunk_rows(self, device: Any, n_features: int) -> int:
        if self.score_batch_size is not None:
            return int(self.score_batch_size)
        if device.type != "cpu":
            return _GPU_CHUNK_ROWS
        widest = max(n_features, *self._hidden_widths())
        return int(np.clip(_CPU_CHUNK_FLOATS // widest, 1024, 65536))

    # --------------------------------------------------------------------- training
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        torch = import_torch()
        self._check_params()
        owner = type(self).__name__
        device = resolve_device(torch, self.device, owner)
        n_samples, n_features = X.shape
        n_validation = validation_size(n_samples, self.validation_fraction)
        if n_samples - n_validation < 2:
            raise DetectorError(f"{owner}: fit needs at least 2 rows, got {n_samples}.")
        self.scaler_mean_, self.scaler_scale_ = standardizer(X, self.standardize)
        threads = cpu_threads(self.n_jobs, self.batch_size * self._max_layer_work(n_features))
        with torch_threads(torch, threads), seeded(torch, self.random_state, device):
            data = self._standardized(torch, X, self._affine(torch), device)
            order = torch.randperm(n_samples, device=device)
            train, validation = data[order[n_validation:]], data[order[:n_validation]]
            network = self._build_network(n_features).to(device)
            chunk = self._score_chunk_rows(device, n_features)
            if hasattr(network, "initialize"):
                network.initialize(train.split(chunk))
            self._train(torch, network, train, validation, device, chunk)
            if hasattr(network, "finalize"):
                network.eval()
                with torch.inference_mode():
                    network.finalize(data.split(chunk))
        network.eval()
        self.network_ = network
        self.device_ = str(device)

    def _train(self, torch: Any, network: Any, train: Any, validation: Any, device: Any,
               chunk: int) -> None:
        from pynomaly_core.detectors.deep.optim import FlatAdam

        amp_dtype = autocast_dtype(torch, device) if self.mixed_precision else None
        if amp_dtype == torch.float16:  # fp16 needs loss scaling, which torch.optim supports
            scaler = torch.amp.GradScaler(device.type)
            optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate,
                                         weight_decay=self.weight_decay, fused=True)
        else:
            scaler = None
            optimizer = FlatAdam(network, lr=self.learning_rate, weight_decay=self.weight_decay)
        stopper = EarlyStopping(self.patience, self.tol)
        best_state = None
        self.loss_curve_: list[float] = []
        self.validation_loss_curve_: list[float] = []
        n_train = train.shape[0]
        for epoch in range(self.epochs):
            network.train()
            batches = train[torch.randperm(n_train, device=device)].split(self.batch_size)
            if len(batches) > 1 and batches[-1].shape[0] == 1:
                batches = batches[:-1]  # batch-norm cannot normalise a single row
            step_losses = []
            for batch in batches:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = network.loss(batch)
                optimizer.zero_grad()
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                step_losses.append(loss.detach())
            self.loss_curve_.append(float(torch.stack(step_losses).float().mean()))
            if validation.shape[0] == 0:
                continue
            validation_loss = self._validation_loss(torch, network, validation, device, amp_dtype,
                                                    chunk)
            self.validation_loss_curve_.append(validation_loss)
            if stopper.update(epoch, validation_loss):
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            elif stopper.should_stop:
                break
        if scaler is None:
            optimizer.release()
        self.n_epochs_ = len(self.loss_curve_)
        if best_state is not None:
            network.load_state_dict(best_state)
            self.best_epoch_ = stopper.best_epoch
        else:
            self.best_epoch_ = self.n_epochs_ - 1

    @staticmethod
    def _validation_loss(torch: Any, network: Any, validation: Any, device: Any, amp_dtype: Any,
                         chunk: int) -> float:
        network.eval()
        total = 0.0
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype,
                                                    enabled=amp_dtype is not None):
            for part in validation.split(chunk):
                total += float(network.loss(part)) * part.shape[0]
        return total / validation.shape[0]

    # ---------------------------------------------------------------------- scoring
    def _score(self, X: np.ndarray) -> np.ndarray:
        torch = import_torch()
        device = resolve_device(torch, self.device, type(self).__name__)
        network = self.network_.to(device)
        chunk = self._score_chunk_rows(device, X.shape[1])
        starts = range(0, X.shape[0], chunk)
        affine = self._affine(torch)
        with torch.inference_mode():
            score_rows = network.scorer()

        def score_chunk(start: int) -> Any:
            return score_rows(self._standardized(torch, X[start:start + chunk], affine, device))

        if device.type == "cpu":
            # Chunks are independent: score them on Python threads (see map_on_cpu_threads).
            scores = map_on_cpu_threads(torch, score_chunk, starts, cpu_threads(self.n_jobs))
        else:
            amp_dtype = autocast_dtype(torch, device) if self.mixed_precision else None
            with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype,
                                                        enabled=amp_dtype is not None):
                scores = [score_chunk(start) for start in starts]
        return torch.cat(scores).cpu().double().numpy()

    # ------------------------------------------------------------------ persistence
    def _save_payload(self, dirpath: Path) -> None:
        """Write ``weights.pt`` (tensors only) and ``config.json``; nothing is pickled."""
        torch = import_torch()
        tensors = {
            # copies: after training the parameters are views of one flat buffer (FlatAdam)
            "network": {k: v.detach().to("cpu", copy=True)
                        for k, v in self.network_.state_dict().items()},
            "scaler_mean": torch.from_numpy(np.ascontiguousarray(self.scaler_mean_)),
            "scaler_scale": torch.from_numpy(np.ascontiguousarray(self.scaler_scale_)),
            "decision_scores": torch.from_numpy(np.ascontiguousarray(self.decision_scores_)),
        }
        torch.save(tensors, Path(dirpath) / WEIGHTS_FILE)
        config = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "n_features_in_": int(self.n_features_in_),
            "threshold_": float(self.threshold_),
            "device_": self.device_,
            "n_epochs_": self.n_epochs_,
            "best_epoch_": self.best_epoch_,
            "loss_curve_": self.loss_curve_,
            "validation_loss_curve_": self.validation_loss_curve_,
        }
        (Path(dirpath) / CONFIG_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def _load_payload(cls, dirpath: Path) -> TorchDetector:
        """Rebuild a detector from :meth:`_save_payload` files (``torch.load(weights_only=True)``)."""
        torch = import_torch()
        config = json.loads((Path(dirpath) / CONFIG_FILE).read_text())
        if config["class"] != cls.__name__:
            raise DetectorError(f"{dirpath} holds a {config['class']}, not a {cls.__name__}.")
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()}
        detector = cls(**params)
        tensors = torch.load(Path(dirpath) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        network = detector._build_network(config["n_features_in_"])
        network.load_state_dict(tensors["network"])
        network.eval()
        detector.network_ = network
        detector.scaler_mean_ = tensors["scaler_mean"].numpy()
        detector.scaler_scale_ = tensors["scaler_scale"].numpy()
        detector.n_features_in_ = config["n_features_in_"]
        for name in ("device_", "n_epochs_", "best_epoch_", "loss_curve_", "validation_loss_curve_"):
            setattr(detector, name, config[name])
        detector.decision_scores_ = tensors["decision_scores"].numpy()
        detector.threshold_ = config["threshold_"]
        detector.labels_ = (detector.decision_scores_ > detector.threshold_).astype(int)
        return detector


@_document_common_params
class AutoEncoder(TorchDetector):
    """Reconstruction-error detector with a symmetric MLP autoencoder (torch).

    Architecture ``d -> 64 -> 32 -> 64 -> d`` by default; each hidden layer is
    Linear -> BatchNorm -> ReLU -> Dropout, as in PyOD's AutoEncoder. Score = Euclidean
    distance between a standardized row and its reconstruction.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    hidden_neurons : tuple of int, default=(64, 32)
        Encoder widths; the decoder mirrors them.
    dropout_rate : float in [0, 1), default=0.2
        Dropout after every hidden layer during training.
    batch_norm : bool, default=True
        Batch-normalise every hidden layer (folded into the linear layers for scoring).
    """

    network_class = "AutoEncoderNet"

    def __init__(self, contamination: float = 0.1, hidden_neurons: tuple[int, ...] = (64, 32),
                 dropout_rate: float = 0.2, batch_norm: bool = True, epochs: int = 50,
                 batch_size: int = 32, learning_rate: float = 1e-3, weight_decay: float = 1e-5,
                 validation_fraction: float = 0.1, patience: int = 5, tol: float = 1e-4,
                 standardize: bool = True, device: str = "auto", mixed_precision: bool = True,
                 n_jobs: int | None = None, score_batch_size: int | None = None,
                 random_state: int | None = None) -> None:
        super().__init__(contamination=contamination)
        self.hidden_neurons = hidden_neurons
        self.dropout_rate = dropout_rate
        self.batch_norm = batch_norm
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

    def _network_kwargs(self) -> dict[str, Any]:
        return {"hidden_neurons": tuple(self.hidden_neurons), "batch_norm": bool(self.batch_norm),
                "dropout_rate": float(self.dropout_rate)}

    def _hidden_widths(self) -> list[int]:
        return list(self.hidden_neurons)


@_document_common_params
class VAE(TorchDetector):
    """Variational autoencoder detector (torch).

    Trained on the negative evidence lower bound (unit-variance Gaussian decoder,
    ``beta``-weighted KL term). Score = Euclidean distance between a standardized row
    and the reconstruction of its latent mean, so scores are deterministic.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    hidden_neurons : tuple of int, default=(64, 32)
        Encoder widths; the decoder mirrors them.
    latent_dim : int, default=8
        Size of the Gaussian latent code.
    beta : float, default=1.0
        Weight of the KL divergence term.
    dropout_rate : float in [0, 1), default=0.0
        Dropout after every hidden layer during training.
    batch_norm : bool, default=False
        Batch-normalise every hidden layer.
    """

    network_class = "VAENet"

    def __init__(self, contamination: float = 0.1, hidden_neurons: tuple[int, ...] = (64, 32),
                 latent_dim: int = 8, beta: float = 1.0, dropout_rate: float = 0.0,
                 batch_norm: bool = False, epochs: int = 50, batch_size: int = 32,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-5,
                 validation_fraction: float = 0.1, patience: int = 5, tol: float = 1e-4,
                 standardize: bool = True, device: str = "auto", mixed_precision: bool = True,
                 n_jobs: int | None = None, score_batch_size: int | None = None,
                 random_state: int | None = None) -> None:
        super().__init__(contamination=contamination)
        self.hidden_neurons = hidden_neurons
        self.latent_dim = latent_dim
        self.beta = beta
        self.dropout_rate = dropout_rate
        self.batch_norm = batch_norm
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
        check_int(type(self).__name__, "latent_dim", self.latent_dim, 1)
        check_real(type(self).__name__, "beta", self.beta, 0.0)

    def _network_kwargs(self) -> dict[str, Any]:
        return {"hidden_neurons": tuple(self.hidden_neurons), "latent_dim": int(self.latent_dim),
                "batch_norm": bool(self.batch_norm), "dropout_rate": float(self.dropout_rate),
                "beta": float(self.beta)}

    def _hidden_widths(self) -> list[int]:
        return [*self.hidden_neurons, self.latent_dim]


@_document_common_params
class DeepSVDD(TorchDetector):
    """Deep Support Vector Data Description (Ruff et al., ICML 2018), one-class variant (torch).

    A bias-free MLP maps rows into a space where normal data sits close to a fixed
    centre (the mean initial embedding); training minimises the mean squared distance
    to it. Score = squared distance of the embedding to the centre.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    hidden_neurons : tuple of int, default=(64, 32)
        Layer widths; the last one is the embedding size.
    dropout_rate : float in [0, 1), default=0.0
        Dropout after every hidden layer during training.
    """

    network_class = "DeepSVDDNet"

    def __init__(self, contamination: float = 0.1, hidden_neurons: tuple[int, ...] = (64, 32),
                 dropout_rate: float = 0.0, epochs: int = 50, batch_size: int = 32,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-6,
                 validation_fraction: float = 0.1, patience: int = 5, tol: float = 1e-4,
                 standardize: bool = True, device: str = "auto", mixed_precision: bool = True,
                 n_jobs: int | None = None, score_batch_size: int | None = None,
                 random_state: int | None = None) -> None:
        super().__init__(contamination=contamination)
        self.hidden_neurons = hidden_neurons
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

    def _network_kwargs(self) -> dict[str, Any]:
        return {"hidden_neurons": tuple(self.hidden_neurons), "dropout_rate": float(self.dropout_rate)}

    def _hidden_widths(self) -> list[int]:
        return list(self.hidden_neurons)


@_document_common_params
class DAGMM(TorchDetector):
    """Deep Autoencoding Gaussian Mixture Model (Zong et al., ICLR 2018) (torch).

    A tanh compression autoencoder yields a ``latent_dim`` code plus the relative
    reconstruction distance and cosine similarity; an estimation network assigns them
    to ``n_components`` Gaussians, trained jointly on reconstruction + energy +
    covariance penalty. After training the mixture is re-estimated on all training
    rows. Score = sample energy (negative log-likelihood under the mixture).

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    hidden_neurons : tuple of int, default=(60, 30, 10)
        Compression encoder widths before the code; the decoder mirrors them.
    latent_dim : int, default=1
        Size of the compressed code.
    estimation_neurons : int, default=10
        Hidden width of the estimation network.
    n_components : int, default=4
        Gaussian mixture components.
    dropout_rate : float in [0, 1), default=0.5
        Dropout in the estimation network.
    lambda_energy : float, default=0.1
        Weight of the mean sample energy in the loss.
    lambda_cov : float, default=0.005
        Weight of the inverse-covariance-diagonal penalty (prevents singular components).
    """

    network_class = "DAGMMNet"

    def __init__(self, contamination: float = 0.1, hidden_neurons: tuple[int, ...] = (60, 30, 10),
                 latent_dim: int = 1, estimation_neurons: int = 10, n_components: int = 4,
                 dropout_rate: float = 0.5, lambda_energy: float = 0.1, lambda_cov: float = 0.005,
                 epochs: int = 50, batch_size: int = 256, learning_rate: float = 1e-3,
                 weight_decay: float = 1e-5, validation_fraction: float = 0.1, patience: int = 5,
                 tol: float = 1e-4, standardize: bool = True, device: str = "auto",
                 mixed_precision: bool = True, n_jobs: int | None = None,
                 score_batch_size: int | None = None, random_state: int | None = None) -> None:
        super().__init__(contamination=contamination)
        self.hidden_neurons = hidden_neurons
        self.latent_dim = latent_dim
        self.estimation_neurons = estimation_neurons
        self.n_components = n_components
        self.dropout_rate = dropout_rate
        self.lambda_energy = lambda_energy
        self.lambda_cov = lambda_cov
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
        check_int(owner, "latent_dim", self.latent_dim, 1)
        check_int(owner, "estimation_neurons", self.estimation_neurons, 1)
        check_int(owner, "n_components", self.n_components, 1)
        check_real(owner, "lambda_energy", self.lambda_energy, 0.0)
        check_real(owner, "lambda_cov", self.lambda_cov, 0.0)

    def _network_kwargs(self) -> dict[str, Any]:
        return {"hidden_neurons": tuple(self.hidden_neurons), "latent_dim": int(self.latent_dim),
                "estimation_neurons": int(self.estimation_neurons),
                "n_components": int(self.n_components), "dropout_rate": float(self.dropout_rate),
                "lambda_energy": float(self.lambda_energy), "lambda_cov": float(self.lambda_cov)}

    def _hidden_widths(self) -> list[int]:
        return [*self.hidden_neurons, self.latent_dim]

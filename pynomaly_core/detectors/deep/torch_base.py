"""The engine of the torch detectors: :class:`TorchDetector`, their training loop, scoring and files.

Inputs are standardized with statistics of the training data, the whole training set is
moved to the device once and shuffled there (no ``DataLoader``, no per-batch host
transfers), training uses a flat-buffer Adam
(:class:`~pynomaly_core.detectors.deep.optim.FlatAdam`), mixed precision on GPUs and early
stopping on a validation split, and scoring runs large cache-sized chunks under
:func:`torch.inference_mode` through a folded copy of the network (see
:mod:`pynomaly_core.detectors.deep.torch_networks`). The detectors themselves (their
parameters and networks) are in :mod:`pynomaly_core.detectors.deep.torch_models`.

torch is imported inside the methods, never at module import.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, ClassVar, cast

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
    EPOCHS_PARAMS_DOC,
    STOPPING_PARAMS_DOC,
    TRAINED_ATTRIBUTES_DOC,
    EarlyStopping,
    check_layers,
    check_real,
    check_training_params,
    read_config,
    restore_trained_state,
    standardizer,
    validation_size,
    write_config,
)

WEIGHTS_FILE = "weights.pt"
#: Rows per scoring chunk on CPU are sized so the widest activation fits in ~2 MB of
#: cache; GPUs take large fixed chunks.
_CPU_CHUNK_FLOATS = 1 << 19
_GPU_CHUNK_ROWS = 1 << 16

#: parameters and attributes every torch detector documents (see ``document_params``)
COMMON_PARAMS_DOC = (
    "\n"
    + EPOCHS_PARAMS_DOC
    + """    weight_decay : float, default={weight_decay}
        L2 penalty applied by Adam.
    validation_fraction : float in [0, 1), default={validation_fraction}
        Share of the training rows held out to decide early stopping; 0 disables it
        and trains for exactly ``epochs``.
"""
    + STOPPING_PARAMS_DOC
    + """    device : {{"auto", "cpu", "cuda", "cuda:N", "mps"}}, default="{device}"
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
"""
    + TRAINED_ATTRIBUTES_DOC
)


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
            raise DetectorError(
                f"{owner}: batch_size must be >= 2 with batch_norm=True, got {self.batch_size}."
            )

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
            data, train, validation = self._training_data(torch, X, device, n_validation)
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

    def _training_data(
        self, torch: Any, X: np.ndarray, device: Any, n_validation: int
    ) -> tuple[Any, Any, Any]:
        """(all samples, training samples, validation samples) on ``device``: the standardized rows,
        ``n_validation`` of them drawn at random to validate (window detectors override this)."""
        data = self._standardized(torch, X, self._affine(torch), device)
        order = torch.randperm(X.shape[0], device=device)
        return data, data[order[n_validation:]], data[order[:n_validation]]

    def _train(
        self, torch: Any, network: Any, train: Any, validation: Any, device: Any, chunk: int
    ) -> None:
        from pynomaly_core.detectors.deep.optim import FlatAdam

        amp_dtype = autocast_dtype(torch, device) if self.mixed_precision else None
        if amp_dtype == torch.float16:  # fp16 needs loss scaling, which torch.optim supports
            scaler = torch.amp.GradScaler(device.type)
            optimizer = torch.optim.Adam(
                network.parameters(),
                lr=self.learning_rate,
                weight_decay=self.weight_decay,
                fused=True,
            )
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
            validation_loss = self._validation_loss(
                torch, network, validation, device, amp_dtype, chunk
            )
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
    def _validation_loss(
        torch: Any, network: Any, validation: Any, device: Any, amp_dtype: Any, chunk: int
    ) -> float:
        network.eval()
        total = 0.0
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None),
        ):
            for part in validation.split(chunk):
                total += float(network.loss(part)) * part.shape[0]
        return cast("float", total / validation.shape[0])

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
            return score_rows(self._standardized(torch, X[start : start + chunk], affine, device))

        if device.type == "cpu":
            # Chunks are independent: score them on Python threads (see map_on_cpu_threads).
            scores = map_on_cpu_threads(torch, score_chunk, starts, cpu_threads(self.n_jobs))
        else:
            amp_dtype = autocast_dtype(torch, device) if self.mixed_precision else None
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None),
            ):
                scores = [score_chunk(start) for start in starts]
        return cast("np.ndarray", torch.cat(scores).cpu().double().numpy())

    # ------------------------------------------------------------------ persistence
    def _save_payload(self, dirpath: Path, key: bytes) -> None:
        """Write ``weights.pt`` (tensors only) and ``config.json``; nothing is pickled."""
        torch = import_torch()
        tensors = {
            # copies: after training the parameters are views of one flat buffer (FlatAdam)
            "network": {
                k: v.detach().to("cpu", copy=True) for k, v in self.network_.state_dict().items()
            },
            "scaler_mean": torch.from_numpy(np.ascontiguousarray(self.scaler_mean_)),
            "scaler_scale": torch.from_numpy(np.ascontiguousarray(self.scaler_scale_)),
            "decision_scores": torch.from_numpy(np.ascontiguousarray(self.decision_scores_)),
        }
        torch.save(tensors, Path(dirpath) / WEIGHTS_FILE)
        write_config(self, dirpath)

    @classmethod
    def _load_payload(cls, dirpath: Path, key: bytes) -> TorchDetector:
        """Rebuild a detector from :meth:`_save_payload` files (``torch.load(weights_only=True)``)."""
        torch = import_torch()
        detector, config = read_config(cls, dirpath)
        tensors = torch.load(Path(dirpath) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        network = detector._build_network(config["n_features_in_"])
        network.load_state_dict(tensors["network"])
        network.eval()
        detector.network_ = network
        detector.scaler_mean_ = tensors["scaler_mean"].numpy()
        detector.scaler_scale_ = tensors["scaler_scale"].numpy()
        restore_trained_state(detector, config, tensors["decision_scores"].numpy())
        return cast("TorchDetector", detector)

"""Keras (TensorFlow backend) detectors: KerasAutoEncoder, KerasVAE and KerasDeepSVDD.

They mirror the torch detectors of the same name: inputs standardized with training
statistics, the training split kept on the device as one tensor, one
``tf.function``-compiled graph per epoch (no Python per batch), early stopping on a
validation split, mixed precision on GPUs, and deterministic results for a fixed
``random_state`` (every initializer, dropout layer and sampler gets its own seed; no
global seed is set). Models are saved in Keras' own ``.keras`` format and loaded with
``safe_mode=True``.

TensorFlow is imported inside the methods, never at module import. TensorFlow sizes
its CPU thread pools once per process, so these detectors take no ``n_jobs``.

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors.deep import KerasAutoEncoder
>>> rng = np.random.default_rng(0)
>>> t = rng.normal(size=(300, 1))  # rows near a line in 4-D, plus one row off it
>>> X = np.vstack([t @ [[1.0, 2.0, -1.0, 0.5]] + 0.05 * rng.normal(size=(300, 4)),
...                [[1.0, -1.0, 1.0, -1.0]]])
>>> det = KerasAutoEncoder(epochs=20, random_state=0, device="cpu").fit(X)  # doctest: +SKIP
>>> int(np.argmax(det.decision_scores_))  # doctest: +SKIP
300
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError
from pynomaly_core.detectors.deep.device import (
    check_keras_device,
    import_keras,
    keras_dtype_policy,
    resolve_tf_device,
)
from pynomaly_core.detectors.deep.training import (
    EPOCHS_PARAMS_DOC,
    STOPPING_PARAMS_DOC,
    TRAINED_ATTRIBUTES_DOC,
    EarlyStopping,
    check_int,
    check_layers,
    check_real,
    check_training_params,
    document_params,
    read_config,
    restore_trained_state,
    standardizer,
    validation_size,
    write_config,
)

ARRAYS_FILE = "arrays.npz"
_SCORE_CHUNK_ROWS = 1 << 14

_COMMON_PARAMS_DOC = (
    "\n"
    + EPOCHS_PARAMS_DOC
    + """    weight_decay : float, default={weight_decay}
        Decoupled weight decay of Keras' Adam (0 disables it).
    validation_fraction : float in [0, 1), default={validation_fraction}
        Share of the training rows held out to decide early stopping; 0 disables it.
"""
    + STOPPING_PARAMS_DOC
    + """    device : {{"auto", "cpu", "gpu", "gpu:N", "cuda", "cuda:N"}}, default="{device}"
        ``"auto"`` uses the first GPU TensorFlow sees, else the CPU.
    mixed_precision : bool, default={mixed_precision}
        On a GPU, use Keras' ``mixed_bfloat16`` policy (``mixed_float16`` with loss
        scaling on GPUs older than compute capability 8). Ignored on CPU.
    score_batch_size : int or None, default={score_batch_size}
        Rows per scoring chunk; ``None`` uses 16384.
    random_state : int or None, default={random_state}
        Seed for initialisation, shuffling, dropout and sampling; the same seed gives
        identical scores on CPU. No global seed is touched.

    Attributes
    ----------
    models_ : dict of str to keras.Model
        The trained network(s).
    device_ : str
        TensorFlow device used for training.
"""
    + TRAINED_ATTRIBUTES_DOC
)


class KerasDetector(BaseDetector):
    """Base class of the Keras detectors: training loop, scoring and persistence.

    Subclasses name their builder, loss and score functions in
    :mod:`~pynomaly_core.detectors.deep.keras_networks` and implement
    :meth:`_builder_kwargs`.
    """

    builder: ClassVar[str] = ""
    loss_function: ClassVar[str] = ""
    score_function: ClassVar[str] = ""

    # ---------------------------------------------------------------- subclass hooks
    def _builder_kwargs(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _training_state(self, keras: Any, seeds: Any) -> dict[str, Any]:
        """Extra tensors/objects the loss needs during training."""
        return self._scoring_state()

    def _scoring_state(self) -> dict[str, Any]:
        """Extra tensors the score function needs (e.g. the Deep SVDD centre)."""
        return {}

    def _initialize(self, models: dict[str, Any], train: Any) -> None:
        """Called after the models are built and before training."""

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays beyond the models, saved in ``arrays.npz``."""
        return {}

    def _check_params(self) -> None:
        owner = type(self).__name__
        check_training_params(self)
        check_keras_device(self.device, owner)
        check_layers(owner, "hidden_neurons", self.hidden_neurons)
        check_real(owner, "dropout_rate", self.dropout_rate, 0.0, 1.0)

    # ---------------------------------------------------------------------- helpers
    def _standardized(self, X: np.ndarray) -> np.ndarray:
        return cast("np.ndarray", ((X - self.scaler_mean_) / self.scaler_scale_).astype(np.float32))

    def _chunk_rows(self) -> int:
        return int(self.score_batch_size or _SCORE_CHUNK_ROWS)

    # --------------------------------------------------------------------- training
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        tf, keras, networks = import_keras()
        self._check_params()
        owner = type(self).__name__
        device = resolve_tf_device(tf, self.device, owner)
        n_samples, n_features = X.shape
        n_validation = validation_size(n_samples, self.validation_fraction)
        n_train = n_samples - n_validation
        if n_train < 2:
            raise DetectorError(f"{owner}: fit needs at least 2 rows, got {n_samples}.")
        self.scaler_mean_, self.scaler_scale_ = standardizer(X, self.standardize)
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(n_samples)
        data = self._standardized(X)
        policy = keras_dtype_policy(tf, device, self.mixed_precision)
        with tf.device(device):
            seeds = networks.Seeds(self.random_state)
            build = getattr(networks, self.builder)
            models = build(n_features, **self._builder_kwargs(), seeds=seeds, dtype=policy)
            train = tf.constant(data[order[n_validation:]])
            validation = tf.constant(data[order[:n_validation]])
            self._initialize(models, train)
            state = self._training_state(keras, seeds)
            optimizer = keras.optimizers.Adam(
                learning_rate=self.learning_rate, weight_decay=self.weight_decay or None
            )
            if policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self._train(tf, networks, models, state, optimizer, train, validation, rng)
        self.models_ = models
        self.device_ = device
        self._compiled_scorer: Any = None

    def _train(
        self,
        tf: Any,
        networks: Any,
        models: dict[str, Any],
        state: dict[str, Any],
        optimizer: Any,
        train: Any,
        validation: Any,
        rng: np.random.Generator,
    ) -> None:
        loss_fn = getattr(networks, self.loss_function)
        variables = [v for model in models.values() for v in model.trainable_variables]
        optimizer.build(variables)
        n_train, batch_size = int(train.shape[0]), int(self.batch_size)
        n_batches = math.ceil(n_train / batch_size)
        if n_batches > 1 and n_train % batch_size == 1:
            n_batches -= 1  # batch-norm cannot normalise a single row

        @tf.function  # type: ignore[untyped-decorator]  # tensorflow ships no type hints
        def train_epoch(shuffled: Any) -> Any:
            total = tf.constant(0.0)
            for i in tf.range(n_batches):
                batch = shuffled[i * batch_size : (i + 1) * batch_size]
                with tf.GradientTape() as tape:
                    loss = loss_fn(models, batch, True, state)
                    scaled = optimizer.scale_loss(loss)
                gradients = tape.gradient(scaled, variables)
                optimizer.apply_gradients(zip(gradients, variables))
                total += loss
            return total / n_batches

        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]  # no tf hints
        def validation_loss(part: Any) -> Any:
            return loss_fn(models, part, False, state)

        stopper = EarlyStopping(self.patience, self.tol)
        best_weights = None
        self.loss_curve_: list[float] = []
        self.validation_loss_curve_: list[float] = []
        n_validation = int(validation.shape[0])
        chunk = self._chunk_rows()
        for epoch in range(self.epochs):
            shuffled = tf.gather(train, rng.permutation(n_train))
            self.loss_curve_.append(float(train_epoch(shuffled)))
            if n_validation == 0:
                continue
            loss = (
                sum(
                    float(validation_loss(validation[s : s + chunk])) * min(chunk, n_validation - s)
                    for s in range(0, n_validation, chunk)
                )
                / n_validation
            )
            self.validation_loss_curve_.append(loss)
            if stopper.update(epoch, loss):
                best_weights = {name: m.get_weights() for name, m in models.items()}
            elif stopper.should_stop:
                break
        self.n_epochs_ = len(self.loss_curve_)
        if best_weights is not None:
            for name, weights in best_weights.items():
                models[name].set_weights(weights)
            self.best_epoch_ = stopper.best_epoch
        else:
            self.best_epoch_ = self.n_epochs_ - 1

    # ---------------------------------------------------------------------- scoring
    def _score(self, X: np.ndarray) -> np.ndarray:
        tf, _, networks = import_keras()
        device = resolve_tf_device(tf, self.device, type(self).__name__)
        if getattr(self, "_compiled_scorer", None) is None:
            # Traced once per fitted model; re-creating it per call would retrace every time.
            score_fn = getattr(networks, self.score_function)
            models, state = self.models_, self._scoring_state()
            self._compiled_scorer = tf.function(
                lambda x: score_fn(models, x, state),
                input_signature=[tf.TensorSpec([None, self.n_features_in_], tf.float32)],
            )
        data = self._standardized(X)
        chunk = self._chunk_rows()
        with tf.device(device):
            scores = [
                self._compiled_scorer(data[s : s + chunk]).numpy()
                for s in range(0, len(data), chunk)
            ]
        return np.concatenate(scores).astype(np.float64)

    # ------------------------------------------------------------------ persistence
    def _save_payload(self, dirpath: Path, key: bytes) -> None:
        """Write one ``<name>.keras`` per model, ``arrays.npz`` and ``config.json``; nothing is pickled."""
        dirpath = Path(dirpath)
        for name, model in self.models_.items():
            model.save(dirpath / f"{name}.keras")
        arrays: dict[str, Any] = {
            "scaler_mean": self.scaler_mean_,
            "scaler_scale": self.scaler_scale_,
            "decision_scores": self.decision_scores_,
            **self._extra_arrays(),
        }
        np.savez(dirpath / ARRAYS_FILE, **arrays)
        write_config(self, dirpath, models=sorted(self.models_))

    @classmethod
    def _load_payload(cls, dirpath: Path, key: bytes) -> KerasDetector:
        """Rebuild a detector from :meth:`_save_payload` files (``load_model(safe_mode=True)``)."""
        _, keras, _ = import_keras()
        dirpath = Path(dirpath)
        detector, config = read_config(cls, dirpath)
        detector.models_ = {
            name: keras.saving.load_model(dirpath / f"{name}.keras", compile=False, safe_mode=True)
            for name in config["models"]
        }
        with np.load(dirpath / ARRAYS_FILE, allow_pickle=False) as arrays:
            loaded = {name: arrays[name] for name in arrays.files}
        detector.scaler_mean_ = loaded.pop("scaler_mean")
        detector.scaler_scale_ = loaded.pop("scaler_scale")
        restore_trained_state(detector, config, loaded.pop("decision_scores"))
        for name, value in loaded.items():
            setattr(detector, f"{name}_", value)
        return cast("KerasDetector", detector)


@document_params(_COMMON_PARAMS_DOC)
class KerasAutoEncoder(KerasDetector):
    """Reconstruction-error detector with a symmetric MLP autoencoder (Keras).

    Same architecture and score as :class:`~pynomaly_core.detectors.deep.AutoEncoder`:
    hidden layers Dense -> BatchNormalization -> ReLU -> Dropout, score = Euclidean
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
        Batch-normalise every hidden layer.
    """

    builder = "build_autoencoder"
    loss_function = "autoencoder_loss"
    score_function = "autoencoder_score"

    def __init__(
        self,
        contamination: float = 0.1,
        hidden_neurons: tuple[int, ...] = (64, 32),
        dropout_rate: float = 0.2,
        batch_norm: bool = True,
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
        score_batch_size: int | None = None,
        random_state: int | None = None,
    ) -> None:
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
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _builder_kwargs(self) -> dict[str, Any]:
        return {
            "hidden_neurons": tuple(self.hidden_neurons),
            "batch_norm": bool(self.batch_norm),
            "dropout_rate": float(self.dropout_rate),
        }


@document_params(_COMMON_PARAMS_DOC)
class KerasVAE(KerasDetector):
    """Variational autoencoder detector (Keras).

    Same objective and score as :class:`~pynomaly_core.detectors.deep.VAE`: negative
    ELBO with a ``beta``-weighted KL term for training, reconstruction distance of the
    latent mean for scoring (deterministic).

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

    builder = "build_vae"
    loss_function = "vae_loss"
    score_function = "vae_score"

    def __init__(
        self,
        contamination: float = 0.1,
        hidden_neurons: tuple[int, ...] = (64, 32),
        latent_dim: int = 8,
        beta: float = 1.0,
        dropout_rate: float = 0.0,
        batch_norm: bool = False,
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
        score_batch_size: int | None = None,
        random_state: int | None = None,
    ) -> None:
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
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_int(type(self).__name__, "latent_dim", self.latent_dim, 1)
        check_real(type(self).__name__, "beta", self.beta, 0.0)

    def _builder_kwargs(self) -> dict[str, Any]:
        return {
            "hidden_neurons": tuple(self.hidden_neurons),
            "latent_dim": int(self.latent_dim),
            "batch_norm": bool(self.batch_norm),
            "dropout_rate": float(self.dropout_rate),
        }

    def _training_state(self, keras: Any, seeds: Any) -> dict[str, Any]:
        return {"beta": float(self.beta), "sampler": keras.random.SeedGenerator(seeds())}


@document_params(_COMMON_PARAMS_DOC)
class KerasDeepSVDD(KerasDetector):
    """Deep SVDD one-class detector (Ruff et al., ICML 2018) (Keras).

    Same method as :class:`~pynomaly_core.detectors.deep.DeepSVDD`: a bias-free MLP
    trained to pull embeddings towards the mean initial embedding; score = squared
    distance of the embedding to that centre.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    hidden_neurons : tuple of int, default=(64, 32)
        Layer widths; the last one is the embedding size.
    dropout_rate : float in [0, 1), default=0.0
        Dropout after every hidden layer during training.

    Notes
    -----
    ``center_`` (ndarray of shape (hidden_neurons[-1],)) holds the hypersphere centre.
    """

    builder = "build_deep_svdd"
    loss_function = "deep_svdd_loss"
    score_function = "deep_svdd_score"

    def __init__(
        self,
        contamination: float = 0.1,
        hidden_neurons: tuple[int, ...] = (64, 32),
        dropout_rate: float = 0.0,
        epochs: int = 50,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
        validation_fraction: float = 0.1,
        patience: int = 5,
        tol: float = 1e-4,
        standardize: bool = True,
        device: str = "auto",
        mixed_precision: bool = True,
        score_batch_size: int | None = None,
        random_state: int | None = None,
    ) -> None:
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
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _builder_kwargs(self) -> dict[str, Any]:
        return {
            "hidden_neurons": tuple(self.hidden_neurons),
            "dropout_rate": float(self.dropout_rate),
        }

    def _initialize(self, models: dict[str, Any], train: Any) -> None:
        """Centre = mean initial embedding, coordinates pushed to at least ±0.1 (Ruff et al.)."""
        chunk = self._chunk_rows()
        total = sum(
            np.asarray(models["model"](train[s : s + chunk], training=False), dtype=np.float64).sum(
                axis=0
            )
            for s in range(0, int(train.shape[0]), chunk)
        )
        center = total / int(train.shape[0])
        eps = 0.1
        small = np.abs(center) < eps
        center[small] = np.where(center[small] < 0, -eps, eps)
        self.center_ = center.astype(np.float32)

    def _scoring_state(self) -> dict[str, Any]:
        return {"center": self.center_}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {"center": self.center_}

"""GPU-aware torch detectors: AutoEncoder, VAE, DeepSVDD and DAGMM.

All four share :class:`~pynomaly_core.detectors.deep.torch_base.TorchDetector`: inputs are standardized with statistics of the
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

from typing import Any

from pynomaly_core.detectors.deep.torch_base import COMMON_PARAMS_DOC, TorchDetector
from pynomaly_core.detectors.deep.training import check_int, check_real, document_params


@document_params(COMMON_PARAMS_DOC)
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
        n_jobs: int | None = None,
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
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _network_kwargs(self) -> dict[str, Any]:
        return {
            "hidden_neurons": tuple(self.hidden_neurons),
            "batch_norm": bool(self.batch_norm),
            "dropout_rate": float(self.dropout_rate),
        }

    def _hidden_widths(self) -> list[int]:
        return list(self.hidden_neurons)


@document_params(COMMON_PARAMS_DOC)
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
        n_jobs: int | None = None,
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
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_int(type(self).__name__, "latent_dim", self.latent_dim, 1)
        check_real(type(self).__name__, "beta", self.beta, 0.0)

    def _network_kwargs(self) -> dict[str, Any]:
        return {
            "hidden_neurons": tuple(self.hidden_neurons),
            "latent_dim": int(self.latent_dim),
            "batch_norm": bool(self.batch_norm),
            "dropout_rate": float(self.dropout_rate),
            "beta": float(self.beta),
        }

    def _hidden_widths(self) -> list[int]:
        return [*self.hidden_neurons, self.latent_dim]


@document_params(COMMON_PARAMS_DOC)
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
        n_jobs: int | None = None,
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
        self.n_jobs = n_jobs
        self.score_batch_size = score_batch_size
        self.random_state = random_state

    def _network_kwargs(self) -> dict[str, Any]:
        return {
            "hidden_neurons": tuple(self.hidden_neurons),
            "dropout_rate": float(self.dropout_rate),
        }

    def _hidden_widths(self) -> list[int]:
        return list(self.hidden_neurons)


@document_params(COMMON_PARAMS_DOC)
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

    def __init__(
        self,
        contamination: float = 0.1,
        hidden_neurons: tuple[int, ...] = (60, 30, 10),
        latent_dim: int = 1,
        estimation_neurons: int = 10,
        n_components: int = 4,
        dropout_rate: float = 0.5,
        lambda_energy: float = 0.1,
        lambda_cov: float = 0.005,
        epochs: int = 50,
        batch_size: int = 256,
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
        return {
            "hidden_neurons": tuple(self.hidden_neurons),
            "latent_dim": int(self.latent_dim),
            "estimation_neurons": int(self.estimation_neurons),
            "n_components": int(self.n_components),
            "dropout_rate": float(self.dropout_rate),
            "lambda_energy": float(self.lambda_energy),
            "lambda_cov": float(self.lambda_cov),
        }

    def _hidden_widths(self) -> list[int]:
        return [*self.hidden_neurons, self.latent_dim]

"""The torch networks behind the deep detectors (imported only when a torch detector runs).

Every network takes standardized float32 rows of shape ``(batch, n_features)`` and
implements:

* ``loss(x)`` — the scalar training loss of a batch (uses ``self.training`` to pick
  the stochastic or deterministic path);
* ``scorer()`` — a function mapping a batch to anomaly scores of shape ``(batch,)``,
  higher = more anomalous (eval mode; built once per scoring call);
* optionally ``initialize(batches)`` (before training) and ``finalize(batches)`` (after),
  given the training rows in chunks.

Scoring of the MLP networks runs a *folded* copy of the layer stack: eval-mode
batch-norm is merged into the preceding linear layer, dropout disappears, and each
layer becomes one ``addmm`` plus an in-place activation, so inference is a few large
matrix products per chunk of rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

#: A folded layer: weight transposed to (in, out), bias (out,), activation name or None.
FoldedLayer = tuple[torch.Tensor, torch.Tensor, str | None]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _block(
    n_in: int,
    n_out: int,
    *,
    batch_norm: bool,
    dropout_rate: float,
    activation: str = "relu",
    bias: bool = True,
) -> list[nn.Module]:
    """Linear -> [BatchNorm] -> activation -> [Dropout] (PyOD's LinearBlock order)."""
    layers: list[nn.Module] = [nn.Linear(n_in, n_out, bias=bias)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(n_out))
    layers.append(_ACTIVATIONS[activation]())
    if dropout_rate > 0:
        layers.append(nn.Dropout(dropout_rate))
    return layers


def _mlp(
    sizes: Sequence[int],
    *,
    batch_norm: bool,
    dropout_rate: float,
    activation: str = "relu",
    bias: bool = True,
    last_activation: bool = False,
) -> nn.Sequential:
    """An MLP through ``sizes``; the last layer is a bare linear unless ``last_activation``."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        if i == len(sizes) - 2 and not last_activation:
            layers.append(nn.Linear(n_in, n_out, bias=bias))
        else:
            layers += _block(
                n_in,
                n_out,
                batch_norm=batch_norm,
                dropout_rate=dropout_rate,
                activation=activation,
                bias=bias,
            )
    return nn.Sequential(*layers)


def fold(modules: Iterable[nn.Module]) -> list[FoldedLayer]:
    """Fold an eval-mode stack of Linear/BatchNorm1d/activation/Dropout into affine layers.

    Parameters
    ----------
    modules : iterable of nn.Module
        Layers in order; batch-norm must follow a linear layer.

    Returns
    -------
    list of (weight_t, bias, activation)
        ``weight_t`` has shape ``(in, out)`` and is contiguous, ready for ``addmm``.
    """
    folded: list[list[Any]] = []
    for module in modules:
        if isinstance(module, nn.Linear):
            weight_t = module.weight.detach().t()
            bias = (
                module.bias.detach()
                if module.bias is not None
                else weight_t.new_zeros(module.out_features)
            )
            folded.append([weight_t, bias, None])
        elif isinstance(module, nn.BatchNorm1d):
            weight_t, bias, _ = folded[-1]
            if module.running_var is None or module.running_mean is None:
                raise TypeError("cannot fold a BatchNorm1d without running statistics")
            scale = torch.rsqrt(module.running_var + module.eps)
            if module.affine:
                scale = scale * module.weight.detach()
            shift = -module.running_mean * scale
            if module.affine:
                shift = shift + module.bias.detach()
            folded[-1][0] = weight_t * scale
            folded[-1][1] = bias * scale + shift
        elif isinstance(module, (nn.ReLU, nn.Tanh)):
            folded[-1][2] = "relu" if isinstance(module, nn.ReLU) else "tanh"
        elif not isinstance(module, nn.Dropout):
            raise TypeError(f"cannot fold {type(module).__name__}")
    return [(w.contiguous(), b.contiguous(), act) for w, b, act in folded]


def run_folded(x: torch.Tensor, layers: Sequence[FoldedLayer]) -> torch.Tensor:
    """Apply folded layers to ``x`` of shape ``(batch, in)``; returns ``(batch, out)``."""
    for weight_t, bias, activation in layers:
        x = torch.addmm(bias, x, weight_t)
        if activation == "relu":
            x.relu_()
        elif activation == "tanh":
            x.tanh_()
    return x


def _row_distance(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between matching rows, computed in float32."""
    return cast(torch.Tensor, torch.linalg.vector_norm(x_hat.float() - x, dim=1))


class AutoEncoderNet(nn.Module):
    """Symmetric MLP autoencoder ``d -> h1 -> ... -> hk -> ... -> h1 -> d``; score = reconstruction distance."""

    def __init__(
        self, n_features: int, hidden_neurons: Sequence[int], batch_norm: bool, dropout_rate: float
    ) -> None:
        super().__init__()
        hidden = list(hidden_neurons)
        self.encoder = _mlp(
            [n_features, *hidden],
            batch_norm=batch_norm,
            dropout_rate=dropout_rate,
            last_activation=True,
        )
        self.decoder = _mlp(
            [*hidden[::-1], n_features], batch_norm=batch_norm, dropout_rate=dropout_rate
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reconstruction: torch.Tensor = self.decoder(self.encoder(x))
        return reconstruction

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self(x), x)

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        layers = fold([*self.encoder, *self.decoder])
        return lambda x: _row_distance(x, run_folded(x, layers))


class VAENet(nn.Module):
    """Variational autoencoder with a Gaussian latent; score = reconstruction distance from the latent mean."""

    def __init__(
        self,
        n_features: int,
        hidden_neurons: Sequence[int],
        latent_dim: int,
        batch_norm: bool,
        dropout_rate: float,
        beta: float,
    ) -> None:
        super().__init__()
        hidden = list(hidden_neurons)
        self.beta = beta
        self.encoder = _mlp(
            [n_features, *hidden],
            batch_norm=batch_norm,
            dropout_rate=dropout_rate,
            last_activation=True,
        )
        self.mean = nn.Linear(hidden[-1], latent_dim)
        self.log_var = nn.Linear(hidden[-1], latent_dim)
        self.decoder = _mlp(
            [latent_dim, *hidden[::-1], n_features],
            batch_norm=batch_norm,
            dropout_rate=dropout_rate,
        )

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        mean, log_var = self.mean(h), self.log_var(h).clamp(-10.0, 10.0)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
        reconstruction: torch.Tensor = 0.5 * (self.decoder(z) - x).square().sum(dim=1)
        kl: torch.Tensor = -0.5 * (1.0 + log_var - mean.square() - log_var.exp()).sum(dim=1)
        return (reconstruction + self.beta * kl).mean()

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        layers = fold([*self.encoder, self.mean, *self.decoder])
        return lambda x: _row_distance(x, run_folded(x, layers))


class DeepSVDDNet(nn.Module):
    """Deep SVDD (Ruff et al., 2018): bias-free MLP mapped into a hypersphere around a fixed centre.

    Biases and batch-norm shifts are left out on purpose: with them the network
    could map every input to the centre (hypersphere collapse).
    """

    center: torch.Tensor  # registered buffer

    def __init__(self, n_features: int, hidden_neurons: Sequence[int], dropout_rate: float) -> None:
        super().__init__()
        self.network = _mlp(
            [n_features, *hidden_neurons], batch_norm=False, dropout_rate=dropout_rate, bias=False
        )
        self.register_buffer("center", torch.zeros(hidden_neurons[-1]))

    @torch.no_grad()
    def initialize(self, batches: Iterable[torch.Tensor]) -> None:
        """Set the centre to the mean embedding of the rows, pushing near-zero coordinates to ±0.1."""
        was_training = self.training
        self.eval()
        total: torch.Tensor | None = None
        n_rows = 0
        for x in batches:
            batch_sum: torch.Tensor = self.network(x).float().sum(dim=0)
            total = batch_sum if total is None else total + batch_sum
            n_rows += x.shape[0]
        self.train(was_training)
        if total is None:
            raise ValueError("Deep SVDD initialize needs at least one batch of training rows")
        center = total / n_rows
        eps = 0.1
        small = center.abs() < eps
        center[small & (center < 0)] = -eps
        center[small & (center >= 0)] = eps
        self.center.copy_(center)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        embedding: torch.Tensor = self.network(x).float()
        return (embedding - self.center).square().sum(dim=1).mean()

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        layers = fold(self.network)
        return lambda x: (run_folded(x, layers).float() - self.center).square().sum(dim=1)


class DAGMMNet(nn.Module):
    """Deep autoencoding Gaussian mixture model (Zong et al., 2018).

    A compression autoencoder gives a low-dimensional code plus two reconstruction
    features (relative Euclidean distance, cosine similarity); an estimation network
    assigns soft memberships to ``n_components`` Gaussians whose parameters are
    computed from the batch. Score = sample energy (negative log-likelihood) under the
    mixture estimated from the whole training set after training.
    """

    #: jitter added to the covariance diagonals before the Cholesky factorisation
    COV_JITTER = 1e-4
    # registered buffers: the mixture estimated from all training rows by finalize()
    mixture_weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor

    def __init__(
        self,
        n_features: int,
        hidden_neurons: Sequence[int],
        latent_dim: int,
        estimation_neurons: int,
        n_components: int,
        dropout_rate: float,
        lambda_energy: float,
        lambda_cov: float,
    ) -> None:
        super().__init__()
        hidden = list(hidden_neurons)
        self.lambda_energy = lambda_energy
        self.lambda_cov = lambda_cov
        self.encoder = _mlp(
            [n_features, *hidden, latent_dim], batch_norm=False, dropout_rate=0.0, activation="tanh"
        )
        self.decoder = _mlp(
            [latent_dim, *hidden[::-1], n_features],
            batch_norm=False,
            dropout_rate=0.0,
            activation="tanh",
        )
        n_z = latent_dim + 2
        self.estimation = nn.Sequential(
            nn.Linear(n_z, estimation_neurons),
            nn.Tanh(),
            nn.Dropout(dropout_rate),
            nn.Linear(estimation_neurons, n_components),
        )
        self.register_buffer("mixture_weights", torch.full((n_components,), 1.0 / n_components))
        self.register_buffer("means", torch.zeros(n_components, n_z))
        self.register_buffer("covariances", torch.eye(n_z).repeat(n_components, 1, 1))

    def _code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction and the mixture input ``z`` = [code, relative distance, cosine], float32."""
        code = self.encoder(x)
        x_hat = self.decoder(code).float()
        relative = torch.linalg.vector_norm(x - x_hat, dim=1) / torch.linalg.vector_norm(
            x, dim=1
        ).clamp_min(1e-6)
        cosine = F.cosine_similarity(x, x_hat, dim=1, eps=1e-6)
        return x_hat, torch.cat([code.float(), relative[:, None], cosine[:, None]], dim=1)

    @staticmethod
    def _mixture(
        z: torch.Tensor, gamma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mass = gamma.sum(dim=0).clamp_min(1e-12)
        means = gamma.t() @ z / mass[:, None]
        centered = z[:, None, :] - means[None]
        covariances = (
            torch.einsum("nk,nki,nkj->kij", gamma, centered, centered) / mass[:, None, None]
        )
        return mass / z.shape[0], means, covariances

    def _energy(
        self, z: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor
    ) -> torch.Tensor:
        n_z = z.shape[1]
        eye = torch.eye(n_z, dtype=z.dtype, device=z.device)
        chol = torch.linalg.cholesky(covariances + self.COV_JITTER * eye)
        centered = (z[None, :, :] - means[:, None, :]).transpose(1, 2)  # (k, n_z, n)
        solved = torch.linalg.solve_triangular(chol, centered, upper=False)
        mahalanobis = solved.square().sum(dim=1)  # (k, n)
        log_det = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(dim=1)
        log_prob = torch.log(weights.clamp_min(1e-12))[:, None] - 0.5 * (
            mahalanobis + log_det[:, None] + n_z * math.log(2.0 * math.pi)
        )
        return -torch.logsumexp(log_prob, dim=0)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        x_hat, z = self._code(x)
        with torch.autocast(x.device.type, enabled=False):
            gamma = torch.softmax(self.estimation(z).float(), dim=1)
            weights, means, covariances = self._mixture(z, gamma)
            energy = self._energy(z, weights, means, covariances).mean()
            cov_penalty = (1.0 / torch.diagonal(covariances, dim1=1, dim2=2).clamp_min(1e-12)).sum()
            reconstruction = (x_hat - x).square().sum(dim=1).mean()
            return reconstruction + self.lambda_energy * energy + self.lambda_cov * cov_penalty

    @torch.no_grad()
    def finalize(self, batches: Iterable[torch.Tensor]) -> None:
        """Estimate the mixture from all training rows and store it in the buffers.

        Sums are accumulated in float64 on the CPU (MPS has no float64).
        """
        sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        n_rows = 0
        for x in batches:
            _, z = self._code(x)
            gamma = torch.softmax(self.estimation(z).float(), dim=1).cpu().double()
            z = z.cpu().double()
            batch_mass, batch_sum = gamma.sum(dim=0), gamma.t() @ z
            batch_outer = torch.einsum("nk,ni,nj->kij", gamma, z, z)
            if sums is None:
                sums = (batch_mass, batch_sum, batch_outer)
            else:
                sums = (sums[0] + batch_mass, sums[1] + batch_sum, sums[2] + batch_outer)
            n_rows += x.shape[0]
        if sums is None:
            raise ValueError("DAGMM finalize needs at least one batch of training rows")
        mass, weighted_sum, weighted_outer = sums
        mass = mass.clamp_min(1e-12)
        means = weighted_sum / mass[:, None]
        covariances = weighted_outer / mass[:, None, None] - means[:, :, None] * means[:, None, :]
        self.mixture_weights.copy_(mass / n_rows)
        self.means.copy_(means)
        self.covariances.copy_(covariances)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        _, z = self._code(x)
        with torch.autocast(x.device.type, enabled=False):
            return self._energy(z, self.mixture_weights, self.means, self.covariances)

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return self._score

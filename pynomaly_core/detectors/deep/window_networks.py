"""The torch networks behind the window detectors (imported only when one runs).

Every network takes a batch of standardized windows, float32 of shape
``(batch, n_features, window_size)`` (channels first, the layout ``Conv1d`` reads), and
implements the interface of :mod:`pynomaly_core.detectors.deep.torch_networks`:

* ``loss(windows)`` — mean squared reconstruction error of the batch;
* ``scorer()`` — a function mapping a batch of windows to one score per window, the root
  mean squared reconstruction error over the window's rows and features (eval mode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F


def _window_rmse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Root mean squared error per window, computed in float32; shape ``(batch,)``."""
    return (x_hat.float() - x.float()).square().mean(dim=(1, 2)).sqrt()


class _WindowAutoEncoder(nn.Module):
    """Reconstruction loss and window scorer shared by the window autoencoders."""

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self(x).float(), x.float())

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: _window_rmse(x, self(x))


class ConvAENet(_WindowAutoEncoder):
    """1-D convolutional autoencoder over a window (the SKAB Conv-AE architecture).

    Encoder: ``Conv1d(stride 2) -> ReLU [-> Dropout]`` per entry of ``channels``, halving the
    length each time; decoder: the mirror image with ``ConvTranspose1d(stride 2)`` doubling it,
    then a ``Conv1d`` back to ``n_features`` channels. The output is cropped to the window's
    length (the round trip rounds odd lengths up).
    """

    def __init__(
        self,
        n_features: int,
        window_size: int,
        channels: Sequence[int],
        kernel_size: int,
        dropout_rate: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        pad = kernel_size // 2
        encoder: list[nn.Module] = []
        c_in = n_features
        for i, c_out in enumerate(channels):
            encoder += [nn.Conv1d(c_in, c_out, kernel_size, stride=2, padding=pad), nn.ReLU()]
            if dropout_rate > 0 and i < len(channels) - 1:
                encoder.append(nn.Dropout(dropout_rate))
            c_in = c_out
        decoder: list[nn.Module] = []
        for i, c_out in enumerate(list(channels)[::-1]):
            decoder += [
                nn.ConvTranspose1d(
                    c_in, c_out, kernel_size, stride=2, padding=pad, output_padding=1
                ),
                nn.ReLU(),
            ]
            if dropout_rate > 0 and i < len(channels) - 1:
                decoder.append(nn.Dropout(dropout_rate))
            c_in = c_out
        decoder.append(nn.Conv1d(c_in, n_features, kernel_size, padding=pad))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast("torch.Tensor", self.decoder(self.encoder(x))[..., : self.window_size])


class LSTMAENet(_WindowAutoEncoder):
    """Sequence-to-sequence LSTM autoencoder over a window.

    The encoder LSTM reads the window's rows in time order; its last hidden state (the
    code, ``hidden_size`` wide) is repeated once per row and the decoder LSTM, followed by a
    linear layer, reconstructs the window from it.
    """

    def __init__(
        self,
        n_features: int,
        window_size: int,
        hidden_size: int,
        n_layers: int,
        dropout_rate: float,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        between = dropout_rate if n_layers > 1 else 0.0  # LSTM dropout acts between layers only
        self.encoder = nn.LSTM(n_features, hidden_size, n_layers, batch_first=True, dropout=between)
        self.decoder = nn.LSTM(
            hidden_size, hidden_size, n_layers, batch_first=True, dropout=between
        )
        self.output = nn.Linear(hidden_size, n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 recurrences under any autocast: reduced-precision LSTM kernels differ by GPU
        with torch.autocast(x.device.type, enabled=False):
            rows = x.float().transpose(1, 2).contiguous()  # (batch, window, features)
            _, (hidden, _) = self.encoder(rows)
            repeated = hidden[-1].unsqueeze(1).expand(-1, self.window_size, -1).contiguous()
            decoded, _ = self.decoder(repeated)
            return cast("torch.Tensor", self.output(decoded).transpose(1, 2))

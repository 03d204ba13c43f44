"""The 3D convolutional variational autoencoder (pure PyTorch)."""

import math

import torch
from torch import nn

__all__ = ["CVAE3D"]


class CVAE3D(nn.Module):
    """3D convolutional VAE for spectrum-image patches.

    The input is a patch of ``k x k`` pixels by ``n_channels`` energy channels,
    seen as a one-channel Conv3d volume ``(batch, 1, k, k, n_channels)``. The
    first Conv3d layer spans the whole patch spatially, so the spatial
    neighbourhood informs the encoding; the next ones convolve along energy.
    The decoder returns the centre pixel's spectrum as logits over the energy
    channels (a softmax of them is the spectral shape; the pixel's total
    counts set the scale).

    Parameters
    ----------
    n_channels : int
        Number of energy channels.
    latent_dim : int
        Size of the latent space.
    patch_size : int
        Side ``k`` of the square pixel patch (odd).
    hidden_channels : tuple of int
        Feature channels of the three encoder (and decoder) stages.
    log_mean_spectrum : torch.Tensor, optional
        Log of the mean spectral shape; initialises the output bias so that
        the network learns only the deviations from it.
    input_mean, input_std : torch.Tensor, optional
        Per-channel mean and standard deviation of the input patches; the
        encoder standardises its input with them, so that the small
        differences between spectra are of order one.
    """

    def __init__(
        self,
        n_channels,
        latent_dim,
        patch_size=3,
        hidden_channels=(16, 32, 32),
        log_mean_spectrum=None,
        input_mean=None,
        input_std=None,
    ):
        super().__init__()
        c1, c2, c3 = hidden_channels
        k = patch_size
        self.n_channels = n_channels
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv3d(1, c1, (k, k, 7), stride=(1, 1, 2), padding=(0, 0, 3)),
            nn.SiLU(),
            nn.Conv3d(c1, c2, (1, 1, 5), stride=(1, 1, 2), padding=(0, 0, 2)),
            nn.SiLU(),
            nn.Conv3d(c2, c3, (1, 1, 5), stride=(1, 1, 2), padding=(0, 0, 2)),
            nn.SiLU(),
            nn.Flatten(),
        )
        reduced = n_channels
        for _ in range(3):
            reduced = math.ceil(reduced / 2)
        self._reduced = reduced
        self._c3 = c3
        self.to_latent = nn.Linear(c3 * reduced, 2 * latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, c3 * reduced), nn.SiLU())
        up = dict(kernel_size=(1, 1, 4), stride=(1, 1, 2), padding=(0, 0, 1))
        self.decoder = nn.Sequential(
            nn.ConvTranspose3d(c3, c2, **up),
            nn.SiLU(),
            nn.ConvTranspose3d(c2, c1, **up),
            nn.SiLU(),
            nn.ConvTranspose3d(c1, 1, **up),
        )
        bias = torch.zeros(n_channels)
        if log_mean_spectrum is not None:
            bias = torch.as_tensor(log_mean_spectrum, dtype=torch.float32).clone()
        self.output_bias = nn.Parameter(bias)
        mean = torch.zeros(n_channels) if input_mean is None else input_mean
        std = torch.ones(n_channels) if input_std is None else input_std
        self.register_buffer("input_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("input_std", torch.as_tensor(std, dtype=torch.float32))

    def encode(self, patches):
        """Return the posterior mean and log-variance of each patch.

        Parameters
        ----------
        patches : torch.Tensor
            Shape ``(batch, k, k, n_channels)``.

        Returns
        -------
        mean, log_var : torch.Tensor
            Each of shape ``(batch, latent_dim)``.
        """
        # Clamped: one extreme channel (a spike) cannot swamp the encoding.
        x = ((patches - self.input_mean) / self.input_std).clamp(-10.0, 10.0)
        h = self.encoder(x.unsqueeze(1))
        mean, log_var = self.to_latent(h).chunk(2, dim=-1)
        return mean, log_var.clamp(-12.0, 8.0)

    def decode(self, z):
        """Return the logits over energy channels for latent points ``z``."""
        h = self.from_latent(z).view(-1, self._c3, 1, 1, self._reduced)
        logits = self.decoder(h).flatten(1)[:, : self.n_channels]
        return logits + self.output_bias

    def forward(self, patches, sample=True):
        """Encode, sample (when ``sample``) and decode.

        Returns
        -------
        logits, mean, log_var : torch.Tensor
        """
        mean, log_var = self.encode(patches)
        z = mean
        if sample:
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return self.decode(z), mean, log_var

"""The 3D convolutional variational autoencoder (pure PyTorch)."""

import math

import torch
from torch import nn

__all__ = ["CVAE3D"]


class CVAE3D(nn.Module):
    """3D convolutional VAE for spectrum-image patches.

    The input is a patch of ``k x k`` pixels by ``n_input_channels`` energy
    channels. The first convolution spans the whole patch spatially and 7
    channels in energy, so the spatial neighbourhood informs the encoding; the
    next ones convolve along energy. A 3D convolution whose kernel covers the
    whole patch is the same operation as a 1D convolution over energy with
    the ``k x k`` pixels as input channels, which is how it is computed (two
    to three times faster on a CPU). The decoder, a small perceptron, returns
    the centre pixel's spectrum as logits over the ``n_channels`` energy
    channels (a softmax of them is the spectral shape; the pixel's total
    counts set the scale).

    Parameters
    ----------
    n_channels : int
        Number of energy channels of the reconstruction.
    latent_dim : int
        Size of the latent space.
    patch_size : int
        Side ``k`` of the square pixel patch (odd).
    hidden_channels : tuple of int
        Feature channels of the three encoder stages; the decoder's two
        hidden layers have ``4 * hidden_channels[2]`` and
        ``8 * hidden_channels[2]`` units.
    n_input_channels : int, optional
        Number of energy channels the encoder sees (fewer than
        ``n_channels`` when the input is binned in energy; see
        :class:`hyperspy_vae.cube.SpectrumCube`). Default ``n_channels``.
    log_mean_spectrum : torch.Tensor, optional
        Log of the mean spectral shape; initialises the output bias so that
        the network learns only the deviations from it.
    input_mean, input_std : torch.Tensor, optional
        Per-channel mean and standard deviation of the input patches; the
        encoder standardises its input with them, so that the small
        differences between spectra are of order one.
    output_blur : float, default 0.0
        Width (standard deviation, channels) of a Gaussian blur of the
        output logits: with fine channels (0.025 eV), a reconstruction
        learned from noisy counts is otherwise jagged from channel to
        channel, and its energy derivative, which aligns and tests it, is
        mostly that noise.
    """

    def __init__(
        self,
        n_channels,
        latent_dim,
        patch_size=3,
        hidden_channels=(16, 32, 32),
        n_input_channels=None,
        log_mean_spectrum=None,
        input_mean=None,
        input_std=None,
        output_blur=0.0,
    ):
        super().__init__()
        c1, c2, c3 = hidden_channels
        n_in = n_channels if n_input_channels is None else n_input_channels
        self.n_channels = n_channels
        self.n_input_channels = n_in
        self.latent_dim = latent_dim
        self.patch_size = patch_size
        self.encoder = nn.Sequential(
            nn.Conv1d(patch_size**2, c1, 7, stride=2, padding=3),
            nn.SiLU(),
            nn.Conv1d(c1, c2, 5, stride=2, padding=2),
            nn.SiLU(),
            nn.Conv1d(c2, c3, 5, stride=2, padding=2),
            nn.SiLU(),
            nn.Flatten(),
        )
        reduced = n_in
        for _ in range(3):
            reduced = math.ceil(reduced / 2)
        self.to_latent = nn.Linear(c3 * reduced, 2 * latent_dim)
        last = nn.Linear(8 * c3, n_channels)
        # Zero output weights: training starts from the mean spectrum.
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 4 * c3),
            nn.SiLU(),
            nn.Linear(4 * c3, 8 * c3),
            nn.SiLU(),
            last,
        )
        bias = torch.zeros(n_channels)
        if log_mean_spectrum is not None:
            bias = torch.as_tensor(log_mean_spectrum, dtype=torch.float32).clone()
        self.output_bias = nn.Parameter(bias)
        mean = torch.zeros(n_in) if input_mean is None else input_mean
        std = torch.ones(n_in) if input_std is None else input_std
        self.register_buffer("input_mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("input_std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer(
            "output_blur", torch.as_tensor(float(output_blur), dtype=torch.float32)
        )

    def encode(self, patches):
        """Return the posterior mean and log-variance of each patch.

        Parameters
        ----------
        patches : torch.Tensor
            Shape ``(batch, k, k, n_input_channels)`` or
            ``(batch, k * k, n_input_channels)``.

        Returns
        -------
        mean, log_var : torch.Tensor
            Each of shape ``(batch, latent_dim)``.
        """
        x = patches.reshape(len(patches), self.patch_size**2, self.n_input_channels)
        # Clamped: one extreme channel (a spike) cannot swamp the encoding.
        x = ((x - self.input_mean) / self.input_std).clamp(-10.0, 10.0)
        mean, log_var = self.to_latent(self.encoder(x)).chunk(2, dim=-1)
        return mean, log_var.clamp(-12.0, 8.0)

    def decode(self, z):
        """Return the logits over energy channels for latent points ``z``."""
        logits = self.decoder(z) + self.output_bias
        sigma = float(self.output_blur)
        if sigma <= 0.05:
            return logits
        radius = int(3 * sigma + 0.5)
        kernel = [math.exp(-0.5 * (x / sigma) ** 2) for x in range(-radius, radius + 1)]
        total = sum(kernel)
        kernel = [k / total for k in kernel]
        padded = nn.functional.pad(logits[:, None], (radius, radius), mode="replicate")
        padded = padded[:, 0]
        # A weighted sum of shifted copies: the same filter as a convolution,
        # whose gradient on a CPU costs several times more for one channel.
        n = logits.shape[-1]
        blurred = padded[:, :n] * kernel[0]
        for j in range(1, len(kernel)):
            blurred = blurred + padded[:, j : j + n] * kernel[j]
        return blurred

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

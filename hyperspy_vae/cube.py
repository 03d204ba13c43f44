"""The spectrum cube the network sees, and its patches (pure numpy)."""

import math

import numpy as np

__all__ = ["SpectrumCube", "input_binning"]

#: Pixels per block when the encoder input is precomputed (bounds temporaries).
_BLOCK_PIXELS = 4096


def input_binning(n_channels, max_encoder_channels):
    """Energy binning factor of the encoder input.

    The encoder sees at most ``max_encoder_channels`` channels: finer
    spectra are summed over ``ceil(n_channels / max_encoder_channels)``
    adjacent channels before they enter it (the reconstruction and every
    score keep the full resolution). This keeps the cost of the encoder
    fixed as spectra get longer.

    Parameters
    ----------
    n_channels : int
        Number of energy channels of the data.
    max_encoder_channels : int
        Most channels the encoder sees.

    Returns
    -------
    int
        The binning factor (1 for no binning).
    """
    return max(1, math.ceil(n_channels / max_encoder_channels))


class SpectrumCube:
    """Counts of a spectrum image as a stack of maps, with patch extraction.

    Parameters
    ----------
    counts : numpy.ndarray
        Shape ``(n_maps, rows, columns, n_channels)``, any real dtype; every
        navigation dimension beyond two is folded into ``n_maps``; a line scan
        has one row. It is not copied and never modified. Negative values
        (dark-subtraction noise) are clipped to zero where the network and the
        likelihood see them.
    patch_size : int
        Side of the square patch around each pixel; pixels beyond the map's
        border repeat the nearest edge pixel.
    input_bin : int, default 1
        Number of adjacent energy channels summed into one channel of the
        encoder input (see :func:`input_binning`).

    Notes
    -----
    The encoder input of every pixel is computed once, block by block: the
    square root of the (binned) spectrum divided by the pixel's median count
    per channel. It takes ``1 / input_bin`` of the memory of a float32 copy
    of ``counts``.
    """

    def __init__(self, counts, patch_size, input_bin=1):
        if counts.ndim != 4:
            raise ValueError("counts must have shape (n_maps, rows, columns, channels)")
        self.counts = counts
        self.patch_size = patch_size
        self.input_bin = int(input_bin)
        n_maps, rows, cols, n_channels = counts.shape
        self.n_input_channels = math.ceil(n_channels / self.input_bin)
        half = patch_size // 2
        self._offsets = np.arange(-half, half + 1)
        # A view for C-contiguous data (a single copy otherwise).
        self._flat = flat = counts.reshape(-1, n_channels)
        totals = np.empty(len(flat), dtype=np.float32)
        scale = np.empty(len(flat), dtype=np.float32)
        inputs = np.empty((len(flat), self.n_input_channels), dtype=np.float32)
        for start in range(0, len(flat), _BLOCK_PIXELS):
            block = slice(start, start + _BLOCK_PIXELS)
            totals[block], scale[block], inputs[block] = self._encoder_input(
                flat[block]
            )
        self.totals = totals.reshape(n_maps, rows, cols)
        self.scale = scale.reshape(n_maps, rows, cols)
        # Edge-padded, so a patch near the border repeats the edge pixels.
        self._inputs = np.pad(
            inputs.reshape(n_maps, rows, cols, -1),
            ((0, 0), (half, half), (half, half), (0, 0)),
            mode="edge",
        )

    def _encoder_input(self, spectra):
        """Totals, 1 / level and the encoder input of a block of spectra."""
        n_channels = spectra.shape[-1]
        clipped = np.clip(spectra, 0, None).astype(np.float32, copy=False)
        totals = clipped.sum(axis=-1, dtype=np.float64)
        pad = self.n_input_channels * self.input_bin - n_channels
        if self.input_bin > 1:
            if pad:
                # The last bin repeats its last channel, so it is not dimmer.
                clipped = np.pad(clipped, ((0, 0), (0, pad)), mode="edge")
            clipped = clipped.reshape(len(clipped), -1, self.input_bin).mean(axis=-1)
        # Each spectrum is divided by its median count per (binned) channel
        # (its mean where the median is zero), so the network sees shapes,
        # not intensities (thickness, dose), and a cosmic-ray spike in one
        # channel does not squash the rest of the spectrum.
        level = np.median(clipped, axis=-1)
        level = np.where(level > 0, level, totals / n_channels)
        scale = (1.0 / np.maximum(level, 1e-3)).astype(np.float32)
        return totals, scale, np.sqrt(clipped * scale[:, None])

    @property
    def n_pixels(self):
        """Number of pixels (all maps together)."""
        return int(np.prod(self.counts.shape[:3]))

    @property
    def n_channels(self):
        """Number of energy channels."""
        return self.counts.shape[-1]

    def centre_counts(self, flat_index):
        """Counts of the pixels ``flat_index``, float32 ``(batch, n_channels)``."""
        flat_index = np.asarray(flat_index)
        flat = self._flat
        n = flat_index.size
        if (
            n
            and flat_index[-1] - flat_index[0] == n - 1
            and np.all(np.diff(flat_index) == 1)
        ):
            # A run of consecutive pixels (scoring): a slice, no gather.
            selected = flat[flat_index[0] : flat_index[0] + n]
        else:
            selected = flat.take(flat_index, axis=0)
        return np.clip(selected, 0, None).astype(np.float32, copy=False)

    def patches(self, flat_index):
        """Encoder input of the patches around the pixels ``flat_index``.

        Returns
        -------
        numpy.ndarray
            float32 of shape ``(batch, k, k, n_input_channels)``: the square
            root of each (binned) spectrum divided by its median count per
            channel.
        """
        m, y, x = np.unravel_index(flat_index, self.counts.shape[:3])
        half = self.patch_size // 2
        yy = (y[:, None] + half + self._offsets)[:, :, None]
        xx = (x[:, None] + half + self._offsets)[:, None, :]
        return self._inputs[m[:, None, None], yy, xx]

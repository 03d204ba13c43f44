"""The spectrum cube the network sees, and its patches (pure numpy)."""

import numpy as np

__all__ = ["SpectrumCube"]


class SpectrumCube:
    """Counts of a spectrum image as a stack of maps, with patch extraction.

    Parameters
    ----------
    counts : numpy.ndarray
        Shape ``(n_maps, rows, columns, n_channels)``: every navigation
        dimension beyond two is folded into ``n_maps``; a line scan has one row.
        Negative values (dark-subtraction noise) are clipped to zero where the
        network and the likelihood see them.
    patch_size : int
        Side of the square patch around each pixel; pixels beyond the map's
        border repeat the nearest edge pixel.
    """

    def __init__(self, counts, patch_size):
        if counts.ndim != 4:
            raise ValueError("counts must have shape (n_maps, rows, columns, channels)")
        self.counts = counts
        self.patch_size = patch_size
        clipped = np.clip(counts, 0, None)
        totals = clipped.sum(axis=-1, dtype=np.float64)
        self.totals = totals.astype(np.float32)
        n_channels = counts.shape[-1]
        # Each pixel's spectrum is divided by its median count per channel (its
        # mean where the median is zero), so the network sees shapes, not
        # intensities (thickness, dose), and a cosmic-ray spike in one channel
        # does not squash the rest of the spectrum.
        level = np.median(clipped, axis=-1)
        level = np.where(level > 0, level, totals / n_channels)
        self.scale = (1.0 / np.maximum(level, 1e-3)).astype(np.float32)
        half = patch_size // 2
        self._offsets = np.arange(-half, half + 1)

    @property
    def n_pixels(self):
        """Number of pixels (all maps together)."""
        return int(np.prod(self.counts.shape[:3]))

    @property
    def n_channels(self):
        """Number of energy channels."""
        return self.counts.shape[-1]

    def centre_counts(self, flat_index):
        """Counts of the pixels ``flat_index``, shape ``(batch, n_channels)``."""
        m, y, x = np.unravel_index(flat_index, self.counts.shape[:3])
        return np.clip(self.counts[m, y, x], 0, None).astype(np.float32, copy=False)

    def patches(self, flat_index):
        """Normalised patches around the pixels ``flat_index``.

        Returns
        -------
        numpy.ndarray
            float32 of shape ``(batch, k, k, n_channels)``: the square root of
            each spectrum divided by its mean count per channel.
        """
        _, rows, cols, _ = self.counts.shape
        m, y, x = np.unravel_index(flat_index, self.counts.shape[:3])
        yy = np.clip(y[:, None] + self._offsets, 0, rows - 1)[:, :, None]
        xx = np.clip(x[:, None] + self._offsets, 0, cols - 1)[:, None, :]
        mm = m[:, None, None]
        patch = np.clip(self.counts[mm, yy, xx], 0, None)
        patch *= self.scale[mm, yy, xx][..., None]
        return np.sqrt(patch, dtype=np.float32)

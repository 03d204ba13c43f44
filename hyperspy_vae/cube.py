"""The spectrum cube the network sees, and its patches (pure numpy)."""

import math

import numpy as np

__all__ = ["SpectrumCube", "input_binning", "bin_energy", "expand_energy"]

#: Pixels per block when the encoder input is precomputed (bounds temporaries).
_BLOCK_PIXELS = 4096


def input_binning(n_channels, max_channels):
    """Energy binning factor that leaves at most ``max_channels`` channels.

    Used twice: spectra longer than ``max_channels`` are summed over this
    many adjacent channels before the model and the scores (see
    :func:`bin_energy`), and the encoder's input is averaged over this many
    channels when it would exceed ``max_encoder_channels``. Either way the
    cost stops growing with the spectrum's length.

    Parameters
    ----------
    n_channels : int
        Number of energy channels.
    max_channels : int
        Most channels wanted.

    Returns
    -------
    int
        ``ceil(n_channels / max_channels)``, at least 1 (no binning).
    """
    return max(1, math.ceil(n_channels / max_channels))


def bin_energy(counts, factor):
    """Sum adjacent energy channels in groups of ``factor``.

    Summed counts are still Poisson counts, so the likelihood and the scores
    apply unchanged. The last bin sums the channels left over (fewer than
    ``factor`` when the length is not a multiple).

    Parameters
    ----------
    counts : numpy.ndarray or dask.array.Array
        ``(..., n_channels)``.
    factor : int
        Channels per bin; 1 returns ``counts`` itself.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(..., ceil(n_channels / factor))``, same kind and dtype.
    """
    if factor == 1:
        return counts
    n_channels = counts.shape[-1]
    n_full = n_channels // factor
    parts = [
        counts[..., : n_full * factor]
        .reshape(*counts.shape[:-1], n_full, factor)
        .sum(axis=-1, dtype=counts.dtype)
    ]
    if n_full * factor < n_channels:
        parts.append(
            counts[..., n_full * factor :].sum(
                axis=-1, keepdims=True, dtype=counts.dtype
            )
        )
    if len(parts) == 1:
        return parts[0]
    if hasattr(counts, "dask"):
        import dask.array as da

        return da.concatenate(parts, axis=-1)
    return np.concatenate(parts, axis=-1)


def expand_energy(binned, factor, n_channels):
    """Spread binned counts evenly back over ``n_channels`` channels.

    The inverse of :func:`bin_energy` for expected counts: each bin's counts
    are shared equally by its channels.
    """
    if factor == 1:
        return binned
    widths = np.full(binned.shape[-1], factor)
    widths[-1] = n_channels - factor * (binned.shape[-1] - 1)
    return np.repeat(binned / widths, widths, axis=-1)


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
        Number of adjacent energy channels averaged into one channel of the
        encoder input (see :func:`input_binning`).
    noise : hyperspy_vae.noise.NoiseModel, optional
        The readings' noise model: the network and the scores see effective
        counts (variance equal to mean, see
        :meth:`~hyperspy_vae.noise.NoiseModel.effective_counts`). Default:
        the readings are Poisson counts.
    max_shift : int, default 0
        Largest energy offset of a spectrum (drift), in channels, searched
        when aligning spectra on their reconstructions.
    dispersion : float, default 1.0
        Energy per channel (of ``counts``, after any binning), in eV.

    Notes
    -----
    The encoder input of every pixel is computed once, block by block: the
    square root of the (binned) spectrum divided by the pixel's median count
    per channel, kept in half precision. It takes ``1 / (2 input_bin)`` of
    the memory of a float32 copy of ``counts``.
    """

    def __init__(
        self, counts, patch_size, input_bin=1, noise=None, max_shift=0, dispersion=1.0
    ):
        if counts.ndim != 4:
            raise ValueError("counts must have shape (n_maps, rows, columns, channels)")
        self.counts = counts
        self.noise = noise
        self.max_shift = int(max_shift)
        self.dispersion = float(dispersion)
        self.lazy = hasattr(counts, "dask")
        self.patch_size = patch_size
        self.input_bin = int(input_bin)
        n_maps, rows, cols, n_channels = counts.shape
        self.n_input_channels = math.ceil(n_channels / self.input_bin)
        half = self.patch_size // 2
        self._offsets = np.arange(-half, half + 1)
        # Spectra fetched from a lazy cube, by flat pixel index (sorted).
        self._cached_index = np.zeros(0, dtype=np.int64)
        self._cached_counts = np.zeros((0, n_channels), dtype=np.float32)
        n = n_maps * rows * cols
        totals = np.empty(n, dtype=np.float32)
        scale = np.empty(n, dtype=np.float32)
        # The encoder input of every pixel, edge-padded so that a patch near
        # the border repeats the edge pixels. Half precision: its rounding
        # (1e-3) is far below the Poisson noise of the input, and it halves
        # what stays in memory.
        padded = np.empty(
            (n_maps, rows + 2 * half, cols + 2 * half, self.n_input_channels),
            dtype=np.float16,
        )
        for (m, y0, y1, x0, x1), flat_index, block in self.blocks():
            block_inputs = np.empty((len(block), self.n_input_channels), np.float16)
            for offset in range(0, len(block), _BLOCK_PIXELS):
                part = block[offset : offset + _BLOCK_PIXELS]
                where = flat_index[offset : offset + len(part)]
                totals[where], scale[where], inputs = self._encoder_input(part)
                block_inputs[offset : offset + len(part)] = inputs
            padded[m, half + y0 : half + y1, half + x0 : half + x1] = (
                block_inputs.reshape(y1 - y0, x1 - x0, -1)
            )
        for i in range(half):
            padded[:, i] = padded[:, half]
            padded[:, half + rows + i] = padded[:, half + rows - 1]
        for i in range(half):
            padded[:, :, i] = padded[:, :, half]
            padded[:, :, half + cols + i] = padded[:, :, half + cols - 1]
        self._inputs = padded
        self.totals = totals.reshape(n_maps, rows, cols)
        self.scale = scale.reshape(n_maps, rows, cols)

    def _block_edges(self):
        """Row and column edges of the blocks the cube is read in."""
        _, rows, cols, _ = self.counts.shape
        if self.lazy:
            return (
                np.cumsum((0,) + self.counts.chunks[1]),
                np.cumsum((0,) + self.counts.chunks[2]),
            )
        row_edges = np.arange(0, rows + 1, max(1, _BLOCK_PIXELS // cols))
        return np.unique(np.append(row_edges, rows)), np.array([0, cols])

    def blocks(self, maps=None):
        """Iterate over the cube block by block.

        A numpy cube yields views of a few whole rows; a dask cube is read
        one chunk at a time, so no more than a chunk of it is ever in memory.

        Parameters
        ----------
        maps : iterable of int, optional
            Only these maps (default all).

        Yields
        ------
        where : tuple
            ``(m, y0, y1, x0, x1)``: the block's map, rows and columns.
        flat_index : numpy.ndarray of int
            Flat indices of the block's pixels, in the order of ``spectra``.
        spectra : numpy.ndarray
            ``(n_block_pixels, n_channels)`` float32 effective counts (see
            :meth:`effective`).
        """
        n_maps, rows, cols, n_channels = self.counts.shape
        row_edges, col_edges = self._block_edges()
        for m in range(n_maps) if maps is None else maps:
            for y0, y1 in zip(row_edges[:-1], row_edges[1:], strict=True):
                for x0, x1 in zip(col_edges[:-1], col_edges[1:], strict=True):
                    block = self.counts[m, y0:y1, x0:x1]
                    if self.lazy:
                        block = np.asarray(block.compute())
                    yy, xx = np.mgrid[y0:y1, x0:x1]
                    flat_index = ((m * rows + yy) * cols + xx).ravel()
                    yield (
                        (m, y0, y1, x0, x1),
                        flat_index,
                        self.effective(block.reshape(-1, n_channels)),
                    )

    def prefetch(self, flat_index):
        """Read the spectra of the pixels ``flat_index`` of a lazy cube.

        Random access (training batches) then needs no further reading; a
        chunk is read only when it holds pixels not fetched yet. Nothing
        happens for a numpy cube.
        """
        if not self.lazy:
            return
        wanted = np.setdiff1d(np.asarray(flat_index), self._cached_index)
        if wanted.size == 0:
            return
        _, rows, cols, _ = self.counts.shape
        m, y, x = np.unravel_index(wanted, self.counts.shape[:3])
        row_edges, col_edges = self._block_edges()
        block_id = set(
            zip(
                m.tolist(),
                (np.searchsorted(row_edges, y, side="right") - 1).tolist(),
                (np.searchsorted(col_edges, x, side="right") - 1).tolist(),
                strict=True,
            )
        )
        index, spectra = [], []
        for bm, by, bx in sorted(block_id):
            y0, y1 = row_edges[by], row_edges[by + 1]
            x0, x1 = col_edges[bx], col_edges[bx + 1]
            block = np.asarray(self.counts[bm, y0:y1, x0:x1].compute())
            here = (m == bm) & (y >= y0) & (y < y1) & (x >= x0) & (x < x1)
            spectra.append(block[y[here] - y0, x[here] - x0].astype(np.float32))
            index.append(wanted[here])
        index = np.concatenate([self._cached_index, *index])
        spectra = np.concatenate([self._cached_counts, *spectra])
        order = np.argsort(index, kind="stable")
        self._cached_index, self._cached_counts = index[order], spectra[order]

    def effective(self, spectra):
        """Readings as float32 effective counts (non-negative).

        Raises
        ------
        ValueError
            If there are non-finite values.
        """
        if not np.isfinite(spectra).all():
            raise ValueError(
                "The data contain non-finite values (NaN or inf); replace or mask "
                "them first (navigation_mask, signal_mask)."
            )
        if self.noise is None:
            return np.clip(spectra, 0, None).astype(np.float32, copy=False)
        return self.noise.effective_counts(spectra)

    def _encoder_input(self, clipped):
        """Totals, 1 / level and the encoder input of a block of spectra."""
        n_channels = clipped.shape[-1]
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
        """Effective counts of the pixels ``flat_index``, float32 ``(batch, n_channels)``."""
        flat_index = np.asarray(flat_index)
        if self.lazy:
            where = np.searchsorted(self._cached_index, flat_index)
            where = np.minimum(where, max(len(self._cached_index) - 1, 0))
            if len(self._cached_index) == 0 or np.any(
                self._cached_index[where] != flat_index
            ):
                raise RuntimeError("These pixels of the lazy cube were not prefetched.")
            selected = self._cached_counts[where]
        else:
            flat = self.counts.reshape(-1, self.n_channels)
            selected = flat.take(flat_index, axis=0)
        return self.effective(selected)

    def patches(self, flat_index):
        """Encoder input of the patches around the pixels ``flat_index``.

        Returns
        -------
        numpy.ndarray
            float16 of shape ``(batch, k, k, n_input_channels)``: the square
            root of each (binned) spectrum divided by its median count per
            channel.
        """
        m, y, x = np.unravel_index(flat_index, self.counts.shape[:3])
        half = self.patch_size // 2
        yy = (y[:, None] + half + self._offsets)[:, :, None]
        xx = (x[:, None] + half + self._offsets)[:, None, :]
        return self._inputs[m[:, None, None], yy, xx]

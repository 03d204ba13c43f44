"""What measured spectrum images have and an ideal generator lacks.

Spectrometer drift over the acquisition, plural scattering, the detector's
gain, excess noise, read noise and point-spread function, cosmic-ray spikes
and a second phase with a sharp interface: each a function of a random
generator and the map's shape, so that a synthetic map can carry any of them
with ground truth.
"""

import numpy as np
from scipy import ndimage

__all__ = [
    "DRIFT_MODES",
    "smooth_field",
    "scan_drift",
    "phase_layout",
    "anomaly_layout",
    "plural_scattering",
    "detector_counts",
    "point_spread",
    "add_spikes",
]

DRIFT_MODES = ("field", "time", "settling", "step", "jitter")
#: Bulk plasmon energy and width (eV) of the plural-scattering kernel: an iron
#: oxide's plasmon peak lies near 22-24 eV and is several eV wide.
PLASMON_ENERGY = 22.0
PLASMON_WIDTH = 6.0
#: Settling drift decays with this time constant, in scan rows.
SETTLING_ROWS = 3.0


def smooth_field(rng, shape, correlation):
    """Return a smooth random field scaled to [0, 1].

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    correlation : float
        Gaussian smoothing width as a fraction of each side.
    """
    field = rng.standard_normal(shape)
    sigma = [max(correlation * n, 0.5) for n in shape]
    field = ndimage.gaussian_filter(field, sigma=sigma, mode="wrap")
    span = field.max() - field.min()
    return (field - field.min()) / span if span > 0 else np.full(shape, 0.5)


def scan_drift(rng, nav_shape, modes):
    """Energy drift of every pixel over the acquisition, in eV.

    The scan runs row by row (the last navigation axis fastest), so a drift
    in time is a function of the raster index. The drift is added to the
    energy of each pixel's spectrum (the spectrum moves down by it).

    Parameters
    ----------
    rng : numpy.random.Generator
    nav_shape : tuple of int
        ``(n,)`` or ``(rows, columns)``.
    modes : dict
        Drift modes and their size in eV, summed:

        * ``"time"``: a smooth function of acquisition time spanning
          ``size`` eV over the scan;
        * ``"settling"``: ``size`` eV at the start, decaying exponentially
          with a time constant of :data:`SETTLING_ROWS` rows;
        * ``"step"``: a jump of ``size`` eV at a random time in the middle
          half of the scan;
        * ``"jitter"``: an independent offset per scan row, uniform in
          +-``size / 2`` eV.

    Returns
    -------
    numpy.ndarray
        ``nav_shape``, eV.
    """
    unknown = set(modes) - set(DRIFT_MODES)
    if unknown:
        raise ValueError(f"Unknown drift modes {sorted(unknown)}; use {DRIFT_MODES}.")
    n = int(np.prod(nav_shape))
    cols = nav_shape[-1]
    time = np.arange(n) / n
    row = np.arange(n) // cols
    total = np.zeros(n)
    for mode in DRIFT_MODES[1:]:
        size = float(modes.get(mode, 0.0))
        if size == 0.0:
            continue
        if mode == "time":
            coarse = smooth_field(rng, (33,), 0.15)
            total += size * (np.interp(time, np.linspace(0, 1, 33), coarse) - 0.5)
        elif mode == "settling":
            total += size * np.exp(-(np.arange(n) / cols) / SETTLING_ROWS)
        elif mode == "step":
            total += size * (time >= rng.uniform(0.25, 0.75))
        elif mode == "jitter":
            total += rng.uniform(-size / 2, size / 2, row[-1] + 1)[row]
    return total.reshape(nav_shape)


def phase_layout(rng, nav_shape, fraction):
    """Pixels of a second phase: a half-plane with a sharp, straight interface.

    Parameters
    ----------
    rng : numpy.random.Generator
    nav_shape : tuple of int
    fraction : float
        Area fraction of the second phase, in [0, 1).

    Returns
    -------
    numpy.ndarray of bool
        ``nav_shape``, True in the second phase.
    """
    if fraction <= 0:
        return np.zeros(nav_shape, dtype=bool)
    grids = [
        g - (n - 1) / 2 for g, n in zip(np.indices(nav_shape), nav_shape, strict=True)
    ]
    if len(nav_shape) == 1:
        position = grids[0] * (1 if rng.random() < 0.5 else -1)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        position = np.cos(angle) * grids[0] + np.sin(angle) * grids[1]
    # Break ties (pixels at the same distance) at random, then cut.
    order = np.lexsort((rng.random(position.size), position.ravel()))
    phase = np.zeros(position.size, dtype=bool)
    phase[order[position.size - int(round(fraction * position.size)) :]] = True
    return phase.reshape(nav_shape)


def anomaly_layout(rng, nav_shape, fraction, layout):
    """Choose the anomalous pixels: single random pixels or compact clusters."""
    n_pixels = int(np.prod(nav_shape))
    n_target = int(round(fraction * n_pixels))
    mask = np.zeros(nav_shape, dtype=bool)
    if n_target == 0:
        return mask
    if layout == "random" or len(nav_shape) == 1:
        chosen = rng.choice(n_pixels, size=n_target, replace=False)
        mask.flat[chosen] = True
        return mask
    grids = np.indices(nav_shape)
    while mask.sum() < n_target:
        centre = [rng.integers(0, n) for n in nav_shape]
        radius = rng.uniform(1.0, 2.6)
        dist2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
        blob = dist2 <= radius**2
        missing = n_target - mask.sum()
        new = blob & ~mask
        if new.sum() > missing:
            # Trim the blob to hit the target count exactly: keep its core.
            order = np.argsort(dist2[new], kind="stable")[:missing]
            idx = np.flatnonzero(new)[order]
            mask.flat[idx] = True
        else:
            mask |= blob
    return mask


def _plasmon_shape(loss):
    """Drude energy-loss function of one plasmon, unit area on the grid."""
    e = np.maximum(loss, 0.0)
    shape = (
        e
        * PLASMON_WIDTH
        * PLASMON_ENERGY**2
        / ((e**2 - PLASMON_ENERGY**2) ** 2 + (e * PLASMON_WIDTH) ** 2)
    )
    return shape / shape.sum()


def plural_scattering(single, dispersion, t_over_lambda, n_extra):
    """Convolve single-scattering spectra with their plural-scattering kernel.

    Each pixel's low-loss distribution is the Poisson series of plasmons of
    its relative thickness ``t / lambda``; its Fourier transform is
    ``exp(t / lambda (P - 1))`` with ``P`` that of one plasmon, which also
    carries the ``exp(-t / lambda)`` loss of the unscattered beam. The
    spectra must start ``n_extra`` channels below the window kept, so that
    intensity scattered up into the window from below is counted.

    Parameters
    ----------
    single : numpy.ndarray
        ``(n_pixels, n_channels)`` single-scattering spectra on a grid
        starting ``n_extra`` channels below the window.
    dispersion : float
        eV per channel.
    t_over_lambda : numpy.ndarray
        ``(n_pixels,)`` relative thickness.
    n_extra : int
        Channels below the window; the first ``n_extra`` are dropped.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels, n_channels - n_extra)``.
    """
    n = single.shape[-1]
    length = 1 << int(np.ceil(np.log2(2 * n)))
    plasmon = np.zeros(length)
    plasmon[:n] = _plasmon_shape(dispersion * np.arange(n))
    plasmon_ft = np.fft.rfft(plasmon)
    out = np.empty((single.shape[0], n - n_extra))
    block = max(1, 2**22 // length)  # bounds the temporaries to about 64 MiB
    for start in range(0, single.shape[0], block):
        part = slice(start, start + block)
        kernel_ft = np.exp(t_over_lambda[part, None] * (plasmon_ft - 1.0))
        spectrum_ft = np.fft.rfft(single[part], n=length)
        out[part] = np.fft.irfft(spectrum_ft * kernel_ft, n=length)[:, n_extra:n]
    return np.maximum(out, 0.0)


def detector_counts(rng, electrons, gain=1.0, noise_factor=1.0):
    """Detector readings of Poisson electrons, with gain and excess noise.

    Each electron gives a reading of mean ``gain`` and variance
    ``gain**2 (noise_factor - 1)`` (a gamma distribution), so the readings
    have mean ``gain * mu`` and variance ``gain * noise_factor`` times their
    mean: ``noise_factor`` is the variance-to-mean ratio at unit gain.

    Parameters
    ----------
    rng : numpy.random.Generator
    electrons : numpy.ndarray
        Expected electrons per channel.
    gain : float, default 1.0
        Counts per electron.
    noise_factor : float, default 1.0
        Excess noise factor, at least 1 (1: Poisson).

    Returns
    -------
    numpy.ndarray
        float64 readings, the shape of ``electrons``.
    """
    n = rng.poisson(electrons).astype(np.float64)
    if noise_factor > 1.0:
        k = 1.0 / (noise_factor - 1.0)
        positive = n > 0
        n[positive] = rng.gamma(n[positive] * k, 1.0 / k)
    return gain * n


def point_spread(values, sigma):
    """Blur along energy with the detector's Gaussian point-spread function.

    It correlates the noise of neighbouring channels (as binning or
    interpolation on the detector does) and blurs the spectrum alike.
    """
    if sigma <= 0:
        return values
    return ndimage.gaussian_filter1d(values, sigma, axis=-1, mode="nearest")


def add_spikes(rng, counts, expected, fraction):
    """Add cosmic-ray spikes to a ``fraction`` of the pixels.

    Each struck pixel gets a spike of 2 to 20 times its highest expected
    count, in one channel (or, one time in three, two adjacent channels).

    Parameters
    ----------
    rng : numpy.random.Generator
    counts : numpy.ndarray
        ``(n_pixels, n_channels)``, modified in place.
    expected : numpy.ndarray
        Same shape, the expected counts.
    fraction : float
        Fraction of pixels struck.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels, n_channels)`` float32 spike counts added (mostly zero).
    """
    n_pixels, n_channels = counts.shape
    spikes = np.zeros(counts.shape, dtype=np.float32)
    n_struck = int(round(fraction * n_pixels))
    if n_struck == 0:
        return spikes
    pixels = rng.choice(n_pixels, n_struck, replace=False)
    for pixel in pixels:
        channel = int(rng.integers(0, n_channels - 1))
        height = rng.uniform(2.0, 20.0) * expected[pixel].max()
        spikes[pixel, channel] = height
        if rng.random() < 1 / 3:
            spikes[pixel, channel + 1] = height * rng.uniform(0.2, 1.0)
    counts += spikes
    return spikes

"""Synthetic EELS spectrum images with known anomalies (ground truth).

The generator builds an Fe L2,3 spectrum image from analytic edge shapes (no
downloads, no generalised oscillator strength files): a power-law background,
the L3 and L2 white lines, their continuum steps, smoothly varying thickness,
Fe content and background slope, a slow energy drift along the scan (normal
variation, not an anomaly) and Poisson noise. Chosen pixels carry an anomaly:
by default their Fe L2,3 edge is shifted by ``shift`` eV.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["SyntheticTruth", "fe_l23_spectrum_image", "fe_l23_expected_spectrum"]

FE_L3 = 708.5
FE_L2 = 721.5
# Scales the expected counts at dose 1: a 0.25 eV edge shift is then near the
# detection limit (Neyman-Pearson F1 about 0.9 at 2 % anomalous pixels).
_COUNTS_PER_DOSE = 0.16
_ANOMALY_KINDS = ("shift", "peak", "missing_edge")
_LAYOUTS = ("clusters", "random")


@dataclass
class SyntheticTruth:
    """Ground truth of a synthetic spectrum image.

    Attributes
    ----------
    anomalous : numpy.ndarray of bool
        Navigation-shaped mask, True where the pixel carries an anomaly.
    expected : numpy.ndarray
        Noise-free expected counts of every pixel, as generated (anomalies
        included), shape ``navigation shape + (n_channels,)``.
    expected_normal : numpy.ndarray
        Noise-free expected counts of every pixel had it no anomaly.
    expected_anomalous : numpy.ndarray
        Noise-free expected counts of every pixel had it the anomaly.
    """

    anomalous: np.ndarray
    expected: np.ndarray
    expected_normal: np.ndarray
    expected_anomalous: np.ndarray

    def likelihood_ratio(self, counts):
        """Per-pixel Poisson log-likelihood ratio, anomalous against normal.

        With every nuisance parameter known this is the Neyman-Pearson optimal
        per-pixel detector: no method can separate the two classes better.

        Parameters
        ----------
        counts : numpy.ndarray
            Observed counts, same shape as :attr:`expected`.

        Returns
        -------
        numpy.ndarray
            Log-likelihood ratio per pixel (navigation shape); higher means
            more anomalous.
        """
        mu1 = np.maximum(self.expected_anomalous.astype(np.float64), 1e-12)
        mu0 = np.maximum(self.expected_normal.astype(np.float64), 1e-12)
        return np.sum(counts * np.log(mu1 / mu0) - (mu1 - mu0), axis=-1)


def _smooth_field(rng, shape, correlation):
    """Return a smooth random field scaled to [0, 1]."""
    field = rng.standard_normal(shape)
    sigma = [max(correlation * n, 0.5) for n in shape]
    field = ndimage.gaussian_filter(field, sigma=sigma, mode="wrap")
    span = field.max() - field.min()
    return (field - field.min()) / span if span > 0 else np.full(shape, 0.5)


def _white_line(energy, centre, width):
    """Pseudo-Voigt white line of unit height."""
    x = (energy - centre) / width
    return 0.6 / (1.0 + x**2) + 0.4 * np.exp(-0.5 * (x / 0.85) ** 2)


def _continuum_step(energy, onset, width):
    """Smoothed ionisation-edge continuum with a slow post-edge decay."""
    step = 0.5 + np.arctan((energy - onset) / width) / np.pi
    return step * np.clip(onset / energy, 0, None) ** 2


def fe_l23_expected_spectrum(
    energy, edge_shift=0.0, fe_content=1.0, thickness=1.0, slope=3.0, dose=1.0
):
    """Noise-free Fe L2,3 spectrum (expected counts per channel).

    Parameters
    ----------
    energy : numpy.ndarray
        Energy of each channel in eV, any leading shape broadcastable with the
        other parameters (which broadcast against ``energy[..., :1]``).
    edge_shift : float or numpy.ndarray, default 0.0
        Shift of the Fe L2,3 edge (white lines and continuum) in eV.
    fe_content : float or numpy.ndarray, default 1.0
        Relative Fe signal (0 removes the edge).
    thickness : float or numpy.ndarray, default 1.0
        Relative specimen thickness, scaling every count.
    slope : float or numpy.ndarray, default 3.0
        Power-law exponent of the background.
    dose : float, default 1.0
        Electron dose scale: multiplies every expected count.

    Returns
    -------
    numpy.ndarray
        Expected counts, the broadcast shape of the inputs.
    """
    e = np.asarray(energy, dtype=np.float64)
    background = 400.0 * (e / 700.0) ** (-slope)
    l3 = FE_L3 + edge_shift
    l2 = FE_L2 + edge_shift
    edge = 220.0 * (
        _continuum_step(e, l3 - 0.5, 0.6) + 0.5 * _continuum_step(e, l2 - 0.5, 0.6)
    )
    edge += 900.0 * _white_line(e, l3, 1.2) + 300.0 * _white_line(e, l2, 1.4)
    return _COUNTS_PER_DOSE * dose * thickness * (background + fe_content * edge)


def _anomaly_layout(rng, nav_shape, fraction, layout):
    """Choose the anomalous pixels."""
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


def fe_l23_spectrum_image(
    navigation_shape=(64, 64),
    shift=1.0,
    fraction=0.02,
    layout="clusters",
    dose=1.0,
    anomaly="shift",
    n_channels=320,
    dispersion=0.25,
    offset=670.0,
    drift=0.05,
    random_state=None,
):
    """Synthetic Fe L2,3 EELS spectrum image with anomalous pixels.

    Parameters
    ----------
    navigation_shape : tuple of int, default (64, 64)
        Navigation shape in array order, ``(rows, columns)`` for a map or
        ``(n,)`` for a line scan.
    shift : float, default 1.0
        Edge shift of the anomalous pixels in eV (for ``anomaly="shift"``).
    fraction : float, default 0.02
        Fraction of anomalous pixels, in [0, 1).
    layout : {"clusters", "random"}, default "clusters"
        Anomalous pixels in small compact clusters, or single random pixels.
    dose : float, default 1.0
        Dose scale: expected counts are proportional to it.
    anomaly : {"shift", "peak", "missing_edge"}, default "shift"
        Kind of anomaly: an Fe L2,3 edge shifted by ``shift`` eV, an extra
        contaminant peak near 715 eV, or a missing Fe edge.
    n_channels : int, default 320
        Number of energy channels.
    dispersion : float, default 0.25
        Energy per channel in eV.
    offset : float, default 670.0
        Energy of the first channel in eV.
    drift : float, default 0.05
        Amplitude in eV of the slow energy drift along the scan (normal).
    random_state : None, int or numpy.random.Generator
        Seed for reproducible data.

    Returns
    -------
    signal : exspy.signals.EELSSpectrum
        The noisy spectrum image (float32 counts).
    truth : SyntheticTruth
        Anomalous-pixel mask and the noise-free expected spectra.

    Examples
    --------
    >>> from hyperspy_vae.data import fe_l23_spectrum_image
    >>> s, truth = fe_l23_spectrum_image((32, 32), shift=1.0, random_state=0)
    >>> s.data.shape
    (32, 32, 320)
    """
    from exspy.signals import EELSSpectrum

    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, not {layout!r}.")
    if anomaly not in _ANOMALY_KINDS:
        raise ValueError(f"anomaly must be one of {_ANOMALY_KINDS}, not {anomaly!r}.")
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}.")
    if dose <= 0:
        raise ValueError(f"dose must be positive, not {dose}.")
    nav_shape = tuple(int(n) for n in np.atleast_1d(navigation_shape))
    if len(nav_shape) not in (1, 2) or min(nav_shape) < 1:
        raise ValueError(
            f"navigation_shape must be (n,) or (rows, columns), not {navigation_shape}."
        )
    rng = np.random.default_rng(random_state)

    energy = offset + dispersion * np.arange(n_channels)
    thickness = 0.7 + 0.6 * _smooth_field(rng, nav_shape, 0.25)
    fe_content = 0.5 + 0.5 * _smooth_field(rng, nav_shape, 0.2)
    slope = 2.8 + 0.4 * _smooth_field(rng, nav_shape, 0.3)
    energy_drift = drift * (2 * _smooth_field(rng, nav_shape, 0.4) - 1)
    anomalous = _anomaly_layout(rng, nav_shape, fraction, layout)

    def per_pixel(x):
        return x[..., None]

    e = energy - per_pixel(energy_drift)
    common = dict(thickness=per_pixel(thickness), slope=per_pixel(slope), dose=dose)
    normal = fe_l23_expected_spectrum(e, fe_content=per_pixel(fe_content), **common)
    if anomaly == "shift":
        changed = fe_l23_expected_spectrum(
            e, edge_shift=shift, fe_content=per_pixel(fe_content), **common
        )
    elif anomaly == "missing_edge":
        changed = fe_l23_expected_spectrum(e, fe_content=0.0, **common)
    else:  # an extra contaminant peak below the L2 white line
        peak = 250.0 * np.exp(-0.5 * ((e - 715.0) / 1.0) ** 2)
        changed = normal + _COUNTS_PER_DOSE * dose * per_pixel(thickness) * peak
    expected = np.where(per_pixel(anomalous), changed, normal)
    counts = rng.poisson(expected).astype(np.float32)

    axes = [
        {"name": name, "units": "nm", "scale": 1.0, "offset": 0.0, "size": n}
        for name, n in zip(("y", "x")[-len(nav_shape) :], nav_shape, strict=True)
    ]
    axes.append(
        {
            "name": "Energy loss",
            "units": "eV",
            "scale": dispersion,
            "offset": offset,
            "size": n_channels,
        }
    )
    signal = EELSSpectrum(counts, axes=axes)
    signal.metadata.General.title = "Synthetic Fe L2,3 spectrum image"
    signal.set_microscope_parameters(
        beam_energy=200.0, convergence_angle=10.0, collection_angle=20.0
    )
    truth = SyntheticTruth(
        anomalous=anomalous,
        expected=expected.astype(np.float32),
        expected_normal=normal.astype(np.float32),
        expected_anomalous=changed.astype(np.float32),
    )
    return signal, truth

"""Synthetic Fe L2,3 spectrum images with known anomalies and nuisances.

By default: analytic Fe L2,3 edges over a power-law background, smoothly
varying thickness, Fe content and background slope, a slow +-0.05 eV drift
and Poisson counts at unit gain. Options add what measured maps have (see
:mod:`hyperspy_vae.data.nuisances`): drift over the scan, detector gain,
excess and read noise, a point-spread function, plural scattering, an O K
edge, a second phase and cosmic-ray spikes. Chosen pixels carry an anomaly:
by default their Fe L2,3 edge is shifted by ``shift`` eV.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, stats

from . import nuisances
from .edges import (
    COUNTS_PER_DOSE,
    background,
    f_k_edge,
    fe_l23_edge,
    fe_l23_expected_spectrum,
    fe_metal_pre_peak,
    o_k_edge,
)

__all__ = ["SyntheticTruth", "fe_l23_spectrum_image", "low_loss_spectrum_image"]

_ANOMALY_KINDS = (
    "shift",
    "peak",
    "missing_edge",
    "pre_peak",
    "l3_l2_ratio",
    "broadening",
    "contaminant_edge",
)
#: Strength of each kind but ``"shift"`` (which takes ``shift``) by default.
DEFAULT_STRENGTHS = {
    "peak": 1.0,
    "missing_edge": 1.0,
    "pre_peak": 0.4,
    "l3_l2_ratio": 1 / 1.8,
    "broadening": 1.4,
    "contaminant_edge": 0.1,
}
_LAYOUTS = ("clusters", "random")
_EDGES = ("Fe_L23", "O_K")


@dataclass
class SyntheticTruth:
    """Ground truth of a synthetic spectrum image.

    Attributes
    ----------
    anomalous : numpy.ndarray of bool
        Navigation-shaped mask, True where the pixel carries an anomaly.
    expected : numpy.ndarray
        Noise-free expected counts of every pixel, as generated (anomalies
        included, spikes not), shape ``navigation shape + (n_channels,)``.
    expected_normal : numpy.ndarray
        Noise-free expected counts of every pixel had it no anomaly.
    expected_anomalous : numpy.ndarray
        Noise-free expected counts of every pixel had it the anomaly.
    drift : numpy.ndarray
        Navigation-shaped energy drift of each pixel in eV (the spectrum
        appears shifted up in energy by it).
    phase : numpy.ndarray of bool
        Navigation-shaped, True in the second phase.
    spikes : numpy.ndarray of bool
        Navigation-shaped, True for pixels struck by a cosmic ray.
    noise : dict
        ``gain``, ``noise_factor``, ``read_noise`` and ``psf_sigma`` of the
        detector: the counts' variance is ``gain * noise_factor * mu +
        read_noise**2`` before the point-spread function.
    """

    anomalous: np.ndarray
    expected: np.ndarray
    expected_normal: np.ndarray
    expected_anomalous: np.ndarray
    drift: np.ndarray = None
    phase: np.ndarray = None
    spikes: np.ndarray = None
    noise: dict = field(default_factory=dict)
    spike_counts: np.ndarray = field(default=None, repr=False)

    @property
    def _poisson(self):
        noise = self.noise
        return (
            noise.get("gain", 1.0) == 1.0
            and noise.get("noise_factor", 1.0) == 1.0
            and noise.get("read_noise", 0.0) == 0.0
            and noise.get("psf_sigma", 0.0) == 0.0
        )

    def _means(self):
        """Expected counts of every pixel, normal and anomalous (float64, > 0)."""
        mu0 = np.maximum(self.expected_normal.astype(np.float64), 1e-12)
        mu1 = np.maximum(self.expected_anomalous.astype(np.float64), 1e-12)
        return mu0, mu1

    def _readings(self):
        """Variance per count, read-noise variance and point-spread width."""
        noise = self.noise
        gain = noise.get("gain", 1.0) * noise.get("noise_factor", 1.0)
        return gain, noise.get("read_noise", 0.0) ** 2, noise.get("psf_sigma", 0.0)

    def _variances(self, mu0, mu1):
        """The readings' variances under the normal and the anomalous means."""
        gain, read, _ = self._readings()
        return gain * mu0 + read, gain * mu1 + read

    def likelihood_ratio(self, counts):
        """Per-pixel log-likelihood ratio, anomalous against normal.

        With every nuisance parameter known (drift, thickness, phase, the
        detector's noise, where the spikes are) this is the Neyman-Pearson
        optimal per-pixel detector: no method can separate the two classes
        better. Poisson for ideal unit-gain counts; otherwise Gaussian with
        the detector's variance, and with the point-spread function's channel
        correlations (a linear discriminant with the normal pixel's
        covariance). Spikes are removed first.

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
        y = np.asarray(counts, dtype=np.float64)
        if self.spike_counts is not None:
            y = y - self.spike_counts
        mu0, mu1 = self._means()
        if self._poisson:
            return np.sum(y * np.log(mu1 / mu0) - (mu1 - mu0), axis=-1)
        gain, read, sigma = self._readings()
        if sigma == 0:
            v0, v1 = self._variances(mu0, mu1)
            return -0.5 * np.sum(
                (y - mu1) ** 2 / v1 + np.log(v1) - (y - mu0) ** 2 / v0 - np.log(v0),
                axis=-1,
            )
        return _banded_discriminant(y, mu0, mu1, gain, read, sigma)

    def likelihood_ratio_null(self):
        """Mean and standard deviation of :meth:`likelihood_ratio` of a normal pixel.

        Each pixel's own: the ratio is a sum over channels of terms linear
        (Poisson counts, correlated channels) or quadratic (Gaussian
        readings) in its counts, whose moments under the normal hypothesis
        follow from the expected counts and the detector's variance (the
        readings' fourth moment taken as a normal's).

        Returns
        -------
        mean, std : numpy.ndarray
            Navigation-shaped each.
        """
        mu0, mu1 = self._means()
        if self._poisson:
            log_ratio = np.log(mu1 / mu0)
            mean = np.sum(mu0 * log_ratio - (mu1 - mu0), axis=-1)
            return mean, np.sqrt(np.sum(mu0 * log_ratio**2, axis=-1))
        gain, read, sigma = self._readings()
        if sigma == 0:
            v0, v1 = self._variances(mu0, mu1)
            d = mu0 - mu1
            # Per channel, with y = mu0 + e: -(e^2 (1/v1 - 1/v0) + 2 e d / v1
            # + d^2 / v1 + log(v1 / v0)) / 2.
            mean = -0.5 * np.sum(v0 / v1 - 1.0 + d**2 / v1 + np.log(v1 / v0), axis=-1)
            variance = np.sum(
                0.5 * v0**2 * (1.0 / v1 - 1.0 / v0) ** 2 + d**2 * v0 / v1**2, axis=-1
            )
            return mean, np.sqrt(variance)
        # A linear discriminant w'(y - m): its mean is its value at mu0, its
        # variance w'(mu1 - mu0), the difference of its values at mu1 and mu0.
        at_normal = _banded_discriminant(mu0, mu0, mu1, gain, read, sigma)
        at_anomalous = _banded_discriminant(mu1, mu0, mu1, gain, read, sigma)
        return at_normal, np.sqrt(np.maximum(at_anomalous - at_normal, 1e-300))

    def limit_p_values(self, counts):
        """p-values of :meth:`likelihood_ratio` under each pixel's normal hypothesis.

        The ratio standardised by :meth:`likelihood_ratio_null` (a sum over
        many channels, close to normal), one-sided: the limit's p-values,
        for a threshold rule to be tried on scores that are as good as any.

        Parameters
        ----------
        counts : numpy.ndarray
            Observed counts, same shape as :attr:`expected`.

        Returns
        -------
        numpy.ndarray
            Navigation-shaped p-values.
        """
        mean, std = self.likelihood_ratio_null()
        return stats.norm.sf((self.likelihood_ratio(counts) - mean) / std)


def _banded_discriminant(y, mu0, mu1, gain, read, sigma):
    """Linear discriminant ``d' C^-1 (y - m)`` with the blurred noise covariance.

    ``C = K diag(v) K' + read I``: the variance ``v`` of the unblurred
    readings (from the blurred means, deconvolution being ill-posed, the
    blurred mean is used: the two differ little over a PSF of a channel or
    two) spread by the PSF ``K``; banded, so each pixel costs a banded
    Cholesky solve.
    """
    n = y.shape[-1]
    radius = int(4 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    flat_y = y.reshape(-1, n)
    flat0, flat1 = mu0.reshape(-1, n), mu1.reshape(-1, n)
    bands = 2 * radius
    out = np.empty(len(flat_y))
    k_matrix = linalg.convolution_matrix(kernel, n, mode="same")
    for i in range(len(flat_y)):
        v = gain * flat0[i]
        covariance = (k_matrix * v) @ k_matrix.T + read * np.eye(n)
        banded = np.zeros((bands + 1, n))
        for b in range(bands + 1):
            banded[bands - b, b:] = np.diagonal(covariance, b)
        difference = flat1[i] - flat0[i]
        weights = linalg.solveh_banded(banded, difference)
        out[i] = weights @ (flat_y[i] - 0.5 * (flat0[i] + flat1[i]))
    return out.reshape(y.shape[:-1])


def _check(nav_shape, fraction, layout, anomaly, dose, edges, second_phase, strength):
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, not {layout!r}.")
    if anomaly not in _ANOMALY_KINDS:
        raise ValueError(f"anomaly must be one of {_ANOMALY_KINDS}, not {anomaly!r}.")
    if strength is not None:
        if anomaly == "shift":
            raise ValueError('anomaly="shift" takes its size from shift, not strength.')
        if anomaly in ("l3_l2_ratio", "broadening") and strength <= 0:
            raise ValueError(
                f"strength of {anomaly!r} must be positive, not {strength}."
            )
        if anomaly == "missing_edge" and not 0 <= strength <= 1:
            raise ValueError(
                f"strength of 'missing_edge' must be in [0, 1], not {strength}."
            )
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}.")
    if dose <= 0:
        raise ValueError(f"dose must be positive, not {dose}.")
    if len(nav_shape) not in (1, 2) or min(nav_shape) < 1:
        raise ValueError(
            f"navigation_shape must be (n,) or (rows, columns), not {nav_shape}."
        )
    unknown = set(edges) - set(_EDGES)
    if unknown or "Fe_L23" not in edges:
        raise ValueError(f"edges must include 'Fe_L23' and come from {_EDGES}.")
    if not 0 <= second_phase < 1:
        raise ValueError(f"second_phase must be in [0, 1), not {second_phase}.")


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
    *,
    edges=("Fe_L23",),
    second_phase=0.0,
    plural_scattering=None,
    gain=1.0,
    noise_factor=1.0,
    read_noise=0.0,
    psf_sigma=0.0,
    spikes=0.0,
    strength=None,
):
    """Synthetic Fe L2,3 EELS spectrum image with anomalous pixels.

    Parameters
    ----------
    navigation_shape : tuple of int, default (64, 64)
        Navigation shape in array order, ``(rows, columns)`` for a map or
        ``(n,)`` for a line scan.
    shift : float, default 1.0
        Chemical shift of the Fe L2,3 edge of the anomalous pixels in eV (for
        ``anomaly="shift"``; other edges stay).
    fraction : float, default 0.02
        Fraction of anomalous pixels, in [0, 1).
    layout : {"clusters", "random"}, default "clusters"
        Anomalous pixels in small compact clusters, or single random pixels.
    dose : float, default 1.0
        Dose scale: expected electrons are proportional to it (about 100
        per channel near the Fe L3 edge at dose 1).
    anomaly : str, default "shift"
        Kind of anomaly, its size set by ``strength`` (by ``shift`` for
        ``"shift"``):

        * ``"shift"``: the Fe L2,3 edge shifted by ``shift`` eV (a change of
          oxidation state);
        * ``"peak"``: an extra contaminant peak near 715 eV (``strength``
          scales its height, 1 by default);
        * ``"missing_edge"``: the fraction ``strength`` of the Fe edge gone
          (1, all of it, by default);
        * ``"pre_peak"``: metallic iron's L3 white line at 706.8 eV, below
          the oxide's, of height ``strength`` times the FeO L3 white line's
          (0.4 by default): a second, reduced oxidation state;
        * ``"l3_l2_ratio"``: the white lines' L3/L2 intensity ratio times
          ``strength`` (1 / 1.8 by default), their summed area kept (a change
          of valence or spin state);
        * ``"broadening"``: the white lines wider by the factor ``strength``
          (1.4 by default), their areas kept;
        * ``"contaminant_edge"``: a fluoride's F K edge from 685 eV, its
          continuum ``strength`` times the Fe L3 continuum's (0.1 by
          default).
    n_channels : int, default 320
        Number of energy channels.
    dispersion : float, default 0.25
        Energy per channel in eV.
    offset : float, default 670.0
        Energy of the first channel in eV.
    drift : float or dict, default 0.05
        Spectrometer drift (normal, not an anomaly). A float: a smooth
        spatial field of +-``drift`` eV. A dict of modes and sizes in eV,
        summed: ``"field"`` (that smooth field), ``"time"`` (smooth in
        acquisition time), ``"settling"`` (decaying from the start of the
        scan), ``"step"`` (a jump) and ``"jitter"`` (an offset per scan
        row); see :func:`hyperspy_vae.data.nuisances.scan_drift`.
    random_state : None, int or numpy.random.Generator
        Seed for reproducible data.
    edges : tuple of str, default ("Fe_L23",)
        Edges in the spectrum: ``"Fe_L23"`` and optionally ``"O_K"`` (an
        oxide's O K edge at 532 eV; choose ``offset`` and ``n_channels`` to
        cover it, e.g. 450 eV and 2048 channels of 0.25 eV).
    second_phase : float, default 0.0
        Area fraction of a second phase (Fe3+, hematite-like Fe L2,3 edge)
        behind a sharp straight interface: a component, not an anomaly.
    plural_scattering : tuple of float, optional
        ``(low, high)`` range of the relative thickness ``t / lambda`` over
        the map (following the thickness field): each spectrum is convolved
        with its plasmon series, changing background slope and edge jump.
    gain : float, default 1.0
        Detector counts per electron.
    noise_factor : float, default 1.0
        Variance-to-mean ratio of the readings at unit gain (excess noise).
    read_noise : float, default 0.0
        Standard deviation of the read noise in counts (dark-subtracted: it
        makes negative values).
    psf_sigma : float, default 0.0
        Width (standard deviation, in channels) of the detector's
        point-spread function: it correlates neighbouring channels' noise.
    spikes : float, default 0.0
        Fraction of pixels struck by a cosmic-ray spike.
    strength : float, optional
        Size of the anomaly for every kind but ``"shift"`` (see ``anomaly``);
        by default :data:`DEFAULT_STRENGTHS`.

    Returns
    -------
    signal : exspy.signals.EELSSpectrum
        The noisy spectrum image (float32 counts).
    truth : SyntheticTruth
        Anomalous pixels, the noise-free spectra and the nuisances.

    Examples
    --------
    >>> from hyperspy_vae.data import fe_l23_spectrum_image
    >>> s, truth = fe_l23_spectrum_image((32, 32), shift=1.0, random_state=0)
    >>> s.data.shape
    (32, 32, 320)
    >>> s, truth = fe_l23_spectrum_image(
    ...     (32, 32), shift=0.5, drift={"jitter": 0.5}, dose=0.1, read_noise=5.0,
    ...     random_state=0)
    >>> bool(s.data.min() < 0)
    True
    """
    from exspy.signals import EELSSpectrum

    nav_shape = tuple(int(n) for n in np.atleast_1d(navigation_shape))
    edges = tuple(edges)
    _check(nav_shape, fraction, layout, anomaly, dose, edges, second_phase, strength)
    if strength is None:
        strength = DEFAULT_STRENGTHS.get(anomaly)
    rng = np.random.default_rng(random_state)
    # Nuisances draw from their own stream, so that the default map (and
    # every map made without them) is the same as it always was.
    extra_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])

    energy = offset + dispersion * np.arange(n_channels)
    thickness = 0.7 + 0.6 * nuisances.smooth_field(rng, nav_shape, 0.25)
    fe_content = 0.5 + 0.5 * nuisances.smooth_field(rng, nav_shape, 0.2)
    slope = 2.8 + 0.4 * nuisances.smooth_field(rng, nav_shape, 0.3)
    modes = {"field": drift} if np.isscalar(drift) else dict(drift)
    energy_drift = modes.pop("field", 0.0) * (
        2 * nuisances.smooth_field(rng, nav_shape, 0.4) - 1
    )
    anomalous = nuisances.anomaly_layout(rng, nav_shape, fraction, layout)
    energy_drift = energy_drift + nuisances.scan_drift(extra_rng, nav_shape, modes)
    phase = nuisances.phase_layout(extra_rng, nav_shape, second_phase)

    def per_pixel(x):
        return np.asarray(x)[..., None]

    simple = edges == ("Fe_L23",) and second_phase == 0 and plural_scattering is None
    if simple:
        e = energy - per_pixel(energy_drift)
        common = dict(thickness=per_pixel(thickness), slope=per_pixel(slope), dose=dose)
        normal = fe_l23_expected_spectrum(e, fe_content=per_pixel(fe_content), **common)
        if anomaly == "shift":
            changed = fe_l23_expected_spectrum(
                e, edge_shift=shift, fe_content=per_pixel(fe_content), **common
            )
        elif anomaly == "missing_edge":
            changed = fe_l23_expected_spectrum(
                e, fe_content=per_pixel(fe_content) * (1.0 - strength), **common
            )
        elif anomaly == "peak":
            changed = normal + strength * _contaminant_peak(
                e, dose, per_pixel(thickness)
            )
        else:
            fe_edge, extra = _changed_edge(e, 2, anomaly, strength)
            changed = (
                COUNTS_PER_DOSE
                * dose
                * per_pixel(thickness)
                * (
                    background(e, per_pixel(slope))
                    + per_pixel(fe_content) * fe_edge
                    + extra
                )
            )
    else:
        normal, changed = _composed_spectra(
            energy,
            dispersion,
            energy_drift,
            thickness,
            fe_content,
            slope,
            phase,
            edges,
            plural_scattering,
            anomaly,
            shift,
            dose,
            strength,
        )
    electrons = np.where(per_pixel(anomalous), changed, normal)
    if (
        simple
        and gain == 1
        and noise_factor == 1
        and read_noise == 0
        and psf_sigma == 0
    ):
        counts = rng.poisson(electrons).astype(np.float64)
    else:
        counts = nuisances.detector_counts(extra_rng, electrons, gain, noise_factor)
    counts = nuisances.point_spread(counts, psf_sigma)
    if read_noise > 0:
        counts = counts + extra_rng.normal(0.0, read_noise, counts.shape)

    def observed(mean):
        return nuisances.point_spread(gain * mean, psf_sigma).astype(np.float32)

    expected, normal, changed = observed(electrons), observed(normal), observed(changed)
    flat = counts.reshape(-1, n_channels)
    spike_counts = nuisances.add_spikes(
        extra_rng, flat, expected.reshape(-1, n_channels), spikes
    )
    struck = spike_counts.any(axis=-1).reshape(nav_shape)

    axes = _axes(nav_shape, dispersion, offset, n_channels)
    signal = EELSSpectrum(counts.astype(np.float32), axes=axes)
    signal.metadata.General.title = "Synthetic Fe L2,3 spectrum image"
    signal.set_microscope_parameters(
        beam_energy=200.0, convergence_angle=10.0, collection_angle=20.0
    )
    truth = SyntheticTruth(
        anomalous=anomalous,
        expected=expected,
        expected_normal=normal,
        expected_anomalous=changed,
        drift=energy_drift,
        phase=phase,
        spikes=struck,
        noise={
            "gain": float(gain),
            "noise_factor": float(noise_factor),
            "read_noise": float(read_noise),
            "psf_sigma": float(psf_sigma),
        },
        spike_counts=spike_counts.reshape(counts.shape) if struck.any() else None,
    )
    return signal, truth


def _contaminant_peak(e, dose, thickness):
    """An extra peak below the L2 white line (a contaminant)."""
    return (
        COUNTS_PER_DOSE
        * dose
        * thickness
        * 250.0
        * np.exp(-0.5 * ((e - 715.0) / 1.0) ** 2)
    )


def _changed_edge(e, valence, anomaly, strength):
    """The Fe L2,3 edge of an anomalous pixel and what it adds besides.

    For the kinds that change the edge's shape or add to it (not
    ``"shift"``, ``"peak"`` or ``"missing_edge"``): the edge, to be scaled
    by the Fe content, and counts added whatever the Fe content (a
    contaminant's edge), at dose 1 before :data:`COUNTS_PER_DOSE`.
    """
    if anomaly in ("l3_l2_ratio", "broadening"):
        return fe_l23_edge(e, 0.0, valence, **{anomaly: strength}), 0.0
    edge = fe_l23_edge(e, 0.0, valence)
    if anomaly == "pre_peak":
        return edge + fe_metal_pre_peak(e, strength), 0.0
    if anomaly == "contaminant_edge":
        return edge, f_k_edge(e, strength)
    raise ValueError(f"no changed edge for anomaly {anomaly!r}")


def _composed_spectra(
    energy,
    dispersion,
    energy_drift,
    thickness,
    fe_content,
    slope,
    phase,
    edges,
    plural_scattering,
    anomaly,
    shift,
    dose,
    strength,
):
    """Normal and anomalous expected electrons with phases, edges and plural scattering."""
    n_extra = 0
    if plural_scattering is not None:
        # Intensity scattered up from six plasmon energies below the window.
        n_extra = int(np.ceil(6 * nuisances.PLASMON_ENERGY / dispersion))
    grid = energy[0] + dispersion * np.arange(-n_extra, energy.size)
    e = grid - np.ravel(energy_drift)[:, None]
    valence = np.where(np.ravel(phase), 3, 2)[:, None]
    fe = np.ravel(fe_content)[:, None]
    base = background(e, np.ravel(slope)[:, None])
    if "O_K" in edges:
        base = base + o_k_edge(e)

    def fe_edge(edge_shift):
        return np.where(
            valence == 3, fe_l23_edge(e, edge_shift, 3), fe_l23_edge(e, edge_shift, 2)
        )

    normal_fe = fe_edge(0.0)
    normal = base + fe * normal_fe
    if anomaly == "shift":
        changed = base + fe * fe_edge(shift)
    elif anomaly == "missing_edge":
        changed = base + fe * (1.0 - strength) * normal_fe
    elif anomaly == "peak":
        changed = normal + strength * 250.0 * np.exp(-0.5 * ((e - 715.0) / 1.0) ** 2)
    else:
        edges_2, extra = _changed_edge(e, 2, anomaly, strength)
        edges_3, _ = _changed_edge(e, 3, anomaly, strength)
        changed = base + fe * np.where(valence == 3, edges_3, edges_2) + extra
    scale = COUNTS_PER_DOSE * dose * np.ravel(thickness)[:, None]
    normal, changed = normal * scale, changed * scale
    if plural_scattering is not None:
        low, high = plural_scattering
        span = np.ptp(thickness) or 1.0
        t_over_lambda = (
            low + (high - low) * (np.ravel(thickness) - thickness.min()) / span
        )
        normal = nuisances.plural_scattering(normal, dispersion, t_over_lambda, n_extra)
        changed = nuisances.plural_scattering(
            changed, dispersion, t_over_lambda, n_extra
        )
    shape = (*np.shape(thickness), energy.size)
    return normal.reshape(shape), changed.reshape(shape)


def low_loss_spectrum_image(truth, random_state=None, dispersion=0.05):
    """The low-loss twin of a synthetic spectrum image: its zero-loss peaks.

    Each pixel's zero-loss peak (1 eV wide) sits at the pixel's energy drift
    (``truth.drift``), followed by a plasmon at 22 eV; about 10**5 counts at
    the peak, Poisson noise. As measured alongside a core-loss map, to pass
    as ``vae_anomalies(low_loss=...)``.

    Parameters
    ----------
    truth : SyntheticTruth
        From :func:`fe_l23_spectrum_image`.
    random_state : None, int or numpy.random.Generator
        Seed of the noise.
    dispersion : float, default 0.05
        eV per channel, from -5 to 35 eV.

    Returns
    -------
    exspy.signals.EELSSpectrum
    """
    from exspy.signals import EELSSpectrum

    rng = np.random.default_rng(random_state)
    energy = -5.0 + dispersion * np.arange(int(round(40.0 / dispersion)))
    e = energy - np.asarray(truth.drift)[..., None]
    sigma = 1.0 / 2.3548
    zero_loss = 1e5 * np.exp(-0.5 * (e / sigma) ** 2)
    plasmon = 2e3 * nuisances._plasmon_shape(np.maximum(e, 0.0)) * e.shape[-1]
    counts = rng.poisson(zero_loss + plasmon + 5.0).astype(np.float32)
    nav_shape = np.shape(truth.drift)
    axes = _axes(nav_shape, dispersion, float(energy[0]), energy.size)
    signal = EELSSpectrum(counts, axes=axes)
    signal.metadata.General.title = "Synthetic low-loss spectrum image"
    return signal


def _axes(nav_shape, dispersion, offset, n_channels):
    """HyperSpy axes of a synthetic map (nm pixels) with an eV energy axis."""
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
    return axes

"""Anomaly scores and thresholds (pure numpy).

Each pixel's counts ``c`` are compared with the expected counts ``mu`` of its
reconstruction:

* ``deviance``: Poisson deviance summed over channels (any change);
* ``pearson``: 1 - Pearson r of the spectrum and its reconstruction (the
  published study's score);
* ``shift``: the residual projected on the reconstruction's energy
  derivative, ``z = <r, t> / |t|`` with ``r = (c - mu) / sqrt(mu)`` and
  ``t = (dmu/dE) / sqrt(mu)``: a one-dimensional test that an edge moved,
  undiluted by the hundreds of noise channels that the deviance sums;
* ``local``: the largest Gaussian-smoothed residual over energy and over
  widths of 1 to 8 channels: a matched filter for a new or missing peak (or a
  spike) that the deviance would dilute over all channels;
* ``latent``: squared robust distance of the pixel's latent point from the
  bulk of the training pixels.

The scores are put on one scale by empirical nulls fitted to the training
pixels with robust statistics (so the anomalies among them do not distort
them), turned into p-values and combined with a weighted Bonferroni
correction whose weights follow how many anomalies each score finds. The
anomaly score is ``-log10(p)``; the default threshold maximises the F1 score
expected under the null, with a false-discovery-rate (Benjamini-Hochberg)
fallback on clean data, so it carries a meaning.
"""

import numpy as np
from scipy import ndimage, stats

__all__ = [
    "COMBINED_SCORES",
    "pearson_residuals",
    "residual_statistics",
    "reconstruction_scores",
    "latent_distance",
    "pooled_shift",
    "pooling_helps",
    "null_p_values",
    "excess_discoveries",
    "combine_p_values",
    "fdr_threshold",
    "expected_f1_threshold",
    "otsu_threshold",
    "contamination_threshold",
]

#: Scores that enter the combined anomaly score, and how each is tested:
#: "two-sided" for signed scores, "upper" for scores that grow with anomaly,
#: "maximum" for a maximum of standard normal values (a Gumbel null).
COMBINED_SCORES = {
    "shift": "two-sided",
    "shift_pooled": "two-sided",
    "local": "maximum",
    "latent": "upper",
}
#: Smallest null spread of a score, where theory fixes it: the ``shift`` z is
#: a standardised Poisson statistic, of unit variance when the reconstruction
#: is right (more when it is not), so a robust estimate below 1 (small maps)
#: is sampling noise that would turn normal pixels into false alarms.
NULL_MIN_SPREAD = {"shift": 1.0, "shift_pooled": 1.0}
#: Most that a pixel's neighbours may add, beyond its own |z|, to its pooled
#: shift z (see :func:`pooled_shift`).
POOLING_ALLOWANCE = 2.0
#: Pooling is for anomalies near the noise: not used when the pixels that the
#: own shift z finds have a median |z| above this (see :func:`pooling_helps`).
POOLING_MAX_Z = 5.0
#: Widths (standard deviations, in channels) of the ``local`` matched filters.
LOCAL_WIDTHS = (1.0, 2.0, 4.0, 8.0)
_EPS = 1e-12


def pearson_residuals(counts, expected):
    """Pearson residuals ``(c - mu) / sqrt(mu)`` (float64)."""
    mu = np.maximum(np.asarray(expected, dtype=np.float64), _EPS)
    return (np.asarray(counts, dtype=np.float64) - mu) / np.sqrt(mu)


def residual_statistics(counts, expected):
    """Per-channel median and robust spread of the Pearson residuals.

    Systematic misfit of the reconstruction at some energies (a sharp white
    line, say) shows as a per-channel bias or excess spread over the normal
    pixels; the ``local`` score is computed on residuals standardised with
    these, so it flags departures from the usual misfit, not the misfit.

    Parameters
    ----------
    counts, expected : numpy.ndarray
        ``(n_pixels, n_channels)`` for a sample of reference pixels.

    Returns
    -------
    centre, scale : numpy.ndarray
        ``(n_channels,)`` each.
    """
    residual = pearson_residuals(counts, expected)
    centre = np.median(residual, axis=0)
    scale = stats.median_abs_deviation(residual, axis=0, scale="normal")
    return centre, np.where(scale > 0.1, scale, 1.0)


def reconstruction_scores(counts, expected, residual_stats=None):
    """Per-pixel scores of counts against their expected counts.

    Computed with PyTorch in single precision (sums in double), on the
    device of ``expected`` when it is a tensor, so a GPU scores as fast as
    it reconstructs.

    Parameters
    ----------
    counts : numpy.ndarray or torch.Tensor
        Observed counts, ``(n_pixels, n_channels)``, non-negative.
    expected : numpy.ndarray or torch.Tensor
        Expected counts of the reconstruction, same shape, positive.
    residual_stats : tuple of numpy.ndarray, optional
        Per-channel ``(centre, scale)`` of the residuals of normal pixels,
        from :func:`residual_statistics`; used by the ``local`` score.

    Returns
    -------
    dict of numpy.ndarray
        ``deviance``, ``pearson``, ``shift`` and ``local``, each float64
        ``(n_pixels,)``.
    """
    import torch

    device = expected.device if isinstance(expected, torch.Tensor) else "cpu"

    def tensor(array):
        if isinstance(array, np.ndarray):
            array = np.asarray(array, dtype=np.float32).copy()
        return torch.as_tensor(array, device=device).to(torch.float32)

    c = tensor(counts)
    mu = tensor(expected).clamp_min(_EPS)
    n_channels = c.shape[-1]

    def total(x):
        return x.sum(dim=-1, dtype=torch.float64)

    deviance = 2.0 * total(torch.special.xlogy(c, c / mu) - (c - mu))

    cc = c - c.mean(dim=-1, keepdim=True)
    mc = mu - mu.mean(dim=-1, keepdim=True)
    denominator = torch.sqrt(total(cc * cc) * total(mc * mc))
    r = torch.where(denominator > 0, total(cc * mc) / denominator, 1.0)
    pearson = 1.0 - r

    sqrt_mu = torch.sqrt(mu)
    residual = (c - mu) / sqrt_mu
    gradient = torch.gradient(mu, dim=-1)[0] if n_channels > 1 else torch.zeros_like(mu)
    tangent = gradient / sqrt_mu
    norm = torch.sqrt(total(tangent * tangent))
    shift = torch.where(norm > 0, total(residual * tangent) / norm, 0.0)

    standardised = residual
    if residual_stats is not None:
        standardised = (residual - tensor(residual_stats[0])) / tensor(
            residual_stats[1]
        )
    local = _largest_smoothed(standardised)
    return {
        name: value.double().cpu().numpy()
        for name, value in (
            ("deviance", deviance),
            ("pearson", pearson),
            ("shift", shift),
            ("local", local),
        )
    }


def _largest_smoothed(standardised):
    """Largest absolute matched-filter output of each row, over energy and widths.

    The Gaussian filters of every width in :data:`LOCAL_WIDTHS` (zero
    padding at the ends, as ``scipy.ndimage.gaussian_filter1d`` with
    ``mode="constant"``) are applied at once by FFT.
    """
    import torch

    n_channels = standardised.shape[-1]
    kernels = [_gaussian(width) for width in LOCAL_WIDTHS]
    radius = max(len(k) for k in kernels) // 2
    length = 1 << int(np.ceil(np.log2(n_channels + 2 * radius)))
    bank = np.zeros((len(kernels), length))
    for row, kernel in zip(bank, kernels, strict=True):
        # Weights normalised so that sum(g**2) = 1: each smoothed value is
        # standard normal under the null. Centred on index 0 (circularly).
        half = len(kernel) // 2
        row[: half + 1] = kernel[half:]
        row[length - half :] = kernel[:half]
        row /= np.sqrt(np.sum(kernel**2))
    device = standardised.device
    bank_ft = torch.fft.rfft(torch.from_numpy(bank).to(device, torch.float32))
    x_ft = torch.fft.rfft(standardised, n=length)
    smoothed = torch.fft.irfft(x_ft[:, None] * bank_ft, n=length)[..., :n_channels]
    return smoothed.abs().amax(dim=(1, 2))


def _gaussian(width):
    x = np.arange(-int(4 * width + 0.5), int(4 * width + 0.5) + 1)
    g = np.exp(-0.5 * (x / width) ** 2)
    return g / g.sum()


def latent_distance(latent_mean, reference, map_shape=None, window=9):
    """Squared robust distance of latent points from what is normal around them.

    Normal variation (thickness, composition, energy drift) is smooth across
    the scan, while anomalies are local. With ``map_shape``, each latent map
    is compared with its spatial median over ``window x window`` pixels, so a
    pixel that departs from its surroundings stands out even where the model
    has learned to encode its anomaly. Without it, the comparison is with the
    median of the reference pixels. Each coordinate of the difference is
    scaled by its MAD over the reference pixels.

    Parameters
    ----------
    latent_mean : numpy.ndarray
        ``(n_pixels, latent_dim)``.
    reference : numpy.ndarray of bool
        ``(n_pixels,)``, the pixels that define "normal".
    map_shape : tuple of int, optional
        ``(n_maps, rows, columns)`` with ``n_maps * rows * columns ==
        n_pixels``: the pixels' layout, for the spatial comparison.
    window : int, default 9
        Side of the spatial median filter.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)``.
    """
    latent = np.asarray(latent_mean, dtype=np.float64)
    if map_shape is not None:
        maps = latent.reshape(*map_shape, -1)
        size = (1, min(window, map_shape[1]), min(window, map_shape[2]), 1)
        background = ndimage.median_filter(maps, size=size, mode="reflect")
        difference = (maps - background).reshape(latent.shape)
    else:
        difference = latent - np.median(latent[reference], axis=0)
    ref = difference[reference]
    centre = np.median(ref, axis=0)
    spread = stats.median_abs_deviation(ref, axis=0, scale="normal")
    spread = np.where(spread > _EPS, spread, 1.0)
    return np.sum(((difference - centre) / spread) ** 2, axis=-1)


def pooled_shift(shift, map_shape):
    """Edge-shift z pooled with the pixel's eight neighbours.

    Stouffer's combination of the pixel's own z and its neighbours' (their
    sum over the square root of their number), with equal weight:
    ``(z + sum(z_neighbours) / sqrt(8)) / sqrt(2)``. An anomaly a few pixels
    across gains up to 2.7 times in z; a normal pixel beside it gains at most
    the neighbours' share, less than an anomalous pixel's own z.

    Parameters
    ----------
    shift : numpy.ndarray
        ``(n_pixels,)`` shift z.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)``.
    """
    maps = np.asarray(shift, dtype=np.float64).reshape(map_shape)
    footprint = np.ones((1, 3, 3))
    total = ndimage.correlate(maps, footprint, mode="mirror")
    neighbours = (total - maps) / np.sqrt(8.0)
    # The neighbours may add at most the pixel's own evidence plus 2: a
    # normal pixel beside a strong anomaly is not lifted by it.
    limit = np.abs(maps) + POOLING_ALLOWANCE
    neighbours = np.clip(neighbours, -limit, limit)
    return ((maps + neighbours) / np.sqrt(2.0)).ravel()


def pooling_helps(shift, p_own, p_pooled):
    """Whether the pooled shift z should replace the pixel's own.

    Pooling helps where anomalies are spatially clustered and weak: then it
    finds more anomalous pixels (:func:`excess_discoveries`) than the own z.
    Where the own z already finds strong anomalies (median |z| of its
    discoveries above :data:`POOLING_MAX_Z`), pooling only adds the normal
    pixels beside them, so it is not used.

    Parameters
    ----------
    shift : numpy.ndarray
        Own shift z per pixel.
    p_own, p_pooled : numpy.ndarray
        Null p-values of the own and the pooled z.

    Returns
    -------
    bool
    """
    own = excess_discoveries(p_own)
    if excess_discoveries(p_pooled) <= own:
        return False
    k = int(round(own))
    if k >= 1:
        strongest = np.sort(np.abs(np.asarray(shift, dtype=np.float64)))[-k:]
        if np.median(strongest) > POOLING_MAX_Z:
            return False
    return True


def _stabilise(values, tail):
    if tail == "upper":
        return np.log(np.maximum(values, 0.0) + 1e-6)
    return values


def null_p_values(values, reference, tail, min_spread=0.0):
    """p-values of a score under an empirical null fitted to ``reference``.

    The null's location and scale come from robust statistics of the score
    over the reference pixels, so anomalies among them do not distort it:

    * ``"upper"`` and ``"two-sided"``: a normal distribution with the median
      and MAD of the score (log-stabilised for the non-negative ``"upper"``
      scores);
    * ``"maximum"``: the square of a maximum of many standard normal values
      has a Gumbel tail, fitted to the median and interquartile range.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n_pixels,)`` score.
    reference : numpy.ndarray of bool
        ``(n_pixels,)``, pixels assumed mostly normal.
    tail : {"upper", "two-sided", "maximum"}
        Which deviations count as anomalous, and the null's form.
    min_spread : float, default 0.0
        Lower bound of the null's spread (``"upper"`` and ``"two-sided"``).

    Returns
    -------
    numpy.ndarray
        p-values in (0, 1].
    """
    values = np.asarray(values, dtype=np.float64)
    if tail == "maximum":
        x = values**2
        q25, median, q75 = np.quantile(x[reference], [0.25, 0.5, 0.75])
        beta = max((q75 - q25) / 1.5725, _EPS)
        mu = median - 0.3665 * beta
        p = -np.expm1(-np.exp(-(x - mu) / beta))
        # Far in the tail 1 - exp(-e) underflows to e: keep that precision.
        return np.clip(p, 1e-300, 1.0)
    x = _stabilise(values, tail)
    ref = x[reference]
    centre = np.median(ref)
    spread = stats.median_abs_deviation(ref, scale="normal")
    if not spread > _EPS:
        spread = max(np.std(ref), _EPS)
    spread = max(spread, min_spread)
    z = (x - centre) / spread
    if tail == "two-sided":
        return np.clip(2 * stats.norm.sf(np.abs(z)), 1e-300, 1.0)
    return np.clip(stats.norm.sf(z), 1e-300, 1.0)


def excess_discoveries(p_values):
    """Conservative estimate of how many pixels are not null, from p-values.

    The largest ``k - n p_(k) - 3 sqrt(n p_(k) + 1)`` over the pixels with
    p <= 0.05: the ``k`` most significant pixels hold about ``n p_(k)``
    null ones, and the square-root term keeps noise from counting.

    Parameters
    ----------
    p_values : numpy.ndarray

    Returns
    -------
    float
        Zero or more.
    """
    p = np.sort(np.ravel(p_values))
    n = p.size
    considered = p <= 0.05
    if not considered.any():
        return 0.0
    k = np.arange(1, n + 1)
    excess = k - n * p - 3.0 * np.sqrt(n * p + 1.0)
    return float(max(np.max(excess[considered]), 0.0))


def combine_p_values(p_values, floor=0.1):
    """Weighted Bonferroni combination: ``min(1, min_j p_j / w_j)`` per pixel.

    The weights sum to one. Each score gets at least ``floor``; the rest is
    shared in proportion to the number of anomalous pixels each score finds
    (:func:`excess_discoveries`), so a score that sees nothing in this data
    costs the others little power. With no excess anywhere the weights are
    equal (plain Bonferroni).

    Parameters
    ----------
    p_values : dict of numpy.ndarray
        One p-value array per score.
    floor : float, default 0.1
        Smallest weight of a score.

    Returns
    -------
    numpy.ndarray
        Combined p-value per pixel.
    """
    stacked = np.stack(list(p_values.values()))
    m = len(stacked)
    excess = np.array([excess_discoveries(p) for p in stacked])
    floor = min(floor, 1.0 / m)
    if excess.sum() > 0:
        weights = floor + (1.0 - m * floor) * excess / excess.sum()
    else:
        weights = np.full(m, 1.0 / m)
    return np.minimum(1.0, np.min(stacked / weights[:, None], axis=0))


def fdr_threshold(scores, p_values, fdr):
    """Score threshold at which Benjamini-Hochberg controls the FDR at ``fdr``.

    Parameters
    ----------
    scores : numpy.ndarray
        Anomaly scores, ``-log10(p_values)``.
    p_values : numpy.ndarray
        The p-values behind ``scores``.
    fdr : float
        Target false-discovery rate, in (0, 1).

    Returns
    -------
    float
        Pixels with a score above it are declared anomalous. If none passes,
        the threshold sits just above the largest score.
    """
    p = np.sort(np.ravel(p_values))
    n = p.size
    passed = np.nonzero(p <= fdr * np.arange(1, n + 1) / n)[0]
    return _threshold_flagging(scores, 0 if passed.size == 0 else passed[-1] + 1)


def _threshold_flagging(scores, k):
    """A threshold with exactly the ``k`` highest scores above it (ties kept)."""
    s = np.sort(np.ravel(scores)[np.isfinite(np.ravel(scores))])[::-1]
    if k <= 0:
        return float(np.nextafter(s[0], np.inf))
    if k >= s.size:
        return float(np.nextafter(s[-1], -np.inf))
    if s[k - 1] == s[k]:
        return float(np.nextafter(s[k - 1], -np.inf))
    return float(0.5 * (s[k - 1] + s[k]))


def expected_f1_threshold(scores, p_values, fdr):
    """Score threshold that maximises the F1 expected under the fitted null.

    Flagging the ``k`` pixels with the smallest p-values is expected to
    include ``FP(k) = n * p_(k)`` normal pixels (an upper bound: the null is
    taken to hold for every pixel), hence ``TP(k) = k - FP(k)`` anomalous ones.
    The number of anomalous pixels is estimated conservatively as the largest
    ``TP(k) - 3 sqrt(FP(k) + 1)`` over the pixels with p <= 0.05 (see
    :func:`excess_discoveries`). The threshold maximises
    ``2 TP(k) / (k + n_anomalous)``. Where the data show no more anomalous
    pixels than noise would (fewer than 3), it falls back to
    :func:`fdr_threshold` at ``fdr``, so clean data stay clean.

    Parameters
    ----------
    scores : numpy.ndarray
        Anomaly scores, ``-log10(p_values)``.
    p_values : numpy.ndarray
        The p-values behind ``scores``.
    fdr : float
        False-discovery rate of the fallback.

    Returns
    -------
    float
    """
    p = np.sort(np.ravel(p_values))
    n = p.size
    k = np.arange(1, n + 1)
    false_positives = n * p
    true_positives = np.maximum(k - false_positives, 0.0)
    n_anomalous = excess_discoveries(p)
    if n_anomalous < 3:
        return fdr_threshold(scores, p_values, fdr)
    f1 = 2.0 * true_positives / (k + n_anomalous)
    return _threshold_flagging(scores, int(np.argmax(f1)) + 1)


def otsu_threshold(scores):
    """Otsu's threshold of the score histogram (for a bimodal histogram).

    Parameters
    ----------
    scores : numpy.ndarray
        Anomaly scores.

    Returns
    -------
    float
    """
    from skimage.filters import threshold_otsu

    finite = np.ravel(scores)[np.isfinite(np.ravel(scores))]
    return float(threshold_otsu(finite))


def contamination_threshold(scores, contamination):
    """Threshold flagging the ``contamination`` fraction of highest scores.

    Parameters
    ----------
    scores : numpy.ndarray
        Anomaly scores.
    contamination : float
        Expected fraction of anomalous pixels, in (0, 0.5].

    Returns
    -------
    float
    """
    if not 0 < contamination <= 0.5:
        raise ValueError(f"contamination must be in (0, 0.5], not {contamination}.")
    return float(np.quantile(np.ravel(scores), 1.0 - contamination))

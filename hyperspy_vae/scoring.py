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
* ``latent``: squared robust distance of the pixel's latent point from the
  bulk of the training pixels.

The scores are put on one scale by an empirical null fitted to the training
pixels (median and MAD of a variance-stabilised score, robust to the
anomalies among them), turned into p-values and combined with a Bonferroni
correction. The anomaly score is ``-log10(p)``; the default threshold controls
the false-discovery rate (Benjamini-Hochberg), so it carries a meaning.
"""

import numpy as np
from scipy import stats

__all__ = [
    "COMBINED_SCORES",
    "reconstruction_scores",
    "latent_distance",
    "null_p_values",
    "combine_p_values",
    "fdr_threshold",
    "otsu_threshold",
    "contamination_threshold",
]

#: Scores that enter the combined anomaly score, and how each is tested:
#: "two-sided" for signed scores, "upper" for scores that grow with anomaly.
COMBINED_SCORES = {"deviance": "upper", "shift": "two-sided", "latent": "upper"}
_EPS = 1e-12


def reconstruction_scores(counts, expected):
    """Per-pixel scores of counts against their expected counts.

    Parameters
    ----------
    counts : numpy.ndarray
        Observed counts, ``(n_pixels, n_channels)``, non-negative.
    expected : numpy.ndarray
        Expected counts of the reconstruction, same shape, positive.

    Returns
    -------
    dict of numpy.ndarray
        ``deviance``, ``pearson`` and ``shift``, each ``(n_pixels,)``.
    """
    c = np.asarray(counts, dtype=np.float64)
    mu = np.maximum(np.asarray(expected, dtype=np.float64), _EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        c_log = np.where(c > 0, c * np.log(np.where(c > 0, c, 1.0) / mu), 0.0)
    deviance = 2.0 * np.sum(c_log - (c - mu), axis=-1)

    cc = c - c.mean(axis=-1, keepdims=True)
    mc = mu - mu.mean(axis=-1, keepdims=True)
    denominator = np.sqrt(np.sum(cc**2, axis=-1) * np.sum(mc**2, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(denominator > 0, np.sum(cc * mc, axis=-1) / denominator, 1.0)
    pearson = 1.0 - r

    sqrt_mu = np.sqrt(mu)
    residual = (c - mu) / sqrt_mu
    tangent = np.gradient(mu, axis=-1) / sqrt_mu
    norm = np.sqrt(np.sum(tangent**2, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(norm > 0, np.sum(residual * tangent, axis=-1) / norm, 0.0)
    return {"deviance": deviance, "pearson": pearson, "shift": shift}


def latent_distance(latent_mean, reference):
    """Squared robust distance of latent points from the reference bulk.

    Each latent coordinate is centred on its median over the reference
    pixels and scaled by their MAD, so anomalies among the reference pixels
    do not pull the centre.

    Parameters
    ----------
    latent_mean : numpy.ndarray
        ``(n_pixels, latent_dim)``.
    reference : numpy.ndarray of bool
        ``(n_pixels,)``, the pixels that define "normal".

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)``.
    """
    ref = latent_mean[reference]
    centre = np.median(ref, axis=0)
    spread = stats.median_abs_deviation(ref, axis=0, scale="normal")
    spread = np.where(spread > _EPS, spread, 1.0)
    return np.sum(((latent_mean - centre) / spread) ** 2, axis=-1)


def _stabilise(values, tail):
    if tail == "upper":
        return np.log(np.maximum(values, 0.0) + 1e-6)
    return values


def null_p_values(values, reference, tail):
    """p-values of a score under an empirical null fitted to ``reference``.

    The null is a normal distribution whose centre and scale are the median
    and MAD of the (log-stabilised, for non-negative scores) score over the
    reference pixels: robust to anomalies among them.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n_pixels,)`` score.
    reference : numpy.ndarray of bool
        ``(n_pixels,)``, pixels assumed mostly normal.
    tail : {"upper", "two-sided"}
        Which deviations count as anomalous.

    Returns
    -------
    numpy.ndarray
        p-values in (0, 1].
    """
    x = _stabilise(np.asarray(values, dtype=np.float64), tail)
    ref = x[reference]
    centre = np.median(ref)
    spread = stats.median_abs_deviation(ref, scale="normal")
    if not spread > _EPS:
        spread = max(np.std(ref), _EPS)
    z = (x - centre) / spread
    if tail == "two-sided":
        return np.clip(2 * stats.norm.sf(np.abs(z)), 1e-300, 1.0)
    return np.clip(stats.norm.sf(z), 1e-300, 1.0)


def combine_p_values(p_values):
    """Bonferroni combination: ``min(1, m * min_j p_j)`` per pixel.

    Parameters
    ----------
    p_values : dict of numpy.ndarray
        One p-value array per score.

    Returns
    -------
    numpy.ndarray
        Combined p-value per pixel.
    """
    stacked = np.stack(list(p_values.values()))
    return np.minimum(1.0, len(stacked) * stacked.min(axis=0))


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
    if passed.size == 0:
        return float(np.nextafter(np.max(scores), np.inf))
    p_cut = p[passed[-1]]
    # The last rejected pixel has score -log10(p_cut): put the threshold
    # just below it so that it is flagged with "score > threshold".
    return float(np.nextafter(-np.log10(p_cut), -np.inf))


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

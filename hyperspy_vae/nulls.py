"""Null distributions of the scores, their p-values and combination (numpy).

Every score is turned into a p-value twice, and the larger is kept, so the
p-value is valid if either null is right:

* a *theoretical* null, from the estimated noise model alone (the score of
  a pixel that the model reconstructs perfectly): a standard normal for the
  standardised shift, and for the maximum-type scores the same statistic
  computed on simulated noise with the measured channel correlations;
* an *empirical* null, fitted to calibration pixels that neither trained
  the model nor are scored against it (see :mod:`hyperspy_vae.detector`):
  it adds whatever misfit the model has, and for the maximum-type scores
  the tail of noise that is not Gaussian (excess noise at few counts), as
  an exponential tail of the squares fitted beyond their 90th percentile.

The p-values are combined with a weighted Bonferroni correction, its weights
fixed in advance (valid under any dependence between the scores).
"""

import numpy as np
from scipy import stats

from .noise import biweight_variance

__all__ = [
    "KINDS",
    "correlated_normals",
    "null_p_values",
    "combine_p_values",
]

#: How each kind of score is tested: "two-sided" for standardised signed
#: scores, "maximum" for maxima of many standardised values (exponential,
#: Gumbel, tail of their square), "distance" for positive distances with no
#: theoretical null (exponential tail of their logarithm).
KINDS = ("two-sided", "maximum", "distance")
_EPS = 1e-12
_P_FLOOR = 1e-300
#: Degrees of freedom per calibration pixel of the biweight spread: Mosteller
#: and Tukey's Student's t with 0.7 (n - 1) degrees of freedom for biweight
#: estimates (Data Analysis and Regression, 1977).
BIWEIGHT_DF = 0.7


def correlated_normals(rng, n, n_channels, correlation):
    """Standard normal vectors with the given channel correlations.

    White noise filtered by the square root of the correlations' power
    spectrum (negative parts of the estimate clipped).

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of vectors.
    n_channels : int
        Length of each.
    correlation : numpy.ndarray
        Correlations at lags ``0, 1, ...`` (``correlation[0] == 1``).

    Returns
    -------
    numpy.ndarray
        ``(n, n_channels)``.
    """
    lags = np.asarray(correlation, dtype=np.float64)
    white = rng.standard_normal((n, n_channels))
    if lags.size <= 1 or not np.any(lags[1:]):
        return white
    length = 1 << int(np.ceil(np.log2(n_channels + 2 * lags.size)))
    sequence = np.zeros(length)
    sequence[: lags.size] = lags
    sequence[length - lags.size + 1 :] = lags[1:][::-1]
    power = np.clip(np.fft.rfft(sequence).real, 0.0, None)
    padded = rng.standard_normal((n, length))
    noise = np.fft.irfft(np.fft.rfft(padded) * np.sqrt(power), n=length)
    noise = noise[:, :n_channels]
    return noise / np.sqrt(np.mean(power))


def _normal_fit(calibration):
    """Centre, predictive scale and degrees of freedom of an empirical null.

    A prediction from ``n`` calibration pixels: Student's t with
    :data:`BIWEIGHT_DF` ``(n - 1)`` degrees of freedom, the biweight spread
    (at least 1, the noise model's) widened for the median's error
    (variance ``pi / 2`` times the mean's). Many pixels: the normal. The
    biweight spread is robust (values beyond nine median absolute
    deviations get no weight) and, at the normal, 87 % efficient against
    the median absolute deviation's 37 %: a few dozen calibration pixels
    give a usable spread.
    """
    n = np.size(calibration)
    spread = max(np.sqrt(biweight_variance(calibration)), 1.0)
    scale = spread * np.sqrt(1.0 + np.pi / (2.0 * n))
    return np.median(calibration), scale, max(BIWEIGHT_DF * (n - 1), 1.0)


def _normal_p(values, fit):
    """The larger of the standard normal's and the fitted t's p-values.

    ``fit`` None (no calibration): the standard normal's alone.
    """
    z = np.asarray(values, dtype=np.float64)
    theory = 2 * stats.norm.sf(np.abs(z))
    if fit is None:
        return theory
    centre, scale, df = fit
    return np.maximum(theory, 2 * stats.t.sf(np.abs(z - centre) / scale, df))


def _gumbel(squares):
    """Gumbel location and scale of squared maxima, from median and IQR.

    Robust: the calibration pixels may hold a few anomalies.
    """
    q25, median, q75 = np.quantile(squares, [0.25, 0.5, 0.75])
    beta = max((q75 - q25) / 1.5725, _EPS)
    return median - 0.3665 * beta, beta


def _gumbel_p(values, fit):
    mu, beta = fit
    x = np.asarray(values, dtype=np.float64) ** 2
    # Far in the tail 1 - exp(-e) underflows to e: keep that precision.
    return -np.expm1(-np.exp(-(x - mu) / beta))


def _maximum_p(values, fit):
    """The larger of the theoretical Gumbel's and the empirical tail's p-values."""
    theory_fit, calibration = fit
    p = []
    if theory_fit is not None:
        p.append(_gumbel_p(values, theory_fit))
    if calibration is not None:
        p.append(_exponential_tail_p(np.square(values), np.square(calibration)))
    return np.max(p, axis=0) if p else np.ones(np.shape(values))


def _exponential_tail_p(x, calibration, min_scale=_EPS):
    """Conformal p-values of ``x`` with an exponential tail beyond the 90th percentile.

    Below the calibration's 90th percentile ``q90``, the conformal p-value
    ``(1 + #{calibration >= x}) / (n + 1)``; above it, that at the
    percentile times ``exp(-(x - q90) / b)``, with ``b`` the mean excess of
    the calibration over ``q90`` (the exponential's maximum-likelihood
    scale), at least ``min_scale``: the tail's own slope, not one
    extrapolated from the bulk.
    """
    x = np.asarray(x, dtype=np.float64)
    c = np.sort(np.asarray(calibration, dtype=np.float64))
    n = c.size
    above = n - np.searchsorted(c, x, side="left")
    p = (1.0 + above) / (n + 1.0)
    q90 = np.quantile(c, 0.9)
    excess = c[c > q90] - q90
    scale = max(np.mean(excess) if excess.size else 0.0, min_scale)
    at_q90 = (1.0 + np.sum(c >= q90)) / (n + 1.0)
    tail = x > q90
    p[tail] = at_q90 * np.exp(-(x[tail] - q90) / scale)
    return p


#: Smallest exponential scale of log distances: a tail no steeper than a
#: power law of degree 20 in the distance.
_MIN_LOG_SCALE = 0.05


def _distance_p(values, calibration):
    """Exponential tail of log distances above the calibration's 90th percentile.

    See :func:`_exponential_tail_p`. On the log scale, an exponential tail
    is a power law in the distance: heavier than a normal tail, so it does
    not make an outlying distance look rarer than it is.
    """

    def log(v):
        return np.log(np.maximum(np.asarray(v, dtype=np.float64), 0.0) + _EPS)

    return _exponential_tail_p(log(values), log(calibration), _MIN_LOG_SCALE)


def _fit(kind, calibration, theory_fit):
    """The null's parameters for ``kind`` from ``calibration``.

    ``theory_fit`` is the Gumbel fit of the theoretical null (``"maximum"``;
    None without one), the same for every value and computed once by the
    caller.
    """
    enough = calibration is not None and np.size(calibration) >= 2
    if kind == "two-sided":
        return _normal_fit(calibration) if enough else None
    if kind == "maximum":
        return theory_fit, (np.asarray(calibration) if enough else None)
    return calibration if enough else None


def _p(values, kind, fit):
    if kind == "two-sided":
        return _normal_p(values, fit)
    if kind == "maximum":
        return _maximum_p(values, fit)
    if fit is None:
        return np.ones(np.shape(values))
    return _distance_p(values, fit)


def null_p_values(values, kind, calibration=None, theory=None, left_out=None):
    """p-values of a score under its null.

    Parameters
    ----------
    values : numpy.ndarray
        The scores to test.
    kind : {"two-sided", "maximum", "distance"}
        See :data:`KINDS`.
    calibration : numpy.ndarray, optional
        The same score on calibration pixels (empirical null).
    theory : numpy.ndarray, optional
        For ``"maximum"``: the score on simulated noise (theoretical null).
    left_out : numpy.ndarray of int, optional
        For each value, the index of its own pixel in ``calibration`` (-1
        where it is not there): its empirical null is fitted without it
        (leave-one-out), so no value is tested against a null it helped
        to fit.

    Returns
    -------
    numpy.ndarray
        p-values in (0, 1], the larger of the two nulls'.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; use one of {KINDS}.")
    values = np.asarray(values, dtype=np.float64)
    theory_fit = (
        _gumbel(np.square(theory))
        if kind == "maximum" and theory is not None and np.size(theory) >= 2
        else None
    )
    p = np.empty(values.shape)
    own = np.full(values.shape, -1) if left_out is None else np.asarray(left_out)
    outside = own < 0
    if outside.any():
        fit = _fit(kind, calibration, theory_fit)
        p[outside] = _p(values[outside], kind, fit)
    if not outside.all():
        calibration = np.asarray(calibration)
    for i in np.flatnonzero(~outside):
        fit = _fit(kind, np.delete(calibration, own[i]), theory_fit)
        p[i] = _p(values[i : i + 1], kind, fit)[0]
    return np.clip(p, _P_FLOOR, 1.0)


def combine_p_values(p_values, weights=None):
    """Weighted Bonferroni combination: ``min(1, min_j p_j / w_j)``.

    Valid under any dependence between the scores when the weights, fixed
    before seeing the data, sum to one.

    Parameters
    ----------
    p_values : dict of numpy.ndarray
        One p-value array per score.
    weights : dict of float, optional
        Weight of each score (renormalised over the scores present); equal
        weights by default.

    Returns
    -------
    numpy.ndarray
        Combined p-value per pixel.
    """
    names = list(p_values)
    w = np.array([1.0 if weights is None else weights[name] for name in names])
    w = w / w.sum()
    stacked = np.stack([p_values[name] for name in names])
    return np.minimum(1.0, np.min(stacked / w[:, None], axis=0))

"""Thresholds of anomaly scores (pure numpy).

The anomaly score is ``-log10(p)`` of a pixel's combined p-value (see
:mod:`hyperspy_vae.nulls`). The default threshold maximises the F1 score
expected under the null, falling back to false-discovery-rate control
(Benjamini-Hochberg) on clean data, so it carries a meaning as long as the
p-values are valid.
"""

import numpy as np

#: The F1 rule never flags more pixels than Benjamini-Hochberg would at this
#: false-discovery rate: one false alarm in five flags at most, if the
#: p-values are right.
MAX_FDR = 0.2

__all__ = [
    "excess_discoveries",
    "fdr_threshold",
    "expected_f1_threshold",
    "otsu_threshold",
    "rule_threshold",
    "contamination_threshold",
]


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
    ``2 TP(k) / (k + n_anomalous)``, but flags no more pixels than
    Benjamini-Hochberg at :data:`MAX_FDR` would: a p-value tail a little too
    light (a model misfit the calibration missed) could otherwise pass for
    a crowd of weak anomalies. Where the data show no more anomalous pixels
    than noise would (fewer than 3), it falls back to :func:`fdr_threshold`
    at ``fdr``, so clean data stay clean.

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
    passed = np.nonzero(p <= MAX_FDR * k / n)[0]
    most = 0 if passed.size == 0 else passed[-1] + 1
    return _threshold_flagging(scores, min(int(np.argmax(f1)) + 1, most))


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


def rule_threshold(scores, rule, fdr):
    """The threshold of a rule for scores that are ``-log10`` p-values.

    Parameters
    ----------
    scores : numpy.ndarray
        Anomaly scores, ``-log10`` of valid p-values.
    rule : {"f1", "fdr", "otsu"} or float
        :func:`expected_f1_threshold`, :func:`fdr_threshold`,
        :func:`otsu_threshold`, or that score itself.
    fdr : float
        False-discovery rate of the ``"fdr"`` rule (and of the ``"f1"``
        rule's fallback).

    Returns
    -------
    float
    """
    scores = np.asarray(scores, dtype=np.float64)
    if rule == "f1":
        return expected_f1_threshold(scores, 10.0**-scores, fdr)
    if rule == "fdr":
        return fdr_threshold(scores, 10.0**-scores, fdr)
    if rule == "otsu":
        return otsu_threshold(scores)
    return float(rule)

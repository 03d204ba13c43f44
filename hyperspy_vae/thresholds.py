"""Thresholds of anomaly scores (numpy and scipy).

The anomaly score is ``-log10(p)`` of a pixel's combined p-value (see
:mod:`hyperspy_vae.nulls`). The default threshold maximises the F1 score
expected under the null, falling back to false-discovery-rate control
(Benjamini-Hochberg) on clean data, so it carries a meaning as long as the
p-values are valid.
"""

from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize_scalar

#: The F1 rule never flags more pixels than Benjamini-Hochberg would at this
#: false-discovery rate: one false alarm in five flags at most, if the
#: p-values are right. Beyond it, the expected F1's maximum is too flat for
#: the noise in ``k - n p_(k)`` (its standard deviation about ``sqrt(n
#: p_(k))``): a count of anomalous pixels a little high lets a chance
#: excess of small p-values pass for a crowd of weak anomalies.
MAX_FDR = 0.2

__all__ = [
    "excess_discoveries",
    "BetaUniformFit",
    "beta_uniform_fit",
    "beta_uniform_count",
    "fdr_threshold",
    "expected_f1_threshold",
    "otsu_threshold",
    "rule_threshold",
    "contamination_threshold",
]


#: p-values up to this level are read for the count of anomalous pixels (the
#: region where the null density of the combined p-value is close to 1: a
#: weighted Bonferroni combination piles its null p-values up at 1).
COUNT_LEVEL = 0.05


def excess_discoveries(p_values):
    """Conservative estimate of how many pixels are not null, from p-values.

    The largest ``k - n p_(k) - 3 sqrt(n p_(k) + 1)`` over the pixels with
    p <= :data:`COUNT_LEVEL`: the ``k`` most significant pixels hold about
    ``n p_(k)`` null ones, and the square-root term keeps noise from
    counting (three standard deviations of a Poisson count of null pixels).

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
    considered = p <= COUNT_LEVEL
    if not considered.any():
        return 0.0
    k = np.arange(1, n + 1)
    excess = k - n * p - 3.0 * np.sqrt(n * p + 1.0)
    return float(max(np.max(excess[considered]), 0.0))


class BetaUniformFit(NamedTuple):
    """A beta-uniform mixture fitted to p-values (see :func:`beta_uniform_fit`).

    Attributes
    ----------
    n_certain : int
        Pixels whose p-value passes Bonferroni's test (``p <= floor``).
    n_rest : int
        The other pixels.
    pi0 : float
        The uniform (normal) share of the mixture's density.
    a : float
        The beta component's exponent (its density is ``a p**(a - 1)``).
    floor : float
        Bonferroni's level, ``level / n``.
    scale : float
        Pixels per unit of the mixture's mass above ``floor``.
    """

    n_certain: int
    n_rest: int
    pi0: float
    a: float
    floor: float
    scale: float

    @property
    def n_weak(self):
        """Anomalous pixels among those above the floor (the beta tail)."""
        return self.scale * (1.0 - self.pi0) * (1.0 - self.floor**self.a)

    @property
    def n_anomalous(self):
        """Anomalous pixels in all: the certain ones and the beta tail."""
        return self.n_certain + self.n_weak

    def n_anomalous_below(self, cutoff):
        """Expected anomalous pixels with a p-value at or below ``cutoff``."""
        cutoff = np.maximum(cutoff, self.floor)
        weak = self.scale * (1.0 - self.pi0) * (cutoff**self.a - self.floor**self.a)
        return self.n_certain + weak


def beta_uniform_fit(p_values, level=COUNT_LEVEL):
    """Fit the certain anomalies and a beta tail of weak ones to p-values.

    Pixels whose p-value passes Bonferroni's test at ``level`` (``p <=
    level / n``) are counted as anomalous. The other p-values up to
    ``level`` are fitted by maximum likelihood with the density ``pi0 + (1 -
    pi0) a p**(a - 1)`` (a beta-uniform mixture, Pounds and Morris,
    Bioinformatics 19, 1236, 2003; truncated below at the Bonferroni level,
    and the number of p-values above ``level`` entering as a binomial
    count): uniform for normal pixels, piled up at 0 for weak anomalies,
    whose p-values the beta tail extends above ``level``, among the normal
    pixels'. The certain ones are left out of that fit because a few very
    small p-values would otherwise set a heavy tail that puts as many again
    above ``level``. ``a`` is at most ``log(1/2) / log(level)``: at least
    half of the weak anomalies have p-values below ``level`` (a tail any
    heavier cannot be told from the uniform's, and the count would be
    arbitrary).

    Parameters
    ----------
    p_values : numpy.ndarray
    level : float, optional
        Largest p-value read, and the family-wise rate of the certain ones.

    Returns
    -------
    BetaUniformFit
        With nothing to fit, the limits: no p-value between the floor and
        ``level`` is no weak anomaly (``pi0 = 1``); every other pixel there is
        all weak anomalies (``pi0 = 0``, the heaviest tail allowed).
    """
    p = np.ravel(p_values)
    n = p.size
    floor = level / n
    certain = int(np.count_nonzero(p <= floor))
    rest = n - certain
    log_p = np.log(p[(p > floor) & (p <= level)])
    m = log_p.size
    log_level, log_floor = np.log(level), np.log(floor)
    heaviest = np.log(0.5) / log_level

    def fitted(pi0, a):
        # The mixture's mass above the floor: the beta tail's and the uniform's.
        mass = (1.0 - pi0) * (1.0 - np.exp(a * log_floor)) + pi0 * (1.0 - floor)
        return BetaUniformFit(certain, rest, float(pi0), float(a), floor, rest / mass)

    if m == 0 or m == rest:
        return fitted(1.0 if m == 0 else 0.0, heaviest)

    def neg_log_likelihood(pi0, a):
        beta = (1.0 - pi0) * a * np.exp((a - 1.0) * log_p)

        def below(log_x):
            return pi0 * np.exp(log_x) + (1.0 - pi0) * np.exp(a * log_x)

        kept = 1.0 - below(log_floor)
        return -(
            np.sum(np.log(pi0 + beta))
            + (rest - m) * np.log1p(-below(log_level))
            - rest * np.log(kept)
        )

    def profile(a):
        """``(negative log-likelihood, pi0, a)`` at the best ``pi0`` for ``a``."""
        fit = minimize_scalar(
            lambda pi0: neg_log_likelihood(pi0, a),
            bounds=(0.0, 1.0),
            method="bounded",
            options={"xatol": 1e-9},
        )
        return fit.fun, fit.x, a

    # The likelihood in ``a`` can have several local optima: a grid first,
    # then a refinement between the best point's neighbours.
    grid = np.linspace(0.01, heaviest, 50)
    on_grid = [profile(a) for a in grid]
    i = min(range(grid.size), key=lambda j: on_grid[j][0])
    refined = minimize_scalar(
        lambda a: profile(a)[0],
        bounds=(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]),
        method="bounded",
    )
    _, pi0, a = min(on_grid[i], profile(refined.x))
    return fitted(pi0, a)


def beta_uniform_count(p_values, level=COUNT_LEVEL):
    """Number of anomalous pixels: the certain ones and a beta tail of weak ones.

    The count of :func:`beta_uniform_fit`'s mixture. A central estimate, not
    a lower bound as :func:`excess_discoveries` is.

    Parameters
    ----------
    p_values : numpy.ndarray
    level : float, optional
        Largest p-value read, and the family-wise rate of the certain ones.

    Returns
    -------
    float
        Zero or more.
    """
    return float(beta_uniform_fit(p_values, level).n_anomalous)


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


def expected_f1_threshold(scores, p_values, fdr, max_fdr=MAX_FDR):
    """Score threshold that maximises the F1 score expected under the fitted null.

    Whether the map holds anomalies at all is decided conservatively: where
    the excess of small p-values (:func:`excess_discoveries`) is below 3, as
    noise would leave it, the rule falls back to :func:`fdr_threshold` at
    ``fdr``, so clean data stay clean. Otherwise the p-values are described
    by :func:`beta_uniform_fit`: ``A(c)`` anomalous pixels are expected at or
    below a p-value cutoff ``c`` (the certain ones and the beta tail's share
    below ``c``), of ``n_anomalous`` in all (at least the conservative
    excess), and at most ``n c`` normal ones (an upper bound: the null is
    taken to hold for every pixel). The cutoff maximises the expected
    ``2 A(c) / (A(c) + n c + n_anomalous)``, and no more pixels are flagged
    than Benjamini-Hochberg at ``max_fdr`` would. The cutoff comes from
    the fitted curve, not from the ranked p-values themselves: the F1 of the
    ``k`` smallest p-values is flat about its maximum, and its argmax moved
    with the noise that different fits leave in the p-values: on a 64 x 64
    map with 1 eV channels (tuning seed 5) the flags of detector seeds 0-4
    ranged over 64 to 76 pixels, and over 67 to 73 with the fitted curve.

    Parameters
    ----------
    scores : numpy.ndarray
        Anomaly scores, ``-log10(p_values)``.
    p_values : numpy.ndarray
        The p-values behind ``scores``.
    fdr : float
        False-discovery rate of the fallback.
    max_fdr : float, default :data:`MAX_FDR`
        The bound on the flags (1: none; for benchmarks on p-values known
        to be exact).

    Returns
    -------
    float
    """
    p = np.sort(np.ravel(p_values))
    n = p.size
    lower_bound = excess_discoveries(p)
    if lower_bound < 3:
        return fdr_threshold(scores, p_values, fdr)
    fit = beta_uniform_fit(p)
    n_anomalous = max(fit.n_anomalous, lower_bound)
    # Cutoffs from Bonferroni's level up, evenly in log p: the expected F1 is
    # smooth there, so a fine grid finds its maximum.
    cutoffs = np.geomspace(fit.floor, 1.0, 4096)
    anomalous = fit.n_anomalous_below(cutoffs)
    f1 = 2.0 * anomalous / (anomalous + n * cutoffs + n_anomalous)
    flagged = int(np.count_nonzero(p <= cutoffs[np.argmax(f1)]))
    k = np.arange(1, n + 1)
    passed = np.nonzero(p <= max_fdr * k / n)[0]
    most = 0 if passed.size == 0 else passed[-1] + 1
    return _threshold_flagging(scores, min(flagged, most))


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

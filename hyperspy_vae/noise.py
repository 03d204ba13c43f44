"""The detector's noise, estimated from the data (pure numpy).

Measured counts are rarely unit-gain Poisson: a detector reading is ``gain``
counts per electron with excess noise, plus read noise, sometimes dark
subtracted (negative values) and blurred across neighbouring channels. The
variance of a reading ``c`` of mean ``mu`` is then

    var(c) = phi * mu + sigma**2,

with ``phi`` the gain times the excess-noise factor and ``sigma`` the read
noise, and neighbouring channels are correlated. Both are estimated here
from the spatial second differences of the raw counts along the scan,
``c[x - 1] - 2 c[x] + c[x + 1]``: linear trends in thickness or composition
cancel, and the drift, which changes slowly within a scan row, too; what
remains is noise of variance ``6 var(c)``, plus rare anomalies, interfaces
and spikes, which robust statistics ignore.

The readings are then turned into *effective counts*
``y = c / phi + sigma**2 / phi**2``, whose variance equals their mean, as
Poisson counts' does: the model and every score work on them, so a detector
gain changes nothing.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["NoiseModel", "biweight_variance", "estimate_noise", "second_differences"]

#: The biweight midvariance (tuning constant 9) of normal values exceeds
#: their variance by this factor (measured on 5e6 standard normal values).
_BIWEIGHT_NORMAL = 1.0179
#: Channel-correlation lags estimated; beyond them, correlations are set to 0.
MAX_LAG = 8
#: Most second-difference spectra used (a random sample beyond it).
MAX_SAMPLE = 20000


@dataclass
class NoiseModel:
    """Variance ``phi * mu + read_variance`` and channel correlations.

    Attributes
    ----------
    phi : float
        Variance per unit mean (gain times excess-noise factor; 1 for
        Poisson counts).
    read_variance : float
        Variance independent of the mean (read noise squared), in counts
        squared.
    correlation : numpy.ndarray
        Correlation of the noise of channels ``lag`` apart, for lags
        ``0, 1, ..., MAX_LAG`` (``correlation[0] == 1``).
    n_samples : int
        Number of second-difference spectra it was estimated from.
    warnings : list of str
        What looked wrong for counts (see :meth:`check`).
    """

    phi: float = 1.0
    read_variance: float = 0.0
    correlation: np.ndarray = field(default_factory=lambda: np.ones(1))
    n_samples: int = 0
    warnings: list = field(default_factory=list)

    @property
    def offset(self):
        """Constant added to ``c / phi`` so that variance equals mean."""
        return self.read_variance / self.phi**2

    def effective_counts(self, counts):
        """Readings as effective counts, variance equal to mean (float32).

        ``c / phi + read_variance / phi**2``, clipped at zero.
        """
        y = np.asarray(counts, dtype=np.float32) / np.float32(self.phi)
        return np.clip(y + np.float32(self.offset), 0, None)

    @property
    def long_run_factor(self):
        """Variance of a sum over many channels, relative to independent noise.

        ``1 + 2 sum(correlation[1:])``: how much a smooth projection of the
        residuals (the shift tests) varies more than independent channels
        would make it.
        """
        return float(max(1.0 + 2.0 * np.sum(self.correlation[1:]), 1e-3))

    def toeplitz(self, n_channels):
        """The ``(n_channels, n_channels)`` noise correlation matrix."""
        from scipy.linalg import toeplitz

        row = np.zeros(n_channels)
        lags = min(n_channels, self.correlation.size)
        row[:lags] = self.correlation[:lags]
        return toeplitz(row)

    def to_dict(self):
        """JSON-serialisable dictionary."""
        return {
            "phi": float(self.phi),
            "read_variance": float(self.read_variance),
            "correlation": [float(c) for c in self.correlation],
            "n_samples": int(self.n_samples),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`."""
        return cls(
            phi=float(d["phi"]),
            read_variance=float(d["read_variance"]),
            correlation=np.asarray(d["correlation"], dtype=np.float64),
            n_samples=int(d.get("n_samples", 0)),
            warnings=list(d.get("warnings", [])),
        )


def biweight_variance(values, tuning=9.0):
    """Biweight midvariance: a robust, smooth variance estimate.

    Values beyond ``tuning`` median absolute deviations from the median get
    no weight; the result is divided by its value for normal data, so it
    estimates the variance of the bulk.

    Parameters
    ----------
    values : numpy.ndarray
    tuning : float, default 9.0

    Returns
    -------
    float
    """
    x = np.ravel(values)
    centre = np.median(x)
    mad = np.median(np.abs(x - centre))
    if not mad > 0:
        # Mostly identical values (sparse counts): the plain variance.
        return float(np.var(x))
    u = (x - centre) / (tuning * mad)
    inside = np.abs(u) < 1
    u, deviation = u[inside], (x - centre)[inside]
    numerator = np.sum(deviation**2 * (1 - u**2) ** 4)
    denominator = np.sum((1 - u**2) * (1 - 5 * u**2))
    return float(x.size * numerator / denominator**2 / _BIWEIGHT_NORMAL)


def _fit_variance(centres, variances, sizes):
    """Weighted least squares of ``variance = phi * mean + read_variance``.

    Each group's variance has a relative error of about ``sqrt(2 / size)``,
    so its weight is ``size / variance**2``. The two columns are scaled to
    unit norm before solving. A negative read variance means none is
    measurable: the slope is then fitted alone.

    Returns
    -------
    phi, read_variance : float
        NaN when fewer than two groups are usable.
    """
    if len(centres) < 2:
        return float("nan"), 0.0
    root = np.sqrt(sizes) / variances
    design = np.stack([centres, np.ones_like(centres)], axis=1) * root[:, None]
    target = variances * root
    norms = np.linalg.norm(design, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    solution, *_ = np.linalg.lstsq(design / norms, target, rcond=None)
    phi, read_variance = solution / norms
    if read_variance < 0:
        slope = design[:, 0]
        phi = float(slope @ target / max(slope @ slope, 1e-300))
        read_variance = 0.0
    return float(phi), float(read_variance)


def second_differences(cube, max_sample=MAX_SAMPLE, seed=0):
    """Spatial second differences along the scan, and the local means.

    Parameters
    ----------
    cube : numpy.ndarray or dask.array.Array
        ``(n_maps, rows, columns, n_channels)`` raw readings.
    max_sample : int
        Most triplets returned (rows read in random order until reached).
    seed : int
        Seed of the row order.

    Returns
    -------
    difference, mean : numpy.ndarray
        ``(n_triplets, n_channels)`` float64 each: ``c[x-1] - 2 c[x] +
        c[x+1]`` and ``(c[x-1] + c[x] + c[x+1]) / 3`` along the scan rows
        (the fast axis: within a row the drift changes slowly, while it may
        jump between rows; a lazy cube is read a row at a time), or along
        the columns when rows are shorter than three pixels. Empty if
        neither is.
    """
    n_maps, rows, cols, n_channels = cube.shape
    along_rows = cols < 3
    length = rows if along_rows else cols
    if length < 3:
        empty = np.zeros((0, n_channels))
        return empty, empty
    lines = [(m, i) for m in range(n_maps) for i in range(cols if along_rows else rows)]
    rng = np.random.default_rng(seed)
    rng.shuffle(lines)
    differences, means, total = [], [], 0
    for m, i in lines:
        line = cube[m, :, i] if along_rows else cube[m, i]
        line = np.asarray(line.compute() if hasattr(line, "compute") else line)
        line = line.astype(np.float64)
        differences.append(line[:-2] - 2 * line[1:-1] + line[2:])
        means.append((line[:-2] + line[1:-1] + line[2:]) / 3)
        total += length - 2
        if total >= max_sample:
            break
    return np.concatenate(differences)[:max_sample], np.concatenate(means)[:max_sample]


def estimate_noise(cube, seed=0):
    """Estimate the noise model of a spectrum image from its raw readings.

    The second differences have 6 times the variance of the readings at
    their local mean. They are grouped by the mean (20 groups of equal
    size), each group's variance taken robustly (the biweight midvariance:
    anomalies, interfaces and spikes do not count, and unlike a median it is
    not biased by the lattice of integer counts), and ``phi`` and ``read_variance`` fitted to them by weighted least
    squares. The channel correlations are those of the standardised second
    differences (a second difference in space is the same linear
    combination of every channel's noise, so it keeps the noise's channel
    correlations), with outlying values trimmed.

    Parameters
    ----------
    cube : numpy.ndarray or dask.array.Array
        ``(n_maps, rows, columns, n_channels)`` raw readings.
    seed : int
        Seed of the sampling.

    Returns
    -------
    NoiseModel
        Poisson (``phi = 1``, no read noise, no correlation) when the map has
        no line of three pixels.
    """
    difference, mean = second_differences(cube, seed=seed)
    if len(difference) == 0:
        return NoiseModel(
            warnings=[
                "The map is too small to estimate the noise: unit-gain Poisson "
                "counts are assumed."
            ]
        )
    d, mu = difference.ravel(), mean.ravel()
    order = np.argsort(mu, kind="stable")
    groups = np.array_split(order, 20)
    centres = np.array([np.mean(mu[g]) for g in groups])
    variances = np.array([biweight_variance(d[g]) / 6.0 for g in groups])
    sizes = np.array([len(g) for g in groups], dtype=np.float64)
    # Groups without noise (all-zero channels) say nothing of its growth.
    usable = variances > 0
    warnings = []
    phi, read_variance = _fit_variance(
        centres[usable], variances[usable], sizes[usable]
    )
    typical = (
        np.median(variances[usable] / np.maximum(centres[usable], 1e-12))
        if (usable.any())
        else 1.0
    )
    if not (np.isfinite(phi) and phi > 1e-3 * typical and phi > 0):
        warnings.append(
            "The noise does not grow with the signal, as counting noise does: "
            "these data do not look like counts (background-subtracted, "
            "denoised or normalised?). Unit-gain counting noise is assumed."
        )
        phi, read_variance = 1.0, 0.0
    variance = phi * np.maximum(mean, 0.0) + read_variance
    standardised = difference / np.sqrt(6.0 * np.maximum(variance, 1e-12))
    standardised = np.where(np.abs(standardised) < 5.0, standardised, 0.0)
    n_channels = difference.shape[1]
    lags = min(MAX_LAG, n_channels - 1)
    power = np.mean(standardised**2)
    correlation = np.ones(lags + 1)
    for lag in range(1, lags + 1):
        correlation[lag] = np.mean(
            standardised[:, lag:] * standardised[:, :-lag]
        ) / max(power, 1e-12)
    # Correlations indistinguishable from zero are zero (noise would add up
    # over lags): the standard error of each is about 1 / sqrt(n values).
    standard_error = 1.0 / np.sqrt(standardised.size)
    correlation[1:][np.abs(correlation[1:]) < 4 * standard_error] = 0.0
    return NoiseModel(
        phi=float(phi),
        read_variance=float(read_variance),
        correlation=correlation,
        n_samples=len(difference),
        warnings=warnings,
    )

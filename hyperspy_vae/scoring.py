"""Per-pixel anomaly statistics against an aligned reconstruction.

Each pixel's effective counts ``y`` (variance equal to mean, see
:mod:`hyperspy_vae.noise`) are compared with its reconstruction moved to the
pixel's fitted energy offset (see :mod:`hyperspy_vae.nn.alignment`), with
expected counts ``m`` and derivative ``t = dm/do``. The standardised
residual is ``r = (y - m) / sqrt(m)``. The scores:

* ``shift``: the pixel's energy offset against the offset its neighbours
  predict, as a signed likelihood-ratio root (:func:`context_shift`). Drift
  moves a whole stretch of a scan row alike, a second phase a whole region;
  a chemical shift moves one pixel or a small cluster. The prediction is a
  robust line through the row neighbours' offsets (:func:`offset_references`);
  beside a phase boundary, recognised from the latent points
  (:func:`candidate_choice`), the pixel's own side; beside a drift step (the
  sides' offsets disagree but their latent points do not), the most lenient
  of the line and the two sides.
* ``edge_shift``: the largest standardised projection of ``r`` on ``t``
  within energy windows of several widths: one edge moving relative to the
  others (the whole-spectrum part is the offset itself).
* ``local``: the largest Gaussian-smoothed ``r`` over energy and widths of 1
  to 8 channels: a matched filter for a new or missing peak.
* ``latent``: the pixel's latent point against its neighbours' along the
  row (same one-sided comparison), for changes the model learned to encode.
* ``deviance`` and ``pearson`` (1 - Pearson r, the published study's
  score): kept, not combined.

Cosmic-ray spikes (one or two channels far above their neighbours) are found
first, reported, and left out of every score. Every standardisation uses
the noise model's channel correlations, so binned or blurred data are not
over-confident.
"""

import warnings

import numpy as np
import torch
from scipy import stats

__all__ = [
    "COMBINED_SCORES",
    "COMBINED_SCORES_WEIGHTS",
    "LOCAL_WIDTHS",
    "energy_windows",
    "residual_statistics",
    "aligned_statistics",
    "spike_limit",
    "run_window",
    "one_sided_references",
    "offset_references",
    "segment_lines",
    "longer_run_lines",
    "offset_score",
    "OFFSET_SMOOTHINGS",
    "least_scattered",
    "context_shift",
    "latent_candidates",
    "candidate_choice",
    "context_latent",
    "row_trends",
    "locally_standardised",
]

#: Scores that enter the combined anomaly score, with the kind of their
#: null (see :mod:`hyperspy_vae.nulls`). The ``latent`` score is computed
#: and kept but not combined: it has no theoretical null, and its empirical
#: tail was not reliable enough on the tuning maps.
COMBINED_SCORES = {
    "shift": "two-sided",
    "edge_shift": "maximum",
    "local": "maximum",
}
#: Their weights in the Bonferroni combination, fixed in advance: half to
#: the shift of the pixel's edges against its neighbours (the change this
#: method exists to find), a quarter each to a shift of one edge among
#: several and to a new or missing peak.
COMBINED_SCORES_WEIGHTS = {"shift": 0.5, "edge_shift": 0.25, "local": 0.25}
#: Widths (standard deviations, in channels) of the ``local`` matched filters.
LOCAL_WIDTHS = (1.0, 2.0, 4.0, 8.0)
#: Narrowest ``edge_shift`` window in eV: a white line and its onset.
MIN_WINDOW_EV = 5.0
#: Family-wise false-alarm rate of the spike detector over a whole map.
SPIKE_ALPHA = 0.01
_EPS = 1e-12


def energy_windows(n_channels, dispersion):
    """Energy windows of the ``edge_shift`` score: halves, quarters, ...

    Widths ``n / 2, n / 4, ...`` channels down to the larger of 8 channels
    and :data:`MIN_WINDOW_EV`, each width at half-overlapping positions.

    Parameters
    ----------
    n_channels : int
        Channels of the spectrum.
    dispersion : float
        Energy per channel, eV.

    Returns
    -------
    numpy.ndarray of int
        ``(n_windows, 2)`` start and stop channels.
    """
    smallest = max(8, int(np.ceil(MIN_WINDOW_EV / max(dispersion, _EPS))))
    windows = []
    width = n_channels // 2
    while width >= smallest:
        step = max(width // 2, 1)
        for start in range(0, n_channels - width + 1, step):
            windows.append((start, start + width))
        width //= 2
    return np.array(windows, dtype=np.int64).reshape(-1, 2)


def residual_statistics(residuals):
    """Per-channel centre and spread of standardised residuals of normal pixels.

    A systematic misfit of the reconstruction at some energies (a sharp
    white line, say) shows as a per-channel bias or excess spread; the
    ``local`` and ``edge_shift`` scores are computed on residuals
    standardised with these, so they flag departures from the usual misfit.
    The spread is at least 1, the noise model's (misfit only adds to it).

    Parameters
    ----------
    residuals : numpy.ndarray
        ``(n_pixels, n_channels)`` standardised residuals of calibration
        pixels.

    Returns
    -------
    centre, spread : numpy.ndarray
        ``(n_channels,)`` each.
    """
    centre = np.median(residuals, axis=0)
    spread = stats.median_abs_deviation(residuals, axis=0, scale="normal")
    return centre, np.maximum(spread, 1.0)


def nanmedian_last(values):
    """Median over the last axis ignoring NaN (NaN where all are NaN).

    As ``numpy.nanmedian(values, axis=-1)``, by one sort of the whole array
    instead of one call per row.
    """
    ordered = np.sort(values, axis=-1)  # NaN last
    n = (~np.isnan(ordered)).sum(axis=-1, keepdims=True)
    low = np.take_along_axis(ordered, np.maximum(n - 1, 0) // 2, axis=-1)
    high = np.take_along_axis(ordered, np.minimum(n // 2, values.shape[-1] - 1), -1)
    median = 0.5 * (low + high)[..., 0]
    return np.where(n[..., 0] > 0, median, np.nan)


def _lag_weights(correlation, n_lags):
    c = np.zeros(n_lags + 1)
    lags = min(n_lags + 1, len(correlation))
    c[:lags] = np.asarray(correlation)[:lags]
    return c


def _quadratic_form(weights, correlation):
    """``w' R w`` per row for a banded Toeplitz correlation ``R`` (torch)."""
    total = (weights * weights).sum(-1, dtype=torch.float64)
    for lag in range(1, len(correlation)):
        if correlation[lag] != 0 and lag < weights.shape[-1]:
            products = (weights[..., lag:] * weights[..., :-lag]).sum(
                -1, dtype=torch.float64
            )
            total = total + 2.0 * float(correlation[lag]) * products
    return total.clamp_min(_EPS)


def spike_alpha(n_values):
    """Per-channel false-alarm rate of the spike detector (Bonferroni)."""
    return SPIKE_ALPHA / max(n_values, 1)


def spike_limit(n_values, correlation):
    """Threshold of the spike statistic for :data:`SPIKE_ALPHA` over a map.

    The spike statistic of a channel is its residual minus the mean of its
    two neighbours', ``r_k - (r_(k-1) + r_(k+1)) / 2``: a broad feature
    leaves it small, a one-channel spike does not. Its null variance is
    ``1.5 - 2 rho_1 + 0.5 rho_2``; Bonferroni over ``n_values`` channels.
    """
    rho = _lag_weights(correlation, 2)
    variance = max(1.5 - 2.0 * rho[1] + 0.5 * rho[2], 0.05)
    return float(stats.norm.isf(SPIKE_ALPHA / max(n_values, 1)) * np.sqrt(variance))


def find_spikes(residual, limit, counts=None, expected=None, alpha=None):
    """Channels hit by a cosmic-ray spike (torch bool ``(batch, n_channels)``).

    A channel whose spike statistic (see :func:`spike_limit`) exceeds
    ``limit``, and a neighbour of it whose own residual exceeds half of it
    (the second channel of a two-channel spike). With ``counts`` and
    ``expected``, a channel must also be improbable under Poisson counts
    (upper tail below ``alpha``): at a fraction of a count per channel a
    single count lies many "standard deviations" above the mean and is no
    spike.
    """
    padded = torch.nn.functional.pad(residual[:, None], (1, 1), mode="replicate")[:, 0]
    spike = residual - 0.5 * (padded[:, :-2] + padded[:, 2:])
    core = spike > limit
    if counts is not None and alpha is not None and bool(core.any()):
        # The Poisson tail only where the statistic fired (few channels).
        where = core.nonzero(as_tuple=True)
        y = counts[where].double()
        tail = torch.special.gammainc(y.clamp_min(1.0), expected[where].double())
        core[where] = (y >= 1.0) & (tail < alpha)
    near = torch.zeros_like(core)
    near[:, 1:] |= core[:, :-1]
    near[:, :-1] |= core[:, 1:]
    return core | (near & (residual > 0.5 * limit))


def aligned_statistics(
    counts,
    expected,
    tangent,
    correlation,
    residual_stats=None,
    windows=None,
    spikes=None,
    smoothing=0.0,
):
    """Per-pixel statistics of counts against their aligned reconstruction.

    Computed with PyTorch in single precision (sums in double), on the
    device of ``expected``.

    Parameters
    ----------
    counts, expected, tangent : torch.Tensor
        ``(batch, n_channels)``: effective counts, expected counts at the
        fitted offset and their derivative with respect to the offset.
    correlation : numpy.ndarray
        Noise correlations at lags ``0, 1, ...``.
    residual_stats : tuple of numpy.ndarray, optional
        Per-channel ``(centre, spread)`` from :func:`residual_statistics`.
    windows : numpy.ndarray, optional
        ``edge_shift`` windows from :func:`energy_windows` (none: 0).
    spikes : torch.Tensor, optional
        ``(batch, n_channels)`` bool, channels left out (cosmic rays).
    smoothing : float, default 0.0
        Smoothing of the offset's weights, in channels (see
        :func:`hyperspy_vae.nn.alignment.offset_weights`).

    Returns
    -------
    dict of numpy.ndarray
        ``deviance``, ``pearson``, ``offset_error`` (standard error of the
        fitted offset, channels), ``edge_shift`` and ``local``, float64
        ``(batch,)`` each.
    """
    y = counts.float()
    m = expected.float().clamp_min(_EPS)
    keep = torch.ones_like(y) if spikes is None else (~spikes).float()
    sqrt_m = torch.sqrt(m)
    residual = (y - m) / sqrt_m * keep
    slope = tangent.float() / sqrt_m * keep
    weight = _offset_weight(m, tangent, keep, smoothing)

    deviance = 2.0 * ((torch.special.xlogy(y, y / m) - (y - m)) * keep).sum(
        -1, dtype=torch.float64
    )
    yc = (y - y.mean(-1, keepdim=True)) * keep
    mc = (m - m.mean(-1, keepdim=True)) * keep
    denominator = torch.sqrt((yc * yc).sum(-1, dtype=torch.float64)) * torch.sqrt(
        (mc * mc).sum(-1, dtype=torch.float64)
    )
    r = torch.where(
        denominator > 0, (yc * mc).sum(-1, dtype=torch.float64) / denominator, 1.0
    )
    information = (slope * weight).sum(-1, dtype=torch.float64).clamp_min(_EPS)
    offset_error = torch.sqrt(_quadratic_form(weight, correlation)) / information

    standardised = residual
    if residual_stats is not None:
        device = residual.device
        centre = torch.as_tensor(residual_stats[0], device=device, dtype=torch.float32)
        spread = torch.as_tensor(residual_stats[1], device=device, dtype=torch.float32)
        standardised = (residual - centre * keep) / spread
    local = _largest_smoothed(standardised, correlation)
    edge = _largest_window_shift(standardised, weight, correlation, windows)
    return {
        name: value.double().cpu().numpy()
        for name, value in (
            ("deviance", deviance),
            ("pearson", 1.0 - r),
            ("offset_error", offset_error),
            ("edge_shift", edge),
            ("local", local),
        )
    }


def _largest_window_shift(residual, weight, correlation, windows):
    """Largest |standardised projection of the residual on the tangent| by window."""
    if windows is None or len(windows) == 0:
        return torch.zeros(residual.shape[0], device=residual.device)
    rho = _lag_weights(correlation, 8)

    def cumulative(x):
        return torch.nn.functional.pad(torch.cumsum(x.double(), dim=-1), (1, 0))

    starts = torch.as_tensor(windows[:, 0], device=residual.device)
    stops = torch.as_tensor(windows[:, 1], device=residual.device)
    projection = cumulative(residual * weight)
    numerator = projection[:, stops] - projection[:, starts]
    products = cumulative(weight * weight)
    variance = products[:, stops] - products[:, starts]
    for lag in range(1, len(rho)):
        if rho[lag] == 0 or lag >= weight.shape[-1]:
            continue
        pairs = torch.nn.functional.pad(
            cumulative(weight[:, lag:] * weight[:, :-lag]), (0, lag)
        )
        # Pairs (k, k + lag) with both inside [start, stop).
        inner = pairs[:, (stops - lag).clamp_min(0)] - pairs[:, starts]
        variance = variance + 2.0 * rho[lag] * inner.clamp_min(0)
    z = numerator / torch.sqrt(variance.clamp_min(_EPS))
    informative = variance > _EPS
    return torch.where(informative, z.abs(), 0.0).amax(dim=-1)


def _largest_smoothed(standardised, correlation):
    """Largest absolute matched-filter output of each row, over energy and widths.

    The Gaussian filters of every width in :data:`LOCAL_WIDTHS` (zero
    padding at the ends) are applied at once by FFT, each normalised so that
    its output has unit variance under the noise model (channel
    correlations included).
    """
    n_channels = standardised.shape[-1]
    kernels = [_gaussian(width) for width in LOCAL_WIDTHS]
    radius = max(len(k) for k in kernels) // 2
    length = 1 << int(np.ceil(np.log2(n_channels + 2 * radius)))
    bank = np.zeros((len(kernels), length))
    rho = _lag_weights(correlation, 8)
    for row, kernel in zip(bank, kernels, strict=True):
        # Centred on index 0 (circularly); unit output variance.
        half = len(kernel) // 2
        row[: half + 1] = kernel[half:]
        row[length - half :] = kernel[:half]
        variance = np.sum(kernel**2) + 2 * sum(
            rho[lag] * np.sum(kernel[lag:] * kernel[:-lag])
            for lag in range(1, min(len(rho), len(kernel)))
        )
        row /= np.sqrt(max(variance, _EPS))
    device = standardised.device
    bank_ft = torch.fft.rfft(torch.from_numpy(bank).to(device, torch.float32))
    x_ft = torch.fft.rfft(standardised.float(), n=length)
    smoothed = torch.fft.irfft(x_ft[:, None] * bank_ft, n=length)[..., :n_channels]
    return smoothed.abs().amax(dim=(1, 2))


def _gaussian(width):
    x = np.arange(-int(4 * width + 0.5), int(4 * width + 0.5) + 1)
    g = np.exp(-0.5 * (x / width) ** 2)
    return g / g.sum()


def run_window(n_columns):
    """Pixels on each side that a pixel is compared with along its row.

    Half a row, between 4 and 32 pixels: wider than an anomalous cluster
    (so that the median of a side is a normal pixel's, also in a small map),
    while the line through both sides follows a drift that changes within
    the row, and a side alone serves beside a phase boundary.
    """
    return int(np.clip(n_columns // 2, 4, 32))


def _side_medians(rows, window):
    """Medians of the ``window`` values left and right of each column of ``rows``.

    ``rows`` is ``(n_rows, n_columns, ...)``; a side beyond the row's end
    holds fewer values, and no value gives NaN. As ``numpy.median`` of each
    side (NaN where a side holds a NaN), for every column at once.
    """
    n_cols = rows.shape[1]
    pad = [(0, 0)] * rows.ndim
    pad[1] = (window, window)
    windows = np.lib.stride_tricks.sliding_window_view
    # Side windows of column x: padded columns x .. x + window - 1 (left)
    # and x + window + 1 .. x + 2 window (right), the window axis last.
    sides = windows(np.pad(rows, pad, constant_values=np.nan), window, axis=1)
    # Only the padding is left out: a NaN among the values makes the median NaN.
    missing = windows(np.pad(np.isnan(rows), pad), window, axis=1)
    medians = []
    for first in (0, window + 1):
        part = slice(first, first + n_cols)
        median = nanmedian_last(sides[:, part])
        medians.append(np.where(missing[:, part].any(axis=-1), np.nan, median))
    return medians


def one_sided_references(values, map_shape, window, keep_short=False):
    """Medians of the ``window`` values left and right of each pixel in its row.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n_pixels,)`` or ``(n_pixels, d)``, in the flat order of
        ``map_shape``.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    window : int
        Pixels on each side.
    keep_short : bool, default False
        Keep a side of fewer than half the window beside a longer side (near
        a row's end); by default it is dropped, as a cluster could fill it.

    Returns
    -------
    left, right : numpy.ndarray
        Same shape as ``values``; NaN where a side has no pixel (or is
        dropped).
    counts_left, counts_right : numpy.ndarray of int
        ``(n_pixels,)``: how many pixels each median is over.
    """
    v = np.asarray(values, dtype=np.float64)
    trailing = v.shape[1:]
    rows = v.reshape(-1, map_shape[2], *trailing)
    n_rows, n_cols = rows.shape[:2]
    columns = np.arange(n_cols)
    count_left = np.tile(np.minimum(columns, window), (n_rows, 1))
    count_right = np.tile(np.minimum(n_cols - 1 - columns, window), (n_rows, 1))
    left, right = _side_medians(rows, window)
    # A side shorter than half the window, beside a longer one, is dropped:
    # at a row's end, a cluster could fill it.
    short = 0 if keep_short else (window + 1) // 2
    drop_left = (count_left < short) & (count_right > count_left)
    drop_right = (count_right < short) & (count_left > count_right)
    left[drop_left] = np.nan
    right[drop_right] = np.nan
    count_left[drop_left] = 0
    count_right[drop_right] = 0
    return (
        left.reshape(v.shape),
        right.reshape(v.shape),
        count_left.ravel(),
        count_right.ravel(),
    )


#: Two sides of a pixel disagree (a step or a boundary between them) when
#: they differ, beyond the trend, by more than this many standard errors:
#: 4.6 % of the time by chance, when the pixel is then compared with the most
#: lenient candidate (a little power lost), while a step missed would bias
#: the line.
AGREEMENT_LIMIT = 2.0


def _theil_sen(windows, error_windows, x):
    """Theil-Sen lines through windows of values, evaluated at ``x = 0``.

    Parameters
    ----------
    windows, error_windows : numpy.ndarray
        ``(n, width)`` values and their standard errors (NaN: no value).
    x : numpy.ndarray
        ``(width,)`` positions.

    Returns
    -------
    line, error, slope : numpy.ndarray
        ``(n,)`` each: the line's value at ``x = 0`` (NaN with fewer than
        two values), its standard error (a least-squares line's, from the
        median error, times ``sqrt(pi / 2)`` for the medians) and its slope.
    """
    width = len(x)
    a, b = np.triu_indices(width, 1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        slopes = (windows[:, b] - windows[:, a]) / (x[b] - x[a])
        slope = nanmedian_last(slopes)
        slope = np.where(np.isfinite(slope), slope, 0.0)
        line = nanmedian_last(windows - slope[:, None] * x)
        known = np.isfinite(windows)
        n = known.sum(axis=1)
        mean_x = np.nansum(np.where(known, x, np.nan), axis=1) / np.maximum(n, 1)
        spread = np.nansum(np.where(known, (x - mean_x[:, None]) ** 2, np.nan), axis=1)
        sigma = nanmedian_last(np.where(known, error_windows, np.nan))
        variance = sigma**2 * (
            1.0 / np.maximum(n, 1) + mean_x**2 / np.maximum(spread, 1e-12)
        )
        error = np.where(n >= 2, np.sqrt(np.pi / 2 * variance), np.nan)
        line = np.where(n >= 2, line, np.nan)
    return line, error, slope


def _row_windows(values, map_shape, window):
    """Each pixel's ``window`` row neighbours on each side (itself NaN).

    Returns
    -------
    numpy.ndarray
        ``(n_pixels, 2 * window + 1)``, NaN beyond a row's ends.
    """
    cols = map_shape[2]
    rows = np.asarray(values, dtype=np.float64).reshape(-1, cols)
    padded = np.pad(rows, ((0, 0), (window, window)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * window + 1, axis=1)
    return windows.reshape(-1, 2 * window + 1)


def _row_lines(values, errors, map_shape, window):
    """Theil-Sen line through each pixel's row neighbours (itself left out).

    For every pixel, the line through the values of the ``window`` pixels on
    each side in its row (fewer at a row's end; its own value left out),
    evaluated at the pixel: a linear drift or composition trend cancels, at
    the ends of a row too. The error uses the median error over the window.

    Returns
    -------
    line, error, slope : numpy.ndarray
        ``(n_pixels,)`` each: the line's value at the pixel, its standard
        error (a least-squares line's, times ``sqrt(pi / 2)`` for the
        medians) and its slope per pixel.
    """
    cols = map_shape[2]
    width = 2 * window + 1
    windows = _row_windows(values, map_shape, window).reshape(-1, cols, width).copy()
    windows[..., window] = np.nan  # the pixel itself
    error_windows = _row_windows(errors, map_shape, window).reshape(-1, cols, width)
    x = np.arange(width, dtype=np.float64) - window
    line = np.full(windows.shape[:2], np.nan)
    error = np.full(windows.shape[:2], np.nan)
    slopes_out = np.zeros(windows.shape[:2])
    for i in range(len(windows)):
        line[i], error[i], slopes_out[i] = _theil_sen(windows[i], error_windows[i], x)
    return line.ravel(), error.ravel(), slopes_out.ravel()


def _best_split(windows, min_run):
    """Where a step best splits each window into two runs of constant level.

    The split minimises the summed absolute departures of each run from its
    median; each run keeps at least ``min_run`` values.

    Returns
    -------
    numpy.ndarray of int
        ``(n,)``: the first position of the second run; -1 where no split
        leaves ``min_run`` values on both sides.
    """
    n, width = windows.shape
    known = np.isfinite(windows)
    costs = np.full((n, width), np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for split in range(1, width):
            cost = 0.0
            enough = np.ones(n, dtype=bool)
            for run, have in (
                (windows[:, :split], known[:, :split]),
                (windows[:, split:], known[:, split:]),
            ):
                centre = nanmedian_last(run)
                cost = cost + np.nansum(np.abs(run - centre[:, None]), axis=1)
                enough &= have.sum(axis=1) >= min_run
            costs[:, split] = np.where(enough, cost, np.inf)
    best = np.argmin(costs, axis=1)
    return np.where(np.isfinite(costs[np.arange(n), best]), best, -1)


def segment_lines(offset, offset_error, map_shape, window, pixels, min_gap=None):
    """Lines through the run of each pixel's row that its side of a step holds.

    Where a pixel's two sides disagree (a phase boundary or a drift step in
    its row window), the line through the whole window and the side reaching
    across the step both miss its level. The window's best single step (see
    :func:`_best_split`, runs of at least :data:`BOUNDARY_RUN` + 1 pixels)
    splits it in two; where the pixel lies at least :data:`BOUNDARY_RUN`
    pixels from it and its own run holds at least half the window (a
    shorter run may be a cluster of shifted pixels cut off at a row's end),
    the Theil-Sen line through the pixels of its own run (itself left out)
    stands for it, provided the step is sharp: the
    :data:`BOUNDARY_RUN` pixels of its run next to the step sit on the line
    within :data:`AGREEMENT_LIMIT` standard errors (a gradual interface,
    which one step does not describe, keeps no line), and the run holds one
    level (see :func:`_level_run`: a cluster of shifted pixels as wide as
    half the window, with normal pixels beyond it, is no region).

    Parameters
    ----------
    offset, offset_error : numpy.ndarray
        ``(n_pixels,)`` fitted offsets and their standard errors.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    window : int
        Pixels on each side in a row (see :func:`run_window`).
    pixels : numpy.ndarray of int
        Flat indices of the pixels to compute.
    min_gap : numpy.ndarray of int, optional
        ``(len(pixels),)``: the fewest pixels between each pixel and the
        step (default :data:`BOUNDARY_RUN`).

    Returns
    -------
    line, error : numpy.ndarray
        ``(len(pixels),)`` each; NaN where no run stands for the pixel.
    """
    pixels = np.asarray(pixels, dtype=int)
    line = np.full(len(pixels), np.nan)
    error = np.full(len(pixels), np.nan)
    if len(pixels) == 0:
        return line, error
    values, errors, split = _split_windows(
        offset, offset_error, map_shape, window, pixels
    )
    after = window >= split  # the pixel lies in the second run
    gap = np.where(after, window - split, split - 1 - window)
    min_gap = BOUNDARY_RUN if min_gap is None else np.asarray(min_gap)
    run, x, line, error, slope, sharp = _run_line(values, errors, split, after)
    # A run shorter than half the window may be a cluster of shifted pixels
    # itself (cut off at a row's end), as a short side may.
    keep = (
        (split > 0)
        & (gap >= min_gap)
        & (np.isfinite(run).sum(axis=1) >= (window + 1) // 2)
        & sharp
        & np.isfinite(line)
        & _level_run(run - slope[:, None] * x, errors)
    )
    return np.where(keep, line, np.nan), np.where(keep, error, np.nan)


def _split_windows(offset, offset_error, map_shape, window, pixels):
    """Each pixel's row window (itself NaN), their errors and best split."""
    values = _row_windows(offset, map_shape, window)[pixels].copy()
    values[:, window] = np.nan
    errors = _row_windows(offset_error, map_shape, window)[pixels]
    return values, errors, _best_split(values, BOUNDARY_RUN + 1)


def _run_line(values, errors, split, second):
    """Theil-Sen line through one run of each split window, and its step's sharpness.

    ``second`` says which run: the one from ``split`` on (True) or the one
    before it. The step is sharp where the :data:`BOUNDARY_RUN` pixels of
    the run next to it sit on the run's line within
    :data:`AGREEMENT_LIMIT` standard errors (a gradual interface, which
    one step does not describe, is not).

    Returns
    -------
    run, x, line, error, slope, sharp : numpy.ndarray
        The run's values (NaN elsewhere), the positions about the pixel,
        the line at the pixel, its error and slope, and the sharpness.
    """
    window = values.shape[1] // 2
    position = np.arange(values.shape[1])
    after = position[None, :] >= split[:, None]
    in_run = np.where(second[:, None], after, ~after)
    run = np.where(in_run, values, np.nan)
    x = position.astype(np.float64) - window
    line, error, slope = _theil_sen(run, errors, x)
    rim = in_run & np.where(
        second[:, None],
        position < split[:, None] + BOUNDARY_RUN,
        position >= split[:, None] - BOUNDARY_RUN,
    )
    rim_level, rim_error = _median_level(
        np.where(rim, values - slope[:, None] * x, np.nan), errors
    )
    with np.errstate(invalid="ignore"):
        sharp = np.abs(rim_level - line) <= AGREEMENT_LIMIT * np.hypot(rim_error, error)
    return run, x, line, error, slope, sharp


def longer_run_lines(offset, offset_error, map_shape, window, pixels):
    """Lines through the longer of the two runs a step splits each window into.

    Where a cluster of shifted pixels fills a row's end (see
    :func:`offset_references`), it is a quarter of the window or more at
    another level, all at one end: the Theil-Sen line through the whole
    window leans towards it, most at the end, where the line is
    extrapolated, and the cluster's pixels sit on it. The window's best
    single step (see :func:`_best_split`, runs of at least
    :data:`BOUNDARY_RUN` + 1 pixels) cuts the cluster off; the Theil-Sen line
    through the longer run (the pixel itself left out), at least half the
    window, stands for every pixel of the window, the cluster's and those
    beside it alike, where the step is sharp (as in :func:`segment_lines`:
    the :data:`BOUNDARY_RUN` pixels of the run next to the step sit on its
    line within :data:`AGREEMENT_LIMIT` standard errors; a field that
    curves towards the row's end is no cluster cut off).

    Parameters
    ----------
    offset, offset_error : numpy.ndarray
        ``(n_pixels,)`` fitted offsets and their standard errors.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    window : int
        Pixels on each side in a row (see :func:`run_window`).
    pixels : numpy.ndarray of int
        Flat indices of the pixels to compute.

    Returns
    -------
    line, error : numpy.ndarray
        ``(len(pixels),)`` each; NaN where no step splits the window, the
        longer run holds less than half of it, or the step is not sharp.
    """
    pixels = np.asarray(pixels, dtype=int)
    if len(pixels) == 0:
        return np.full(0, np.nan), np.full(0, np.nan)
    values, errors, split = _split_windows(
        offset, offset_error, map_shape, window, pixels
    )
    first = np.arange(values.shape[1])[None, :] < split[:, None]
    known = np.isfinite(values)
    second = (known & first).sum(axis=1) < (known & ~first).sum(axis=1)
    # The step must be sharp, as for :func:`segment_lines`: a field that
    # curves towards the row's end is no cluster cut off.
    run, _, line, error, _, sharp = _run_line(values, errors, split, second)
    usable = (split > 0) & (np.isfinite(run).sum(axis=1) >= (window + 1) // 2) & sharp
    return np.where(usable, line, np.nan), np.where(usable, error, np.nan)


def _level_run(run, errors):
    """Whether each run holds one level: its own best split changes nothing.

    A run that a second step splits (a cluster of shifted pixels as wide as
    a phase region, with normal pixels beyond it) is not one region: the
    medians of its two parts at their best split differ by more than
    :data:`AGREEMENT_LIMIT` standard errors.

    Parameters
    ----------
    run, errors : numpy.ndarray
        ``(n, width)`` detrended values (NaN outside the run) and their
        standard errors.

    Returns
    -------
    numpy.ndarray of bool
        ``(n,)``; True where no split leaves two parts of
        :data:`BOUNDARY_RUN` + 1 values.
    """
    split = _best_split(run, BOUNDARY_RUN + 1)
    first = np.arange(run.shape[1])[None, :] < split[:, None]
    (level, level_error), (other, other_error) = (
        _median_level(np.where(part, run, np.nan), errors) for part in (first, ~first)
    )
    with np.errstate(invalid="ignore"):
        apart = np.abs(other - level) > AGREEMENT_LIMIT * np.hypot(
            level_error, other_error
        )
    return (split < 0) | ~apart


def _median_level(values, errors):
    """Median of each row's values (NaN: none) and its standard error.

    The error is ``sqrt(pi / 2)`` times the median error of the values over
    the root of their number (a median's efficiency against a mean's).
    """
    known = np.isfinite(values)
    count = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        level = nanmedian_last(values)
        error = (
            np.sqrt(np.pi / 2)
            * nanmedian_last(np.where(known, errors, np.nan))
            / np.sqrt(np.maximum(count, 1))
        )
    return level, error


#: Rows above and below a pixel it may be compared with, beside a boundary
#: (see :func:`offset_references`): few, as the drift between rows,
#: measured from their differences, adds error with every row.
VERTICAL_RUN = 4


def _row_drift(offset, offset_error, map_shape):
    """The drift between consecutive scan rows, measured from their offsets.

    The drift from each row to the next is the median over the columns of
    their offsets' difference (a cluster or a phase boundary crosses few
    columns).

    Returns
    -------
    steps : numpy.ndarray
        ``(n_maps, rows - 1)``: from each row to the next.
    profile : numpy.ndarray
        ``(n_maps, rows)``: the drift of each row from the first.
    step_error : float
        Standard error of one step (the median of differences of two rows).
    """
    n_maps, rows, cols = map_shape
    o = np.asarray(offset, dtype=np.float64).reshape(map_shape)
    steps = np.median(o[:, 1:] - o[:, :-1], axis=2)
    profile = np.concatenate([np.zeros((n_maps, 1)), np.cumsum(steps, axis=1)], 1)
    step_error = np.sqrt(np.pi) * np.median(offset_error) / np.sqrt(cols)
    return steps, profile, step_error


def _vertical_references(offset, offset_error, map_shape, drift):
    """Median offsets of the pixels above and below, corrected for row drift.

    ``drift`` is that between consecutive rows (see :func:`_row_drift`).

    Returns
    -------
    references, errors : numpy.ndarray
        ``(2, n_pixels)`` each (up, down); NaN where there is no such row.
    """
    n_maps, rows, cols = map_shape
    refs = np.full((2, offset.size), np.nan)
    errs = np.full((2, offset.size), np.nan)
    if rows < 2:
        return refs, errs
    o = offset.reshape(map_shape)
    e = offset_error.reshape(map_shape)
    _, profile, step_error = drift
    flat = o - profile[:, :, None]
    for index, direction in ((0, -1), (1, 1)):
        values = np.full((VERTICAL_RUN, *map_shape), np.nan)
        errors = np.full((VERTICAL_RUN, *map_shape), np.nan)
        for k in range(1, min(VERTICAL_RUN, rows - 1) + 1):
            if direction < 0:
                values[k - 1][:, k:], errors[k - 1][:, k:] = flat[:, :-k], e[:, :-k]
            else:
                values[k - 1][:, :-k], errors[k - 1][:, :-k] = flat[:, k:], e[:, k:]
        count = np.sum(np.isfinite(values), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no row there
            median = np.nanmedian(values, axis=0) + profile[:, :, None]
            median_error = np.nanmedian(errors, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            error = np.hypot(
                np.sqrt(np.pi / 2) * median_error / np.sqrt(np.maximum(count, 1)),
                step_error * np.sqrt((count + 1) / 2),
            )
        refs[index] = np.where(count > 0, median, np.nan).ravel()
        errs[index] = np.where(count > 0, error, np.nan).ravel()
    return refs, errs


def _quiet_rows(drift, map_shape):
    """Pixels whose scan row the drift crossed without a jump.

    ``drift`` is that between consecutive rows (see :func:`_row_drift`). A
    row is quiet when the change from the row before it to the
    row after it equals, within :data:`AGREEMENT_LIMIT` standard errors,
    what the rows around (up to :data:`VERTICAL_RUN` changes on each side)
    drift at: no drift step happened while it was scanned. A drift step in
    the row moves every later row, a cluster of shifted pixels none.

    Returns
    -------
    numpy.ndarray of bool
        ``(n_pixels,)``; False where there are too few rows to tell.
    """
    n_maps, rows, cols = map_shape
    quiet = np.zeros((n_maps, rows), dtype=bool)
    if rows < 3:
        return np.repeat(quiet, cols, axis=1).ravel()
    steps, _, step_error = drift
    for r in range(rows):
        adjacent = [k for k in (r - 1, r) if 0 <= k < rows - 1]
        others = [
            k
            for k in range(r - 1 - VERTICAL_RUN, r + 1 + VERTICAL_RUN)
            if 0 <= k < rows - 1 and k not in adjacent
        ]
        if not others:
            continue
        rate = np.median(steps[:, others], axis=1)
        change = steps[:, adjacent].sum(axis=1) - len(adjacent) * rate
        error = step_error * np.sqrt(
            len(adjacent) + len(adjacent) ** 2 * np.pi / 2 / len(others)
        )
        quiet[:, r] = np.abs(change) <= AGREEMENT_LIMIT * error
    return np.repeat(quiet, cols, axis=1).ravel()


def _far_sides(values, map_shape, near, far):
    """Medians of the pixels ``near + 1`` to ``far`` away on each side in the row.

    Returns
    -------
    left, right : numpy.ndarray
        ``(n_pixels,)``; NaN where no such pixel is in the row.
    """
    cols = map_shape[2]
    rows = np.asarray(values, dtype=np.float64).reshape(-1, cols)
    padded = np.pad(rows, ((0, 0), (far, far)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * far + 1, axis=1)
    left = nanmedian_last(windows[..., : far - near])
    right = nanmedian_last(windows[..., far + near + 1 :])
    return left.ravel(), right.ravel()


def _narrow_in_columns(offset, profile, short_level, long_level, map_shape, window):
    """Pixels where few pixels above and below sit at their short side's level.

    In each column, the offsets of the rows within ``window`` above and
    below a pixel (itself included), corrected for the drift between the
    rows, that lie nearer the level of the pixel's short side than that of
    its long side: fewer than half the window, and the region at the short
    side's level is narrower in the columns than a side is long (a cluster
    of shifted pixels); as many or more, it is as tall as a side (a phase
    region).

    ``profile`` is the drift of each row (see :func:`_row_drift`).

    Returns
    -------
    numpy.ndarray of bool
        ``(n_pixels,)``.
    """
    rows = map_shape[1]
    flat = offset.reshape(map_shape) - profile[:, :, None]
    short_level = short_level.reshape(map_shape) - profile[:, :, None]
    long_level = long_level.reshape(map_shape) - profile[:, :, None]
    midpoint = (short_level + long_level) / 2
    direction = np.sign(short_level - long_level)
    count = np.zeros(map_shape)
    for k in range(-window, window + 1):
        lo, hi = max(0, -k), min(rows, rows - k)  # rows r with r + k inside
        if hi <= lo:
            continue
        other = flat[:, lo + k : hi + k]
        with np.errstate(invalid="ignore"):
            same = np.sign(other - midpoint[:, lo:hi]) == direction[:, lo:hi]
        count[:, lo:hi] += same
    return (count < (window + 1) // 2).ravel()


def _extended_in_columns(
    offset, offset_error, long_level, long_error, short_level, map_shape
):
    """Pixels whose short side's departure is seen in the rows above and below.

    The pixels just above and just below, in the same column, both depart
    from their own rows' long-side levels by more than
    :data:`AGREEMENT_LIMIT` standard errors, in the direction of the
    pixel's short side from its long side. A drift step is an event in
    time: it moves the rest of the row it happens in and every later row as
    a whole, so the rows before and after are flat in themselves; a cluster
    of shifted pixels reaches across rows at the same columns.

    Returns
    -------
    numpy.ndarray of bool
        ``(n_pixels,)``; False in the first and last rows.
    """
    out = np.zeros(map_shape, dtype=bool)
    if map_shape[1] < 3:
        return out.ravel()
    with np.errstate(invalid="ignore"):
        departure = (offset - long_level).reshape(map_shape)
        error = np.hypot(offset_error, long_error).reshape(map_shape)
        beyond = np.abs(departure) > AGREEMENT_LIMIT * error
        direction = np.sign(short_level - long_level).reshape(map_shape)[:, 1:-1]
    out[:, 1:-1] = True
    for rows in (slice(None, -2), slice(2, None)):  # the row above, the row below
        out[:, 1:-1] &= beyond[:, rows] & (np.sign(departure[:, rows]) == direction)
    return out.ravel()


def offset_references(offset, offset_error, map_shape, window):
    """Where each pixel's spectrum should sit, judged from its neighbours.

    Five candidate references per pixel:

    0. *line*: a robust straight line through the ``window`` pixels on each
       side in its scan row (see :func:`_row_lines`): a linear drift or
       composition trend cancels, at the ends of a row too;
    1, 2. *left*, *right*: the median of the row's pixels on one side only;
    3, 4. *up*, *down*: the median of the :data:`VERTICAL_RUN` pixels above
       (below) in its column, corrected for the drift between the rows.

    ``step`` marks pixels whose two sides disagree, beyond the line's trend,
    by more than :data:`AGREEMENT_LIMIT` standard errors, or whose
    :data:`BOUNDARY_RUN` pixels just beside them on both sides disagree so
    with the line, in opposite directions: a drift step or a phase boundary
    lies near (on one side only, or in the same direction, the pixels beside
    it belong to a region narrower than the sides, such as a cluster of
    shifted pixels, which the line measures rightly). Near a row's end (a
    side shorter than half the window), the sides' disagreement is no step
    where the drift did not jump while the row was scanned (see
    :func:`_quiet_rows`) or the rows just above and below depart at the
    pixel's column as its short side does (see
    :func:`_extended_in_columns`; a drift step leaves them flat), and few
    pixels above and below sit at the short side's level (see
    :func:`_narrow_in_columns`): a cluster of shifted pixels fills the
    short side, and the line through the window's longer run, beyond the
    cluster's edge, replaces the whole window's, which leans towards the
    cluster (see :func:`longer_run_lines`). Which candidate a pixel
    is compared with is decided by :func:`candidate_choice`, from the
    latent points.

    Parameters
    ----------
    offset, offset_error : numpy.ndarray
        ``(n_pixels,)`` fitted offsets and their standard errors.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    window : int
        Pixels on each side in a row (see :func:`run_window`).

    Returns
    -------
    references, errors : numpy.ndarray
        ``(5, n_pixels)`` each; NaN where a candidate does not exist.
    step : numpy.ndarray of int
        ``(n_pixels,)``: 0 none; 1 the sides disagree, or the line misses the
        pixels just beside the pixel on both sides in opposite directions; 2
        so at a row's end (a side of fewer than two pixels), or no line; 3
        as 1 (or as 0 with a line that misses the pixels just beside the
        pixel on both sides in the same direction, the step at least half
        a window away), but the pixel lies clear of a sharp step and the
        line (candidate 0) is that through its own run of the row (see
        :func:`segment_lines`).
    mixed : numpy.ndarray of bool
        ``(2, n_pixels)``: the left (right) side's median departs from that
        of its :data:`BOUNDARY_RUN` pixels beside the pixel by more than
        :data:`AGREEMENT_LIMIT` standard errors (beyond the trend): the side
        reaches across a boundary or a step.
    """
    n = offset.size
    refs = np.full((5, n), np.nan)
    errs = np.full((5, n), np.nan)
    refs[0], errs[0], slope = _row_lines(offset, offset_error, map_shape, window)
    left, right, n_left, n_right = one_sided_references(
        offset, map_shape, window, keep_short=True
    )
    e_left, e_right, _, _ = one_sided_references(
        offset_error, map_shape, window, keep_short=True
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        refs[1] = left
        errs[1] = np.sqrt(np.pi / 2) * e_left / np.sqrt(np.maximum(n_left, 1))
        refs[2] = right
        errs[2] = np.sqrt(np.pi / 2) * e_right / np.sqrt(np.maximum(n_right, 1))
    # A side of a single pixel is too noisy to stand for a region.
    for k, count in ((1, n_left), (2, n_right)):
        refs[k][count < 2] = np.nan
        errs[k][count < 2] = np.nan
    drift = _row_drift(offset, offset_error, map_shape)
    refs[3:], errs[3:] = _vertical_references(offset, offset_error, map_shape, drift)
    # The sides' centres are (n + 1) / 2 pixels away; under the line's trend
    # they differ by the slope times their distance.
    distance = (n_left + 1) / 2 + (n_right + 1) / 2
    with np.errstate(invalid="ignore"):
        departure = np.abs(refs[2] - refs[1] - slope * distance)
        step = ~(departure <= AGREEMENT_LIMIT * np.hypot(errs[1], errs[2]))
    # Near a row's end a side is short, and a cluster of shifted pixels can
    # fill it: the sides then disagree with no step between them. No drift
    # step when the drift did not jump while the row was scanned, or when
    # the rows just above and below depart at the pixel's column as its
    # short side does (under row-to-row jitter every row's drift jumps, but a
    # drift step still leaves the rows before and after flat); no phase
    # region when few pixels above and below sit at the short side's level
    # (where the sides' levels differ, not only the line's trend): the line
    # measures the pixel.
    half = (window + 1) // 2
    short = (n_left < half) | (n_right < half)
    # A side of fewer than two pixels is none: the pixel's own level stands.
    left_short = n_left < n_right
    short_level = np.where(left_short, refs[1], refs[2])
    short_error = np.where(left_short, errs[1], errs[2])
    known = np.isfinite(short_level)
    short_level = np.where(known, short_level, offset)
    short_error = np.where(known, short_error, offset_error)
    # The long side's far half: a phase region at the row's end may reach
    # into its near half, a cluster does not.
    far_left, far_right = _far_sides(offset, map_shape, half, window)
    long_level = np.where(left_short, far_right, far_left)
    long_error = np.where(left_short, errs[2], errs[1]) * np.sqrt(2)
    with np.errstate(invalid="ignore"):
        levels_differ = np.abs(short_level - long_level) > AGREEMENT_LIMIT * np.hypot(
            short_error, long_error
        )
    local = (
        short
        & (
            _quiet_rows(drift, map_shape)
            | _extended_in_columns(
                offset, offset_error, long_level, long_error, short_level, map_shape
            )
        )
        & levels_differ
        & _narrow_in_columns(
            offset,
            drift[1],
            short_level,
            long_level,
            map_shape,
            run_window(map_shape[1]),
        )
    )
    step &= ~local
    # The pixels just beside it on each side: where their median departs
    # from the whole side's, the side reaches across a boundary or a step.
    near_left, near_right, k_left, k_right = one_sided_references(
        offset, map_shape, BOUNDARY_RUN, keep_short=True
    )
    e_near_left, e_near_right, _, _ = one_sided_references(
        offset_error, map_shape, BOUNDARY_RUN, keep_short=True
    )
    near = np.stack([near_left, near_right])
    counts = np.stack([k_left, k_right])
    with np.errstate(invalid="ignore", divide="ignore"):
        near_error = (
            np.sqrt(np.pi / 2)
            * np.stack([e_near_left, e_near_right])
            / np.sqrt(np.maximum(counts, 1))
        )
        # Centres (count + 1) / 2 pixels to the left (-) and right (+).
        centres = (counts + 1) / 2 * np.array([[-1.0], [1.0]])
        whole_centres = (
            (np.stack([n_left, n_right]) + 1) / 2 * np.array([[-1.0], [1.0]])
        )
        trend = slope * (centres - whole_centres)
        mixed = ~(
            np.abs(near - refs[1:3] - trend)
            <= AGREEMENT_LIMIT * np.hypot(near_error, errs[1:3])
        ) & np.isfinite(refs[1:3])
        apart = near - refs[0] - slope * centres
        end_step = ~(np.abs(apart) <= AGREEMENT_LIMIT * np.hypot(near_error, errs[0]))
    # A line that misses the pixels just beside the pixel on both sides, in
    # opposite directions, runs across a step or a boundary (its slope, taken
    # through the step, can hide that from the two sides' comparison). A line
    # that misses them on one side only, or on both in the same direction,
    # passes a region narrower than the sides (a cluster of shifted pixels,
    # the pixel in it or at its rim), which the line measures rightly.
    flanked = end_step.all(axis=0) & (counts > 0).all(axis=0)
    same_direction = np.sign(apart[0]) == np.sign(apart[1])
    across = flanked & ~same_direction
    step |= across
    step |= ~np.isfinite(refs[0])
    # At a row's end (a side of fewer than two pixels) the row alone may hold
    # no reference of the pixel's kind: every candidate, the rows above and
    # below too.
    end = (n_left < 2) | (n_right < 2)
    code = np.where(step, np.where(end, 2, 1), 0)
    # Away from the step, the run of the row on the pixel's side of it
    # stands for the pixel (its line replaces the whole window's). A line
    # that misses the pixels beside the pixel on both sides in the same
    # direction may also have been pulled by a step further off (a quarter
    # of the window at another level, near a Theil-Sen line's breakdown):
    # there the run is sought too, where the step lies at least half a
    # window away, further than the edge of a cluster the pixel lies in
    # (a cluster as wide as half the window is taken for a region anyway).
    across_step = np.flatnonzero((code == 1) | ((code == 0) & flanked & same_direction))
    segment, segment_error = segment_lines(
        offset,
        offset_error,
        map_shape,
        window,
        across_step,
        min_gap=np.where(code[across_step] == 1, BOUNDARY_RUN, (window + 1) // 2),
    )
    found = np.isfinite(segment)
    refs[0][across_step[found]] = segment[found]
    errs[0][across_step[found]] = segment_error[found]
    code[across_step[found]] = 3
    # Where a cluster fills the short side, it also pulls the whole window's
    # line towards it: the line through the window's longer run measures
    # the pixel (see :func:`longer_run_lines`).
    pulled = np.flatnonzero(local & (code == 0))
    longer, longer_error = longer_run_lines(
        offset, offset_error, map_shape, window, pulled
    )
    found = np.isfinite(longer)
    refs[0][pulled[found]] = longer[found]
    errs[0][pulled[found]] = longer_error[found]
    return refs, errs, code, mixed


#: A pixel sits beside a phase boundary when its latent point is closer to
#: the pixels just on one side than this fraction of its distance to those
#: just on the other side...
BOUNDARY_RATIO = 0.5
#: ... and that far side departs from it by more than this many noise units
#: per informative latent coordinate (a smooth trend does neither).
BOUNDARY_DEPARTURE = 3.0
#: Pixels on each side that show a boundary right beside a pixel.
BOUNDARY_RUN = 3


def latent_candidates(latent, map_shape, window):
    """Latent points of the one-sided candidate references (1 to 4).

    The left and right medians of the row neighbours' latent points, and the
    medians of the :data:`VERTICAL_RUN` pixels above and below (index 0, the
    line, is not needed by :func:`candidate_choice` and stays NaN).

    Returns
    -------
    numpy.ndarray
        ``(5, n_pixels, latent_dim)``; NaN where a candidate does not exist.
    """
    latent = np.asarray(latent, dtype=np.float64)
    n, dims = latent.shape
    out = np.full((5, n, dims), np.nan)
    out[1], out[2], _, _ = one_sided_references(
        latent, map_shape, window, keep_short=True
    )
    n_maps, rows, cols = map_shape
    maps = latent.reshape(n_maps, rows, cols, dims)
    for index, direction in ((3, -1), (4, 1)):
        values = np.full((VERTICAL_RUN, n_maps, rows, cols, dims), np.nan)
        for k in range(1, min(VERTICAL_RUN, rows - 1) + 1):
            if direction < 0:
                values[k - 1][:, k:] = maps[:, :-k]
            else:
                values[k - 1][:, :-k] = maps[:, k:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no row there
            out[index] = np.nanmedian(values, axis=0).reshape(n, dims)
    return out


def candidate_choice(latent, candidates, step, map_shape, mixed=None):
    """Which candidate reference each pixel is compared with.

    The latent points carry mostly what a spectrum looks like, less where
    it sits, so they tell which side of a phase boundary a pixel belongs to
    without looking at its own energy offset. A boundary is right beside a
    pixel when its latent point is much closer to the median of the
    :data:`BOUNDARY_RUN` pixels just on one side than to those just on the
    other (:data:`BOUNDARY_RATIO`), and the far ones depart from it clearly
    (:data:`BOUNDARY_DEPARTURE`):

    * both sides of its row exist: at a boundary, the near side (1 left, 2
      right), or -1 where that side reaches across another boundary
      (``mixed``); else, where ``step`` is 1 (a drift step, or a boundary
      further off), -1: the smallest score of the line and the two sides;
      where it is 2 (so at a row's end), -2: the smallest of every
      candidate; else (0, or 3: the line through the pixel's own run of
      the row beside a step) the line (0);
    * one side only (a row's end): at a boundary, the vertical candidate (3
      up, 4 down) nearer in latent; else as above;
    * no side: -2.

    Parameters
    ----------
    latent : numpy.ndarray
        ``(n_pixels, latent_dim)``.
    candidates : numpy.ndarray
        ``(5, n_pixels, latent_dim)`` from :func:`latent_candidates`.
    step : numpy.ndarray of int
        ``(n_pixels,)`` from :func:`offset_references`.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    mixed : numpy.ndarray of bool, optional
        ``(2, n_pixels)`` from :func:`offset_references`: a near side that
        reaches across another boundary further off is not a reference
        (-1 instead).

    Returns
    -------
    numpy.ndarray of int
        ``(n_pixels,)``.
    """
    latent = np.asarray(latent, dtype=np.float64)
    n, dims = latent.shape
    # Each coordinate in units of its pixel-to-pixel noise (neighbours along
    # a row differ by sqrt(2) of it); coordinates that barely vary over the
    # map beyond that noise carry no phase and are left out.
    rows = latent.reshape(-1, map_shape[2], dims)
    difference = np.diff(rows, axis=1).reshape(-1, dims)
    noise = 1.4826 * np.median(np.abs(difference), axis=0) / np.sqrt(2)
    noise = np.maximum(noise, 1e-9)
    informative = latent.std(axis=0) > 2 * noise
    has_left = np.isfinite(candidates[1]).all(axis=1)
    has_right = np.isfinite(candidates[2]).all(axis=1)
    choice = np.where(step == 2, -2, np.where(step == 1, -1, 0))
    choice = np.where(~has_left & ~has_right, -2, choice)
    if not informative.any():
        return choice
    scaled = latent[:, informative] / noise[informative]
    near_left, near_right, _, _ = one_sided_references(
        scaled, map_shape, BOUNDARY_RUN, keep_short=True
    )

    def distance(reference):
        d = np.sqrt(np.sum((scaled - reference) ** 2, axis=-1))
        return np.where(np.isfinite(d), d, np.inf)

    d_left, d_right = distance(near_left), distance(near_right)
    near = np.minimum(d_left, d_right)
    far = np.maximum(d_left, d_right)
    departure = BOUNDARY_DEPARTURE * np.sqrt(informative.sum())
    boundary = (near < BOUNDARY_RATIO * far) & (far > departure) & np.isfinite(far)
    side_choice = np.where(d_left <= d_right, 1, 2)
    if mixed is not None:
        side_choice = np.where(
            np.where(d_left <= d_right, mixed[0], mixed[1]), -1, side_choice
        )
    choice = np.where(boundary & has_left & has_right, side_choice, choice)
    # At a row's end the one row side is the far one: look up and down.
    d_up = distance(candidates[3][:, informative] / noise[informative])
    d_down = distance(candidates[4][:, informative] / noise[informative])
    side = np.where(has_left, d_left, d_right)
    vertical = np.minimum(d_up, d_down)
    edge = (
        (has_left ^ has_right) & (vertical < BOUNDARY_RATIO * side) & (side > departure)
    )
    return np.where(edge, np.where(d_up <= d_down, 3, 4), choice)


def _offset_weight(expected, tangent, keep, smoothing):
    """Standardised weights ``w sqrt(m)`` of the offset's estimating equation."""
    from .nn.alignment import offset_weights

    m = expected.float()
    return offset_weights(m, tangent.float(), smoothing) * torch.sqrt(m) * keep


def offset_score(counts, expected, tangent, correlation, spikes=None, smoothing=0.0):
    """Score statistic of the energy offset at the offset of ``expected``.

    ``S = sum (y - m) w`` with ``w = t / m`` (the derivative of the
    log-likelihood with respect to the offset) or its smoothed form (see
    :func:`hyperspy_vae.nn.alignment.offset_weights`), with its noise
    variance ``V = w~' R w~`` (``w~ = w sqrt(m)``, ``R`` the channel
    correlations) and its sensitivity ``J = sum t w`` (the Fisher
    information ``I`` when unsmoothed). Near that offset ``S`` grows as
    ``J`` times the pixel's departure from it, with standard error
    ``sqrt(V) / J``.

    Returns
    -------
    score, variance, information : numpy.ndarray
        ``(batch,)`` float64 each (``information`` is ``J``).
    """
    y = counts.float()
    m = expected.float().clamp_min(_EPS)
    keep = torch.ones_like(y) if spikes is None else (~spikes).float()
    slope = tangent.float() / torch.sqrt(m) * keep
    weight = _offset_weight(m, tangent, keep, smoothing)
    residual = (y - m) / torch.sqrt(m) * keep
    score = (residual * weight).sum(-1, dtype=torch.float64)
    variance = _quadratic_form(weight, correlation)
    information = (slope * weight).sum(-1, dtype=torch.float64)
    return score.cpu().numpy(), variance.cpu().numpy(), information.cpu().numpy()


#: Smoothings (Gaussian standard deviations, channels) of the offset's
#: weights among which each model takes the one whose offsets scatter least
#: (:func:`least_scattered`): none, up to a few channels (a white line spans
#: several channels wherever an edge shift is measurable at all).
OFFSET_SMOOTHINGS = (0.0, 1.0, 2.0, 4.0)


def least_scattered(offsets, map_shape, pixels=None):
    """Which set of offsets scatters least about its scan rows' lines.

    The offsets of one map fitted with differently smoothed weights (see
    :data:`OFFSET_SMOOTHINGS`, the first unsmoothed) estimate the same
    positions; the one whose robust spread (1.4826 times the median absolute
    deviation) about each row's Theil-Sen line is smallest is the most
    precise. Drift, steps and anomalous pixels are common to all of them and
    barely move medians. A smoothed set is taken only where its pixels'
    absolute departures are smaller than the unsmoothed set's, pixel by
    pixel, at the one-sided level of :data:`AGREEMENT_LIMIT` standard
    errors (Wilcoxon's signed-rank test, 2.3 %): on a small map the spreads'
    noise does not choose. The test is paired: the sets are measured on the
    same pixels and share their noise and the model's misfit, so it sees a
    difference that two spreads compared as independent values (as an
    earlier version did) hide in their noise. On a 100-pixel line scan
    (tuning seed 8) smoothing by 2 channels took the spread from 0.51 to
    0.36 channels, yet stayed within two standard errors of independent
    spreads; the pairs favoured it at p = 0.01.

    Parameters
    ----------
    offsets : numpy.ndarray
        ``(n_sets, n_pixels)``.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    pixels : numpy.ndarray of bool, optional
        ``(n_pixels,)``: the pixels whose spread counts (default: all).

    Returns
    -------
    index : int
    spreads : numpy.ndarray
        ``(n_sets,)``.
    """
    use = slice(None) if pixels is None else np.asarray(pixels, dtype=bool)
    departures = np.stack(
        [
            (values - row_trends(values, map_shape))[use]
            for values in np.asarray(offsets, dtype=np.float64)
        ]
    )
    finite = np.isfinite(departures)
    spreads = np.array(
        [
            stats.median_abs_deviation(d[ok], scale="normal") if ok.any() else np.inf
            for d, ok in zip(departures, finite, strict=True)
        ]
    )
    clearly = np.zeros(spreads.size, dtype=bool)
    clearly[0] = True
    level = stats.norm.sf(AGREEMENT_LIMIT)
    for k in range(1, spreads.size):
        both = finite[0] & finite[k]
        if both.sum() < 2 or not spreads[k] < spreads[0]:
            continue
        closer = stats.wilcoxon(
            np.abs(departures[0, both]),
            np.abs(departures[k, both]),
            alternative="greater",
        )
        clearly[k] = closer.pvalue < level
    return int(np.argmin(np.where(clearly, spreads, np.inf))), spreads


def context_shift(
    scores, variances, informations, likelihood_ratios, reference_errors, choice
):
    """Standardised energy shift of each pixel against its neighbours.

    For each candidate reference (see :func:`offset_references`), the signed
    root of the (quasi-) likelihood ratio between the pixel's own offset and
    the reference's, ``sign(S) sqrt(LR J / V)`` (the score test
    ``S / sqrt(V)`` for a small shift; unlike it, it keeps growing for a
    shift wider than the edge), divided by ``sqrt(1 + J**2 se**2 / V)`` for
    the reference's own error ``se``. The ``J / V`` factor corrects the
    ratio for correlated channels and smoothed weights (see
    :func:`offset_score`). Each pixel takes the candidate of ``choice`` (see
    :func:`candidate_choice`); where it is -1, the smallest ``|z|`` of the
    line and the two sides, -2 of every candidate (at a row's end beside a
    boundary the rows above and below may be the only reference of the
    pixel's kind). A pixel with no neighbour: 0.

    Parameters
    ----------
    scores, variances, informations : numpy.ndarray
        ``(5, n_pixels)`` from :func:`offset_score` at each candidate.
    likelihood_ratios : numpy.ndarray
        ``(5, n_pixels)``: twice the (quasi-) log-likelihood of the pixel's
        own offset less that of each candidate's: the integral of the score
        ``S`` from the candidate's offset to the pixel's.
    reference_errors : numpy.ndarray
        ``(5, n_pixels)`` from :func:`offset_references` (NaN: no candidate).
    choice : numpy.ndarray of int
        ``(n_pixels,)`` from :func:`candidate_choice`.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)`` z.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sign(scores) * np.sqrt(
            np.maximum(likelihood_ratios, 0.0) * informations / variances
        )
        z = root / np.sqrt(1.0 + informations**2 * reference_errors**2 / variances)
    z = np.where(np.isfinite(z), z, np.inf)
    pixels = np.arange(z.shape[1])
    every = z[np.argmin(np.abs(z), axis=0), pixels]
    row = z[np.argmin(np.abs(z[:3]), axis=0), pixels]
    chosen = z[np.maximum(choice, 0), pixels]
    best = np.where(choice == -1, row, np.where(choice == -2, every, chosen))
    best = np.where(np.isfinite(best), best, every)
    return np.where(np.isfinite(best), best, 0.0)


def context_latent(latent, map_shape, window, spread=None):
    """Squared distance of each latent point from its row neighbours'.

    Each coordinate of ``latent - side median`` is divided by ``spread``;
    the closer of the two sides counts (as in :func:`context_shift`).

    Parameters
    ----------
    latent : numpy.ndarray
        ``(n_pixels, latent_dim)``.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    window : int
        Pixels on each side.
    spread : numpy.ndarray, optional
        ``(latent_dim,)`` scale of each coordinate's difference (default 1).

    Returns
    -------
    distance : numpy.ndarray
        ``(n_pixels,)``.
    differences : numpy.ndarray
        ``(n_pixels, latent_dim)`` difference from the closer side.
    """
    latent = np.asarray(latent, dtype=np.float64)
    spread = np.ones(latent.shape[1]) if spread is None else np.asarray(spread)
    left, right, n_left, n_right = one_sided_references(latent, map_shape, window)
    best = np.full(len(latent), np.inf)
    chosen = np.zeros_like(latent)
    for reference, n in ((left, n_left), (right, n_right)):
        difference = latent - reference
        distance = np.sum((difference / spread) ** 2, axis=1)
        distance = np.where(n > 0, distance, np.inf)
        closer = distance < best
        best = np.where(closer, distance, best)
        chosen[closer] = difference[closer]
    return np.where(np.isfinite(best), best, 0.0), chosen


#: Rows longer than this use the pairs half a row apart for the Theil-Sen
#: slope (all pairs would need memory growing with the square).
_MAX_PAIRWISE = 512


def row_trends(values, map_shape):
    """Robust straight line through each scan row's values (Theil-Sen), NaN ignored.

    Drift changes slowly within a row (a row takes a fraction of a second)
    and may jump between rows: a line per row follows it. A line cannot
    follow a phase boundary across the row (a step), so what the model
    learns about a second phase's energy is not taken for drift.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n_pixels,)``; NaN for pixels without a value.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)``: each row's line at each pixel (NaN in rows without
        values).
    """
    rows = np.asarray(values, dtype=np.float64).reshape(-1, map_shape[2])
    x = np.arange(rows.shape[1], dtype=np.float64)
    out = np.full(rows.shape, np.nan)
    for i, row in enumerate(rows):
        known = np.isfinite(row)
        if not known.any():
            continue
        xs, ys = x[known], row[known]
        slope = 0.0
        if xs.size >= 2:
            if xs.size <= _MAX_PAIRWISE:
                a, b = np.triu_indices(xs.size, 1)
            else:
                # Long rows (line scans): the pairs half a row apart, as
                # many slopes as there are pixels, not their square.
                a = np.arange(xs.size - xs.size // 2)
                b = a + xs.size // 2
            slope = float(np.median((ys[b] - ys[a]) / (xs[b] - xs[a])))
        intercept = float(np.median(ys - slope * xs))
        out[i] = intercept + slope * x
    return out.ravel()


#: Fewest pixels a local spread of the shift scores is measured on: the
#: spread's standard error is then at most a tenth (the median absolute
#: deviation of ``n`` normal values estimates their standard deviation within
#: ``1.17 / sqrt(n)``), and a pixel's own departure barely moves it.
MIN_LOCAL_PIXELS = 137


def locally_standardised(z, map_shape, window, scored=None):
    """``z`` less its local median, over its local spread (at least 1).

    Where the model fits some region less well than the noise model allows
    (sharp composition changes, very high counts), the shift scores there
    spread wider, or are offset, together; standardising by the median and
    the median absolute deviation over a square of ``2 window + 1`` pixels
    (a stretch of ``2 window + 1`` pixels of a line scan, cut at the map's
    edges) takes that out, while a pixel or a small cluster that departs
    from its surroundings barely moves either median. The spread is floored
    at 1, the noise model's: scores that spread narrower (near steps and
    boundaries, where the most lenient reference counts) are not widened,
    as a reference that reaches across a boundary half a row away could
    then pass for an anomaly (measured on two-phase maps).

    Only the ``scored`` pixels enter the local statistics: a model's scores
    of the pixels it learned from spread narrower than those of pixels new
    to it, and would understate their spread. Where a square holds fewer
    than :data:`MIN_LOCAL_PIXELS` of them (small maps, line scans, a map's
    corners), its half-width is doubled until it does or covers the map: on
    a 10 x 6 map a square of half-width 2 held six, the pixel's own among
    them, and their spread, wide by chance, took a shifted pixel from 3.9
    to 2.2 standard deviations. The statistics are computed
    at centres every ``window // 4`` pixels (every pixel on small maps) and
    each pixel takes its nearest centre's: squares of neighbouring centres
    share at least three quarters of their pixels along each side.

    Parameters
    ----------
    z : numpy.ndarray
        ``(n_pixels,)``.
    map_shape : tuple of int
        ``(n_maps, rows, columns)``.
    window : int
        Half-width of the square.
    scored : numpy.ndarray of bool, optional
        ``(n_pixels,)``: the pixels whose values make the local statistics
        (default: all).

    Returns
    -------
    numpy.ndarray
        ``(n_pixels,)``.
    """
    maps = np.asarray(z, dtype=np.float64).reshape(map_shape)
    use = (
        np.ones(map_shape, dtype=bool)
        if scored is None
        else np.asarray(scored, dtype=bool).reshape(map_shape)
    )
    n_maps, rows, cols = map_shape
    step = max(1, window // 4)
    row_centres = np.arange(0, rows, step)
    col_centres = np.arange(0, cols, step)
    centre = np.zeros((n_maps, row_centres.size, col_centres.size))
    spread = np.ones_like(centre)
    largest = max(rows, cols)
    for m in range(n_maps):
        for a, r in enumerate(row_centres):
            for b, c in enumerate(col_centres):
                width = max(window, 1)
                while True:
                    rows_in = slice(max(r - width, 0), r + width + 1)
                    cols_in = slice(max(c - width, 0), c + width + 1)
                    values = maps[m, rows_in, cols_in][use[m, rows_in, cols_in]]
                    if values.size >= MIN_LOCAL_PIXELS or width >= largest:
                        break
                    width *= 2
                if values.size:
                    centre[m, a, b] = np.median(values)
                    spread[m, a, b] = max(
                        1.4826 * np.median(np.abs(values - centre[m, a, b])), 1.0
                    )
    near_row = np.minimum(
        np.rint(np.arange(rows) / step).astype(int), row_centres.size - 1
    )
    near_col = np.minimum(
        np.rint(np.arange(cols) / step).astype(int), col_centres.size - 1
    )
    local = np.ix_(np.arange(n_maps), near_row, near_col)
    return ((maps - centre[local]) / spread[local]).ravel()

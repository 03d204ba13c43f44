"""The detection pipeline on a :class:`SpectrumCube`: fit, score, calibrate.

No HyperSpy here: :mod:`hyperspy_vae.decomposition` turns signals into a cube
and the results back into signals.

Cross-fitting (see :mod:`hyperspy_vae.folds`): one model is trained on each
of two spatial folds, and each pixel is scored by the model of the other
fold, against a null fitted on the other half of its own fold. Every pixel
is also run through the model that did learn from it, only for the offsets
and latent points that its neighbours are compared with.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from . import nulls, scoring
from .folds import block_folds

__all__ = ["Detection", "FixedReconstruction", "detect", "fit_seed"]

#: Fewest training pixels per fold; fewer and both models train on every
#: training pixel (tiny maps: the p-values then lean on the noise model).
MIN_FOLD_PIXELS = 8
#: Calibration pixels per set used for the per-channel residual statistics.
RESIDUAL_SAMPLE = 1024
#: Simulated noise spectra for the theoretical nulls.
N_SIMULATED = 2000
#: Up to this many calibration pixels for a model, each pixel's null is
#: fitted on all of them but itself (one fit per pixel, n**2 work); above,
#: the other half alone holds over 500 pixels (Student's t with over 350
#: degrees of freedom: the normal).
LEAVE_ONE_OUT_MAX = 1000


@dataclass
class Detection:
    """Everything one detection run computes, per pixel (flat order).

    With several fits, the statistics (``raw_scores``, ``p_values``,
    ``combined_p``, ``offset_error``) are the fits' average, calibrated;
    ``latent_mean``, ``latent_log_var`` and ``offset`` are the first fit's
    (they are relative to its networks); ``spikes`` is the majority's;
    ``fit_combined_p`` holds each fit's own combined p-values
    ``(n_fits, n_pixels)``.
    """

    models: list
    histories: list
    latent_mean: np.ndarray
    latent_log_var: np.ndarray
    offset: np.ndarray
    offset_error: np.ndarray
    drift: np.ndarray
    spikes: np.ndarray
    raw_scores: dict
    p_values: dict
    combined_p: np.ndarray
    scores: np.ndarray
    train_index: np.ndarray
    folds: np.ndarray
    halves: np.ndarray
    residual_stats: list = field(default_factory=list)
    fit_combined_p: np.ndarray = None


class FixedReconstruction:
    """A reconstruction computed elsewhere (a PCA model), scored like a network's.

    Parameters
    ----------
    expected : numpy.ndarray
        ``(n_pixels, n_channels)`` expected effective counts, positive.
    latent : numpy.ndarray
        ``(n_pixels, d)`` coordinates of each pixel (PCA loadings).
    """

    def __init__(self, expected, latent):
        self.logits = np.log(np.maximum(expected, 1e-12)).astype(np.float32)
        self.latent = np.asarray(latent, dtype=np.float32)
        self.latent_dim = self.latent.shape[1]


def _align(logits, y, start, spike_limit, n_iter=4, smoothing=0.0, max_shift=None):
    """Offsets from ``start`` by Gauss-Newton, spikes found and left out.

    ``spike_limit`` is the pair (limit of the spike statistic, per-channel
    Poisson tail probability) of :func:`scoring.find_spikes`; ``smoothing``
    that of the weights (see :func:`hyperspy_vae.nn.alignment.offset_weights`).
    A spike drags the offset fitted with it (towards where the shape's
    slope puts it), so a spectrum with spikes is fitted again from
    ``start``, the spikes left out; when ``start`` came from the coarse
    search (``max_shift``, channels), so does the new start, the spike
    channels replaced by the counts expected there. The spikes are then
    found again at the new offset (those found at a wrong one may include
    channels of a misfitted edge).
    """
    import torch

    from .nn.alignment import coarse_offsets, fit_offsets

    def spikes_at(counts, expected):
        residual = (counts - expected) / torch.sqrt(expected.clamp_min(1e-12))
        return scoring.find_spikes(
            residual, spike_limit[0], counts, expected, alpha=spike_limit[1]
        )

    offset, expected, tangent = fit_offsets(
        logits, y, start, n_iter, smoothing=smoothing
    )
    spikes = spikes_at(y, expected)
    hit = spikes.any(-1)
    if not bool(hit.any()):
        return offset, expected, tangent, spikes
    y_hit, logits_hit, struck = y[hit], logits[hit], spikes[hit]
    begin = start[hit]
    if max_shift is not None:
        filled = torch.where(struck, expected[hit], y_hit)
        begin = coarse_offsets(filled, logits_hit, max_shift)
    found = fit_offsets(
        logits_hit, y_hit, begin, n_iter, weight=(~struck).float(), smoothing=smoothing
    )
    struck = spikes_at(y_hit, found[1])
    found = fit_offsets(
        logits_hit, y_hit, found[0], 2, weight=(~struck).float(), smoothing=smoothing
    )
    # Fresh tensors from fit_offsets and find_spikes: set in place.
    offset[hit], expected[hit], tangent[hit] = found
    spikes[hit] = struck
    return offset, expected, tangent, spikes


def _batches(model, cube, index, device, batch_size, latent=None, select=None):
    """Yield (pixel indices, counts, latent mean, latent log-variance, logits).

    Every pixel block by block when ``index`` is None (a lazy cube is read
    once; with ``select``, a boolean array over every pixel, only the
    selected ones), else the pixels ``index`` (prefetched). With ``latent``
    (a pair of arrays over every pixel), the stored latent means are decoded
    instead of encoding the patches again.
    """
    import torch

    from .nn.train import predict

    def chunks():
        if index is None:
            for _, block_index, block in cube.blocks():
                if select is not None:
                    chosen = select[block_index]
                    block_index, block = block_index[chosen], block[chosen]
                for start in range(0, len(block_index), batch_size):
                    yield (
                        block_index[start : start + batch_size],
                        block[start : start + batch_size],
                    )
        else:
            cube.prefetch(index)
            for start in range(0, len(index), batch_size):
                part = index[start : start + batch_size]
                yield part, cube.centre_counts(part)

    for part, counts in chunks():
        if isinstance(model, FixedReconstruction):
            mean = torch.from_numpy(model.latent[part]).to(device)
            log_var = torch.zeros_like(mean)
            logits = torch.from_numpy(model.logits[part]).to(device)
        elif latent is None:
            ((_, mean, log_var, logits),) = predict(
                model, cube, part, device, len(part)
            )
        else:
            mean = torch.from_numpy(latent[0][part]).to(device)
            log_var = torch.from_numpy(latent[1][part]).to(device)
            with torch.no_grad():
                logits = model.decode(mean).float()
        yield part, counts, mean, log_var, logits


#: Gauss-Newton steps of the smoothed offsets from the unsmoothed ones.
_REFINING_STEPS = 2
#: Most pixels whose offsets choose the smoothing of a model's weights
#: (whole rows of the pixels it scores): the spreads compared are then
#: known to about 2 %.
SMOOTHING_SAMPLE = 4096


def _coarse_aligned(logits, y, spike_limit, max_shift):
    """:func:`_align` of a batch from the coarse search within ``max_shift`` channels."""
    from .nn.alignment import coarse_offsets

    start = coarse_offsets(y, logits, max_shift)
    return _align(logits, y, start, spike_limit, max_shift=max_shift)


def _fitted_offsets(logits, y, aligned, correlation, smoothing):
    """Offsets and their errors of a batch (see :func:`_offsets_pass`).

    ``aligned`` is :func:`_coarse_aligned`'s (unsmoothed) result, which the
    smoothed weights refine; it is not modified, so one alignment serves
    every smoothing.
    """
    from .nn.alignment import fit_offsets

    offset, expected, tangent, spikes = aligned
    if smoothing > 0:
        # From the unsmoothed offsets (a fraction of a channel away), the
        # same spikes left out.
        offset, expected, tangent = fit_offsets(
            logits,
            y,
            offset,
            _REFINING_STEPS,
            weight=(~spikes).float(),
            smoothing=smoothing,
        )
    _, variance, information = scoring.offset_score(
        y, expected, tangent, correlation, spikes, smoothing
    )
    error = np.sqrt(variance) / np.maximum(information, 1e-12)
    return offset.double().cpu().numpy(), error


def _smoothing_choice(
    model, cube, device, batch_size, spike_limit, correlation, map_shape, scored
):
    """The smoothing of the offset's weights under ``model`` (channels).

    Each of :data:`scoring.OFFSET_SMOOTHINGS` fits the offsets of whole
    scan rows of the ``scored`` pixels (at most :data:`SMOOTHING_SAMPLE`,
    rows evenly spaced); the one whose offsets scatter least about their
    rows' lines is kept (see :func:`scoring.least_scattered`).
    """
    from .nn.train import to_device

    smoothings = scoring.OFFSET_SMOOTHINGS
    rows = np.asarray(scored, dtype=bool).reshape(-1, map_shape[2])
    per_row = max(rows.sum(axis=1).mean(), 1.0)
    n_rows = len(rows)
    every = max(1, int(np.ceil(n_rows * per_row / SMOOTHING_SAMPLE)))
    sample = np.zeros_like(rows)
    sample[::every] = rows[::every]
    sample = sample.ravel()
    index = np.flatnonzero(sample)
    offsets = np.full((len(smoothings), cube.n_pixels), np.nan)
    for part, counts, _, _, logits in _batches(model, cube, index, device, batch_size):
        y = to_device(np.ascontiguousarray(counts, dtype=np.float32), device)
        aligned = _coarse_aligned(logits, y, spike_limit, cube.max_shift)
        for k, smoothing in enumerate(smoothings):
            offsets[k, part], _ = _fitted_offsets(
                logits, y, aligned, correlation, smoothing
            )
    chosen, _ = scoring.least_scattered(offsets, map_shape, sample)
    return smoothings[chosen]


def _offsets_pass(model, cube, device, batch_size, spike_limit, correlation, smoothing):
    """Every pixel's latent point and energy offset (and its error) under ``model``.

    The offsets are roots of the estimating equation with weights smoothed
    by ``smoothing`` channels (see :func:`_smoothing_choice`).
    """
    from .nn.train import to_device

    n = cube.n_pixels
    out = {
        "latent_mean": np.zeros((n, model.latent_dim), np.float32),
        "latent_log_var": np.zeros((n, model.latent_dim), np.float32),
        "offset": np.zeros(n),
        "offset_error": np.zeros(n),
        "smoothing": smoothing,
    }
    for part, counts, mean, log_var, logits in _batches(
        model, cube, None, device, batch_size
    ):
        y = to_device(np.ascontiguousarray(counts, dtype=np.float32), device)
        aligned = _coarse_aligned(logits, y, spike_limit, cube.max_shift)
        out["offset"][part], out["offset_error"][part] = _fitted_offsets(
            logits, y, aligned, correlation, smoothing
        )
        out["latent_mean"][part] = mean.cpu().numpy()
        out["latent_log_var"][part] = log_var.cpu().numpy()
    return out


def _estimating_function(at, logits, y, spikes, correlation, smoothing, device):
    """The offset's score ``U``, its variance and sensitivity at offsets ``at``.

    And the expected counts there (see :func:`scoring.offset_score`).
    """
    from .nn.alignment import fit_offsets
    from .nn.train import to_device

    _, m, t = fit_offsets(
        logits, y, to_device(at.astype(np.float32), device), 0, weight=(~spikes).float()
    )
    return (*scoring.offset_score(y, m, t, correlation, spikes, smoothing), m)


def _log_likelihood(y, expected, spikes):
    """Poisson log-likelihood of each spectrum (less constants), spikes left out."""
    import torch

    keep = (~spikes).float()
    return (
        (keep * torch.special.xlogy(y, expected.clamp_min(1e-12)))
        .sum(-1, dtype=torch.float64)
        .cpu()
        .numpy()
    )


def _statistics_pass(
    model, cube, index, device, batch_size, context, first, scored=None
):
    """Statistics of the pixels ``index`` (None: all, or the ``scored`` ones) under ``model``.

    With ``index`` None the outputs cover every pixel; those ``scored``
    leaves out (a boolean array over every pixel) hold NaN.

    Each pixel is aligned by Gauss-Newton from its neighbours' offset and
    from its own first-pass offset, keeping the likelier; the shift score
    is taken at each candidate reference's offset (see
    :func:`scoring.offset_references`), the other statistics at the pixel's
    own offset.
    """
    import torch

    from .nn.train import to_device

    references, known = context["references"], context["known_offset"]
    correlation = context["correlation"]
    limit = context["spike_limit"]
    stats = context.get("residual_stats")
    smoothing = first["smoothing"]
    results = []
    latent = (first["latent_mean"], first["latent_log_var"])
    for part, counts, _, _, logits in _batches(
        model, cube, index, device, batch_size, latent, scored
    ):
        y = to_device(np.ascontiguousarray(counts, dtype=np.float32), device)
        sides = references[:, part] + (0.0 if known is None else known[part])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no candidate
            start = np.nanmedian(sides, axis=0)
        start = np.where(np.isfinite(start), start, first["offset"][part])
        # From the neighbours' offset and from the pixel's own (a shift wider
        # than the Gauss-Newton steps reach from either alone): the likelier.
        found = [
            _align(
                logits,
                y,
                to_device(begin.astype(np.float32), device),
                limit,
                smoothing=smoothing,
            )
            for begin in (start, first["offset"][part])
        ]
        likelihoods = [
            ((~sp).float() * torch.special.xlogy(y, m.clamp_min(1e-12))).sum(-1)
            for _, m, _, sp in found
        ]
        better = likelihoods[1] > likelihoods[0]
        offset, expected, tangent, spikes = (
            torch.where(better if a.ndim == 1 else better[:, None], b, a)
            for a, b in zip(*found, strict=True)
        )
        batch_stats = None
        if stats is not None:
            halves = context["halves"][part]
            batch_stats = (np.asarray(stats[0])[halves], np.asarray(stats[1])[halves])
        out = scoring.aligned_statistics(
            y,
            expected,
            tangent,
            correlation,
            residual_stats=batch_stats,
            windows=context["windows"],
            spikes=spikes,
            smoothing=smoothing,
        )
        side_stats = [], [], [], []
        own_offset = offset.double().cpu().numpy()
        at_offset = (logits, y, spikes, correlation, smoothing, device)
        if smoothing > 0:
            own_score = _estimating_function(own_offset, *at_offset)[0]
        else:
            own = _log_likelihood(y, expected, spikes)
        for side in sides:  # every candidate reference
            at = np.where(np.isfinite(side), side, start)
            score, variance, information, m = _estimating_function(at, *at_offset)
            if smoothing > 0:
                # Twice the quasi-log-likelihood gained from the reference's
                # offset to the pixel's own: the integral of the score
                # between them (Simpson's rule).
                middle = _estimating_function(0.5 * (at + own_offset), *at_offset)[0]
                ratio = (own_offset - at) / 3.0 * (score + 4.0 * middle + own_score)
            else:  # the likelihood ratio itself
                ratio = 2.0 * (own - _log_likelihood(y, m, spikes))
            values = (score, variance, information, ratio)
            for value, collected in zip(values, side_stats, strict=True):
                collected.append(value)
        (
            out["side_score"],
            out["side_variance"],
            out["side_information"],
            out["side_likelihood_ratio"],
        ) = (np.stack(v) for v in side_stats)
        out["offset"] = own_offset
        out["spikes"] = spikes.sum(-1).cpu().numpy()
        if context.get("keep_residual"):
            keep = (~spikes).float()
            sqrt_m = torch.sqrt(expected.clamp_min(1e-12))
            out["residual"] = ((y - expected) / sqrt_m * keep).cpu().numpy()
            out["weight"] = (
                scoring._offset_weight(expected, tangent, keep, smoothing).cpu().numpy()
            )
        results.append((part, out))
    return _merge(results, cube.n_pixels if index is None else None, index)


def _merge(results, n, index):
    """Batches of per-pixel outputs into arrays over every pixel (or ``index``)."""
    names = results[0][1].keys()
    position = None if index is None else {int(p): i for i, p in enumerate(index)}
    size = n if index is None else len(index)
    merged = {}
    for name in names:
        first = results[0][1][name]
        # Side arrays are (candidates, batch): the pixel axis is the last.
        shape = (
            (first.shape[0], size)
            if name.startswith("side_")
            else (size, *first.shape[1:])
        )
        # Pixels no batch held (not scored): NaN where the type allows.
        fill = np.nan if np.issubdtype(first.dtype, np.floating) else 0
        merged[name] = np.full(shape, fill, dtype=first.dtype)
    for part, out in results:
        where = part if position is None else np.array([position[int(p)] for p in part])
        for name in names:
            if name.startswith("side_"):
                merged[name][:, where] = out[name]
            else:
                merged[name][where] = out[name]
    return merged


def _calibration_sets(folds, halves, train_mask):
    """Calibration pixels of each model and (model, half).

    Model ``f`` scores the pixels of fold ``1 - f``; those of half ``h``
    have their per-channel residual statistics (and, on large maps, their
    nulls) from the training (reference) pixels of fold ``1 - f``, half
    ``1 - h``: ``sets[f, h]``. On smaller maps (:data:`LEAVE_ONE_OUT_MAX`)
    each pixel's null is fitted on the training pixels of fold ``1 - f``,
    both halves: ``sets[f]``, pooled with the other model's ``sets[1 - f]``
    where they share no pixel, less the pixel itself (see
    :func:`_p_values`). Where a set is nearly empty (a
    small reference region) it is the reference pixels of both halves, or
    of the whole map.
    """
    sets = {}
    for f in (0, 1):
        scored = (folds == 1 - f) & train_mask
        whole = scored if scored.sum() >= MIN_FOLD_PIXELS else train_mask
        sets[f] = np.flatnonzero(whole)
        for h in (0, 1):
            chosen = scored & (halves == 1 - h)
            if chosen.sum() < MIN_FOLD_PIXELS:
                chosen = whole
            sets[f, h] = np.flatnonzero(chosen)
    return sets


def _theoretical_maxima(correlation, weight, windows, seed):
    """``local`` and ``edge_shift`` on simulated noise: their theoretical nulls."""
    import torch

    rng = np.random.default_rng(seed)
    noise = nulls.correlated_normals(rng, N_SIMULATED, weight.size, correlation)
    w = weight[None, :]
    # The fitted offset leaves the residual orthogonal to the tangent.
    noise -= (noise @ weight)[:, None] / max(weight @ weight, 1e-12) * w
    residual = torch.from_numpy(noise.astype(np.float32))
    w = torch.from_numpy(np.broadcast_to(w, noise.shape).astype(np.float32))
    return {
        "local": scoring._largest_smoothed(residual, correlation).double().numpy(),
        "edge_shift": scoring._largest_window_shift(residual, w, correlation, windows)
        .double()
        .numpy(),
    }


def fit_seed(seed, k):
    """Seed of fit ``k`` (its fold ``f`` model uses this plus ``f``).

    The first fit uses ``seed`` itself; the others draw theirs from
    ``(seed, k)``, so the fits of two nearby seeds share no model.

    Parameters
    ----------
    seed : int
        The run's seed.
    k : int
        Index of the fit.

    Returns
    -------
    int
    """
    if k == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1)[0])


def _train_models(cube, train_mask, folds, settings, device, seed, show_progressbar):
    """Two cross-fitted models per fit: fold ``f`` of fit ``k`` from :func:`fit_seed` + f."""
    from .nn.train import fit

    train_index = np.flatnonzero(train_mask)
    models, histories = [], []
    for k in range(settings.n_fits):
        if k > 0 and any(h.get("interrupted") for h in histories):
            break  # interrupted (Ctrl-C): the fits finished so far
        for f in (0, 1):
            index = np.flatnonzero(train_mask & (folds == f))
            if index.size < MIN_FOLD_PIXELS:
                index = train_index
            model, history = fit(
                cube, index, settings, device, fit_seed(seed, k) + f, show_progressbar
            )
            history.pop("train_index", None)
            history["n_train"] = int(index.size)
            models.append(model)
            histories.append(history)
        if k > 0 and any(h.get("interrupted") for h in histories[-2:]):
            del models[-2:], histories[-2:]  # an unfinished fit is left out
            break
    return models, histories


def _score_pair(models, cube, sets, context, device, batch_size, rng, window):
    """Both models of one fit over every pixel: offsets, then statistics.

    Returns the per-model statistics, the per-model first passes (offsets,
    latent points), the per-model residual statistics and a typical
    tangent for the simulated nulls.
    """
    map_shape = cube.counts.shape[:3]
    n_channels = cube.n_channels
    correlation = context["correlation"]
    known = context["known_offset"]
    per_model, firsts, residual_stats, typical_weight = [], [], [], None
    for f, model in enumerate(models):
        if f == 1 and models[1] is models[0]:
            first = firsts[0]  # one fixed reconstruction (PCA): the same offsets
        else:
            passes = (model, cube, device, batch_size, context["spike_limit"])
            smoothing = _smoothing_choice(
                *passes, correlation, map_shape, context["folds"] == 1 - f
            )
            first = _offsets_pass(*passes, correlation, smoothing)
        offset = first["offset"] - (0.0 if known is None else known)
        references, errors, step, mixed = scoring.offset_references(
            offset, first["offset_error"], map_shape, window
        )
        choice = scoring.candidate_choice(
            first["latent_mean"],
            scoring.latent_candidates(first["latent_mean"], map_shape, window),
            step,
            map_shape,
            mixed,
        )
        model_context = dict(context, references=references)
        # Per-channel residual statistics of each half, from a sample of its
        # calibration set; and a typical tangent for the simulated nulls.
        centres, spreads = [], []
        for h in (0, 1):
            candidates = sets[f, h]
            sample = np.sort(
                rng.choice(
                    candidates, min(RESIDUAL_SAMPLE, candidates.size), replace=False
                )
            )
            out = _statistics_pass(
                model,
                cube,
                sample,
                device,
                batch_size,
                dict(model_context, keep_residual=True),
                first,
            )
            centre, spread = scoring.residual_statistics(out["residual"])
            centres.append(centre)
            spreads.append(spread)
            if typical_weight is None:
                norms = np.linalg.norm(out["weight"], axis=1)
                typical_weight = out["weight"][np.argsort(norms)[len(norms) // 2]]
        residual_stats.append((centres, spreads))
        # Only the pixels this model scores (those of the other fold): the
        # statistics of the pixels it learned from are never used.
        out = _statistics_pass(
            model,
            cube,
            None,
            device,
            batch_size,
            dict(model_context, residual_stats=(centres, spreads)),
            first,
            scored=context["folds"] == 1 - f,
        )
        # A pixel the model fits worse than the noise model allows (its
        # deviance at its own offset, where a shift leaves none) has a wider
        # null for its shift score, as a quasi-likelihood would widen it.
        dispersion = np.maximum(out["deviance"] / max(n_channels - 1, 1), 1.0)
        # Standardised locally once averaged over the fits (see
        # _locally_standardised).
        out["shift"] = scoring.context_shift(
            out["side_score"],
            out["side_variance"] * dispersion,
            out["side_information"],
            out["side_likelihood_ratio"],
            errors,
            choice,
        )
        _, latent_differences = scoring.context_latent(
            first["latent_mean"], map_shape, window
        )
        # Latent distances, each coordinate scaled by its spread over the
        # calibration pixels of this model.
        calibration = sets[f]
        spread = np.median(np.abs(latent_differences[calibration]), axis=0)
        spread = np.maximum(spread / 0.6745, 1e-6)
        out["latent"], _ = scoring.context_latent(
            first["latent_mean"], map_shape, window, spread
        )
        out["spikes"] = (out["spikes"] > 0).astype(np.float64)
        per_model.append({name: out[name] for name in _AVERAGED})
        firsts.append(first)
    return per_model, firsts, residual_stats, typical_weight


def _p_values(per_model, folds, halves, sets, theory):
    """Each statistic's p-values (out-of-fold model, a null without the pixel) and their combination."""
    n = folds.size
    # Small maps: each scored pixel's null is fitted on both models'
    # calibration pixels (each scored by the model that did not learn from
    # it, standardised alike) less itself. Not where the sets share pixels
    # (a small reference region): a pixel's score by the other model, which
    # learned from it, would then enter its null; each model keeps its own.
    small = [sets[f].size <= LEAVE_ONE_OUT_MAX for f in (0, 1)]
    pooled = all(small) and not np.intersect1d(sets[0], sets[1]).size
    parts = {f: ((0, 1) if pooled else (f,)) for f in (0, 1)}
    # Where each scored pixel sits in its null's calibration values (-1: not
    # there), for the leave-one-out fits.
    position = np.full((2, n), -1)
    for f in (0, 1):
        start = sets[0].size if pooled and f == 1 else 0
        position[f, sets[f]] = start + np.arange(sets[f].size)
    p_values = {}
    for name, kind in scoring.COMBINED_SCORES.items():
        p = np.ones(n)
        for f in (0, 1):
            values = per_model[f][name]
            if small[f]:
                target = folds == 1 - f
                p[target] = nulls.null_p_values(
                    values[target],
                    kind,
                    calibration=np.concatenate(
                        [per_model[g][name][sets[g]] for g in parts[f]]
                    ),
                    theory=theory.get(name),
                    left_out=position[f, target],
                )
                continue
            for h in (0, 1):
                target = (folds == 1 - f) & (halves == h)
                p[target] = nulls.null_p_values(
                    values[target],
                    kind,
                    calibration=values[sets[f, h]],
                    theory=theory.get(name),
                )
        p_values[name] = p
    return p_values, nulls.combine_p_values(p_values, scoring.COMBINED_SCORES_WEIGHTS)


#: Per-pixel outputs of each model averaged over the fits of an ensemble.
_AVERAGED = (
    "deviance",
    "pearson",
    "edge_shift",
    "local",
    "shift",
    "latent",
    "offset",
    "offset_error",
    "spikes",
)


def _locally_standardised(per_model, folds, map_shape, window):
    """Each model's shift scores standardised over the pixels it scores.

    Done on the scores of one fit, or on their average over the fits of an
    ensemble: the average of several fits' standardised scores spreads
    narrower than each (their errors are not all shared), and its p-values
    would be conservative.
    """
    return [
        dict(
            values,
            shift=scoring.locally_standardised(
                values["shift"], map_shape, window // 2, scored=folds != f
            ),
        )
        for f, values in enumerate(per_model)
    ]


def _mean_over_fits(fits):
    """Each model's statistics averaged over the fits (pairs of models)."""
    return [
        {name: np.mean([fit[f][name] for fit in fits], axis=0) for name in _AVERAGED}
        for f in (0, 1)
    ]


def detect(
    cube,
    train_mask,
    settings,
    device,
    seed,
    show_progressbar=False,
    models=None,
    known_offset=None,
):
    """Train cross-fitted models (unless ``models`` is given), score, calibrate.

    With ``settings.n_fits`` above 1, every fit (a pair of cross-fitted
    models from its own seeds) computes each pixel's statistics; their
    average is calibrated as one fit's would be, and each fit's own
    p-values are kept (for the flag frequency over fits).

    Parameters
    ----------
    cube : hyperspy_vae.cube.SpectrumCube
        The data (effective counts).
    train_mask : numpy.ndarray of bool
        ``(n_pixels,)``, True for pixels to learn from and to calibrate on.
    settings : hyperspy_vae.settings.VAESettings
        Training settings.
    device : torch.device
        Where to compute.
    seed : int
        Seed of every random draw.
    show_progressbar : bool, default False
        Show training progress bars.
    models : list of CVAE3D, optional
        Trained models, two per fit (fold 0, fold 1): no training, only
        scoring (every pixel is new to all of them).
    known_offset : numpy.ndarray, optional
        ``(n_pixels,)`` energy offset of every pixel in channels, measured
        (zero-loss peak): the starting point of each alignment, and taken
        out of the offsets before neighbours are compared.

    Returns
    -------
    Detection
    """
    map_shape = cube.counts.shape[:3]
    folds, halves = block_folds(map_shape)
    train_index = np.flatnonzero(train_mask)
    if models is None:
        models, histories = _train_models(
            cube, train_mask, folds, settings, device, seed, show_progressbar
        )
    else:
        if len(models) < 2 or len(models) % 2:
            raise ValueError(f"Two models per fit are needed, not {len(models)}.")
        histories = [{} for _ in models]

    n_channels = cube.n_channels
    windows = scoring.energy_windows(n_channels, cube.dispersion)
    correlation = cube.noise.correlation if cube.noise is not None else np.ones(1)
    sets = _calibration_sets(folds, halves, train_mask)
    known = None if known_offset is None else np.asarray(known_offset, np.float64)
    context = {
        "correlation": correlation,
        "windows": windows,
        "spike_limit": (
            scoring.spike_limit(cube.n_pixels * n_channels, correlation),
            scoring.spike_alpha(cube.n_pixels * n_channels),
        ),
        "folds": folds,
        "halves": halves,
        "known_offset": known,
    }
    rng = np.random.default_rng(seed)
    window = scoring.run_window(map_shape[2])

    fits, fit_firsts, residual_stats, typical_weight = [], [], [], None
    for k in range(len(models) // 2):
        per_model, firsts, stats, weight = _score_pair(
            models[2 * k : 2 * k + 2],
            cube,
            sets,
            context,
            device,
            settings.inference_batch_size,
            rng,
            window,
        )
        fits.append(per_model)
        fit_firsts.append(firsts)
        residual_stats.extend(stats)
        if typical_weight is None:
            typical_weight = weight
    theory = _theoretical_maxima(correlation, typical_weight, windows, seed)

    def standardised(per_model):
        return _locally_standardised(per_model, folds, map_shape, window)

    per_model = standardised(fits[0] if len(fits) == 1 else _mean_over_fits(fits))
    p_values, combined_p = _p_values(per_model, folds, halves, sets, theory)
    fit_combined_p = (
        combined_p[None]
        if len(fits) == 1
        else np.stack(
            [
                _p_values(standardised(fit), folds, halves, sets, theory)[1]
                for fit in fits
            ]
        )
    )

    # The out-of-fold model's values for every pixel.
    scorer = 1 - folds
    n = cube.n_pixels

    def pick(outputs, name):
        stacked = np.stack([outputs[0][name], outputs[1][name]])
        return stacked[scorer, np.arange(n)]

    raw = {
        name: pick(per_model, name)
        for name in ("deviance", "pearson", "edge_shift", "local", "shift", "latent")
    }
    # Coordinates of the first fit's latent spaces (each fit has its own).
    latent_mean = pick(fit_firsts[0], "latent_mean")
    latent_log_var = pick(fit_firsts[0], "latent_log_var")

    if known is None:
        first_offsets = np.mean([firsts[0]["offset"] for firsts in fit_firsts], axis=0)
        drift = scoring.row_trends(first_offsets, map_shape)
        drift -= np.median(drift)
    else:
        drift = known
    return Detection(
        models=models,
        histories=histories,
        latent_mean=latent_mean,
        latent_log_var=latent_log_var,
        offset=pick(fits[0], "offset"),
        offset_error=pick(per_model, "offset_error"),
        drift=drift,
        spikes=pick(per_model, "spikes") >= 0.5,
        raw_scores=raw,
        p_values=p_values,
        combined_p=combined_p,
        scores=-np.log10(combined_p),
        train_index=train_index,
        folds=folds,
        halves=halves,
        residual_stats=residual_stats,
        fit_combined_p=fit_combined_p,
    )

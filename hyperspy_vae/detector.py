"""The detection pipeline on a :class:`SpectrumCube`: fit, score, threshold.

No HyperSpy here: :mod:`hyperspy_vae.decomposition` turns signals into a cube
and the results back into signals.
"""

from dataclasses import dataclass, field

import numpy as np

from . import scoring

__all__ = ["Detection", "detect", "score_pixels", "combine_scores"]


@dataclass
class Detection:
    """Everything one detection run computes, per pixel (flat order)."""

    model: object
    history: dict
    latent_mean: np.ndarray
    latent_log_var: np.ndarray
    raw_scores: dict
    p_values: dict
    combined_p: np.ndarray
    scores: np.ndarray
    train_index: np.ndarray
    refit_index: np.ndarray = field(default_factory=lambda: np.zeros(0, int))


def score_pixels(model, cube, device, batch_size, reference, seed=0, subset=None):
    """Raw scores and latent points of the pixels of ``cube``.

    A first pass over a sample of the ``reference`` pixels measures the
    per-channel spread of the residuals (see
    :func:`hyperspy_vae.scoring.residual_statistics`); the second scores
    every pixel (or only ``subset``).

    Parameters
    ----------
    subset : numpy.ndarray of int, optional
        Reconstruct and score only these flat pixel indices (the others get
        NaN scores); every pixel is still encoded, so the latent maps are
        whole.

    Returns
    -------
    raw : dict of numpy.ndarray
        ``deviance``, ``pearson``, ``shift`` and ``local`` per pixel.
    latent_mean, latent_log_var : numpy.ndarray
        ``(n_pixels, latent_dim)``.
    """
    from .nn.train import predict, to_device

    n = cube.n_pixels
    totals = cube.totals.ravel()
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(reference)
    sample = np.sort(rng.choice(candidates, min(4096, candidates.size), replace=False))
    cube.prefetch(sample)
    counts, expected = [], []
    for index, _, _, shape in predict(model, cube, sample, device, batch_size):
        counts.append(cube.centre_counts(index))
        expected.append(shape.double().cpu().numpy() * totals[index, None])
    residual_stats = scoring.residual_statistics(
        np.concatenate(counts), np.concatenate(expected)
    )

    latent_mean = np.zeros((n, model.latent_dim), dtype=np.float32)
    latent_log_var = np.zeros_like(latent_mean)
    if subset is not None:
        for index, mean, log_var, _ in predict(
            model, cube, np.arange(n), device, batch_size, decode=False
        ):
            latent_mean[index] = mean.cpu().numpy()
            latent_log_var[index] = log_var.cpu().numpy()
    fill = 0.0 if subset is None else np.nan
    raw = {name: np.full(n, fill) for name in ("deviance", "pearson", "shift", "local")}

    def score(index, counts, mean, log_var, shape):
        expected = shape * to_device(totals[index], device)[:, None]
        counts = to_device(np.clip(counts, 0, None).astype(np.float32), device)
        for name, values in scoring.reconstruction_scores(
            counts, expected, residual_stats
        ).items():
            raw[name][index] = values
        latent_mean[index] = mean.cpu().numpy()
        latent_log_var[index] = log_var.cpu().numpy()

    if subset is None:
        # Block by block (a lazy cube is read once), in batches within a block.
        for _, block_index, block in cube.blocks():
            # block_index is increasing (row-major within the block).
            for index, *outputs in predict(
                model, cube, block_index, device, batch_size
            ):
                score(index, block[np.searchsorted(block_index, index)], *outputs)
    else:
        for index, *outputs in predict(model, cube, subset, device, batch_size):
            score(index, cube.centre_counts(index), *outputs)
    return raw, latent_mean, latent_log_var


def combine_scores(raw, latent_mean, reference, map_shape=None):
    """Null p-values of each score, their combination and the anomaly score.

    Parameters
    ----------
    raw : dict of numpy.ndarray
        Raw reconstruction scores per pixel; ``latent`` is added to it.
    latent_mean : numpy.ndarray
        ``(n_pixels, latent_dim)``.
    reference : numpy.ndarray of bool
        Pixels on which the empirical null is fitted.
    map_shape : tuple of int, optional
        ``(n_maps, rows, columns)``: compare latent points with their
        spatial surroundings (see :func:`scoring.latent_distance`).

    Returns
    -------
    p_values : dict of numpy.ndarray
    combined_p : numpy.ndarray
    scores : numpy.ndarray
        ``-log10(combined_p)``: higher is more anomalous.
    """
    raw["latent"] = scoring.latent_distance(latent_mean, reference, map_shape)
    if map_shape is not None and np.isfinite(raw["shift"]).all():
        raw["shift_pooled"] = scoring.pooled_shift(raw["shift"], map_shape)
    p_values = {
        name: scoring.null_p_values(
            raw[name], reference, tail, scoring.NULL_MIN_SPREAD.get(name, 0.0)
        )
        for name, tail in scoring.COMBINED_SCORES.items()
        if name in raw
    }
    if "shift_pooled" in p_values:
        use_pooled = scoring.pooling_helps(
            raw["shift"], p_values["shift"], p_values["shift_pooled"]
        )
        p_values.pop("shift" if use_pooled else "shift_pooled")
    combined_p = scoring.combine_p_values(p_values)
    return p_values, combined_p, -np.log10(combined_p)


def _worst_fitting(p_values, index, fraction):
    """The ``fraction`` of ``index`` with the smallest combined p-values."""
    n_drop = int(round(fraction * len(index)))
    if n_drop == 0:
        return np.zeros(0, dtype=int)
    worst = np.min(np.stack([p[index] for p in p_values.values()]), axis=0)
    return index[np.argsort(worst, kind="stable")[:n_drop]]


def detect(
    cube,
    train_mask,
    settings,
    device,
    seed,
    refit_fraction=0.2,
    show_progressbar=False,
    model=None,
):
    """Train (unless ``model`` is given), score every pixel and combine.

    Robust, label-free training: a first model is fitted on the training
    pixels with a trimmed loss; the ``refit_fraction`` of them that it finds
    most anomalous (by the worst of the score p-values) is dropped, and a
    second model is trained from scratch on the rest, so that anomalies
    frequent enough to be learned the first time are not learned again.

    Parameters
    ----------
    cube : hyperspy_vae.cube.SpectrumCube
        The data.
    train_mask : numpy.ndarray of bool
        ``(n_pixels,)``, True for pixels to learn from and to fit the null on.
    settings : hyperspy_vae.settings.VAESettings
        Training settings.
    device : torch.device
        Where to compute.
    seed : int
        Seed of every random draw.
    refit_fraction : float, default 0.2
        Fraction of training pixels left out of the second fit; 0 trains once.
    show_progressbar : bool, default False
        Show training progress bars.
    model : CVAE3D, optional
        A trained model: no training, only scoring.

    Returns
    -------
    Detection
    """
    from .nn.train import fit

    train_index = np.flatnonzero(train_mask)
    refit_index = train_index
    history = {}
    if model is None:
        model, history = fit(
            cube, train_index, settings, device, seed, show_progressbar
        )
        if refit_fraction > 0 and not history["interrupted"]:
            # Only the pixels the first model learned from are ranked; the
            # second learns from them, less the worst-fitting.
            used = np.sort(history.pop("train_index"))
            used_mask = np.zeros_like(train_mask)
            used_mask[used] = True
            raw, latent_mean, _ = score_pixels(
                model,
                cube,
                device,
                settings.inference_batch_size,
                used_mask,
                seed,
                subset=used,
            )
            p_values, _, _ = combine_scores(
                raw, latent_mean, used_mask, cube.counts.shape[:3]
            )
            dropped = _worst_fitting(p_values, used, refit_fraction)
            refit_index = np.setdiff1d(used, dropped)
            first = history
            model, history = fit(
                cube, refit_index, settings, device, seed + 1, show_progressbar
            )
            history["first_fit"] = first
        history.pop("train_index", None)
    raw, latent_mean, latent_log_var = score_pixels(
        model, cube, device, settings.inference_batch_size, train_mask, seed
    )
    p_values, combined_p, scores = combine_scores(
        raw, latent_mean, train_mask, cube.counts.shape[:3]
    )
    return Detection(
        model=model,
        history=history,
        latent_mean=latent_mean,
        latent_log_var=latent_log_var,
        raw_scores=raw,
        p_values=p_values,
        combined_p=combined_p,
        scores=scores,
        train_index=train_index,
        refit_index=refit_index,
    )

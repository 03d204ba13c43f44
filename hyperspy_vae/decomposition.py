"""VAEDecomposition: the signal methods, next to HyperSpy's ``decomposition``.

With :mod:`hyperspy_vae.prepare` (signal to cube) and
:mod:`hyperspy_vae.signals`, the only module that touches HyperSpy signals:
it runs the detector on the prepared cube and turns the results back into
signals.
"""

import copy
import warnings

import numpy as np

from . import prepare, thresholds
from ._version import __version__
from .cube import SpectrumCube, bin_energy, expand_energy, input_binning
from .detector import FixedReconstruction, detect
from .noise import estimate_noise
from .results import VAEResults
from .settings import VAESettings
from .signals.anomaly_map import check_threshold, make_anomaly_map

__all__ = ["VAEDecomposition", "vae_anomalies", "pca_anomalies", "attach_methods"]


# ------------------------------------------------------------------ methods
def _prepared_cube(source, channels, config, seed=0, energy_bin=None, patch_size=None):
    """The cube of effective counts, binned by work, with its noise model.

    Returns
    -------
    cube : SpectrumCube
        With ``energy_bin`` and ``nav_shape`` attributes set.
    problems : list of str
        Why the data may not be counts (see :func:`prepare.count_warnings`).
    """
    folded, nav_shape = prepare.folded_counts(source, channels)
    if energy_bin is None:
        energy_bin = prepare.energy_binning(
            int(np.prod(nav_shape)), folded.shape[-1], config
        )
    folded = bin_energy(folded, energy_bin)
    energy = source.axes_manager.signal_axes[0].axis[channels]
    dispersion = float(np.median(np.abs(np.diff(energy)))) * energy_bin
    noise = estimate_noise(folded, seed)
    problems = prepare.count_warnings(folded, noise)
    cube = SpectrumCube(
        folded,
        config.patch_size if patch_size is None else patch_size,
        input_binning(folded.shape[-1], config.max_encoder_channels),
        noise=noise,
        max_shift=int(np.ceil(config.max_drift / max(dispersion, 1e-12))),
        dispersion=dispersion,
    )
    cube.energy_bin = energy_bin
    cube.nav_shape = nav_shape
    return cube, problems


def _warn_not_counts(message):
    """Warn (at the caller of ``vae_anomalies``) that the data may not be counts."""
    warnings.warn(
        f"{message} The p-values and the threshold assume counts.",
        UserWarning,
        stacklevel=3,
    )


def vae_anomalies(
    signal,
    output_dimension=None,
    navigation_mask=None,
    signal_mask=None,
    signal_range=None,
    low_loss=None,
    threshold="f1",
    fdr=0.05,
    random_state=None,
    device="auto",
    model=None,
    resample=False,
    print_info=True,
    show_progressbar=None,
    **settings,
):
    """Find anomalous pixels with a 3D convolutional variational autoencoder.

    Estimates the detector's noise from the data, trains pairs of small
    3D-CVAEs on the spectrum image (each on one half of the map, cut in
    blocks like a checkerboard: no labels needed; three pairs by default,
    see ``n_fits``), aligns every pixel's spectrum on its
    reconstruction by the model that did not learn from it, scores how far
    the spectrum departs from it and from its neighbours, and returns the
    map of scores with a threshold. The results are stored in
    ``signal.vae_results``; ``signal.data`` and ``signal.learning_results``
    are not modified.

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        A spectrum image (e.g. ``EELSSpectrum``) with one or more navigation
        axes. Raw counts, as acquired: any detector gain, read noise and
        dark subtraction (negative values) are estimated and allowed for.
    output_dimension : int, optional
        Size of the latent space (default 4).
    navigation_mask : numpy.ndarray or BaseSignal of bool, optional
        True for pixels excluded from training (e.g. everything outside a
        clean reference region). Every pixel is still scored. As for
        ``decomposition``: a signal (e.g. ``amap.get_mask()``) or an array
        of shape ``s.axes_manager.navigation_shape``.
    signal_mask : numpy.ndarray or BaseSignal of bool, optional
        True for energy channels excluded from the model and the scores.
    signal_range : tuple of float, optional
        ``(start, end)`` energy window, in the axis units, to analyse.
    low_loss : hyperspy.signals.Signal1D, optional
        The low-loss twin (zero-loss peak) of the spectrum image, as exspy's
        functions take it: its zero-loss peak gives each pixel's energy
        drift, which is taken out before pixels are compared. The signal is
        not changed (nothing is interpolated).
    threshold : {"f1", "fdr", "otsu"} or float, default "f1"
        Threshold rule: ``"f1"`` maximises the F1 score expected under the
        null (no labels needed); ``"fdr"`` controls the false-discovery
        rate at ``fdr``. Change it later with ``amap.set_threshold``.
    fdr : float, default 0.05
        False-discovery rate of the ``"fdr"`` rule and of the ``"f1"`` rule's
        fallback on data with no clear anomalies.
    random_state : None, int or numpy.random.Generator
        Seed: the same seed gives the same map on the CPU.
    device : str, default "auto"
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    model : VAEResults or str or pathlib.Path, optional
        A trained model (``s.vae_results`` of another signal, or a file saved
        by ``VAEResults.save``): score with it, without training. The
        signal's energy channels must match the model's (same energies
        within a tenth of a channel) unless ``resample``.
    resample : bool, default False
        With ``model``: if the energy axes differ, interpolate the spectra
        linearly onto the model's channels (counts scaled by the ratio of
        the dispersions, so counts per channel stay comparable). The model's
        energy range must lie within the signal's.
    print_info : bool, default True
        Print a summary of the run.
    show_progressbar : bool, optional
        Show progress bars; default from ``hs.preferences``.
    **settings
        Training settings, see :class:`hyperspy_vae.settings.VAESettings`
        (e.g. ``max_steps=500``).

    Returns
    -------
    AnomalyMap or AnomalyMap1D
        Anomaly scores (``-log10`` p-value; higher is more anomalous) with
        the threshold in ``amap.threshold``.

    Warns
    -----
    UserWarning
        When the data do not look like counts (background-subtracted,
        denoised, smoothed): the p-values then lose their meaning; and when
        the energy drift over the scan exceeds the smallest shift the map
        could otherwise show.

    See Also
    --------
    pca_anomalies, hyperspy.api.signals.BaseSignal.decomposition

    Examples
    --------
    >>> import hyperspy_vae
    >>> s, truth = hyperspy_vae.data.fe_l23_spectrum_image((32, 32), random_state=0)
    >>> amap = s.vae_anomalies(random_state=0, print_info=False)  # doctest: +SKIP
    >>> amap.get_mask()  # doctest: +SKIP
    """
    from .nn.train import resolve_device

    prepare.check_signal(signal)
    nav_mask = prepare.navigation_mask_array(navigation_mask, signal)
    check_threshold(threshold, fdr)
    torch_device = resolve_device(device)
    seed = prepare.as_seed(random_state)
    known_drift = None
    if low_loss is not None:
        known_drift = prepare.zero_loss_offsets(low_loss, signal)

    trained = None
    source = signal  # the data analysed: a resampled copy with resample=True
    if model is not None:
        trained = model if isinstance(model, VAEResults) else VAEResults.load(model)
        if (
            output_dimension is not None
            or settings
            or signal_mask is not None
            or signal_range is not None
        ):
            raise ValueError(
                "output_dimension, signal_mask, signal_range and training settings "
                "come from the trained model; they cannot be given with model=."
            )
        config = trained.settings
        if random_state is None:
            # Scoring draws (calibration samples, simulated nulls) as when it
            # was trained: the same spectra get the same scores.
            seed = int(trained.random_state)
        try:
            channels = prepare.reuse_channels(source, trained)
        except ValueError as err:
            if not resample:
                raise ValueError(
                    f"{err} Or pass resample=True to interpolate the spectra onto "
                    "the model's channels."
                ) from None
            source = prepare.resampled(signal, trained)
            channels = prepare.reuse_channels(source, trained)
    else:
        config = VAESettings()
        if output_dimension is not None:
            settings["latent_dim"] = (
                int(output_dimension)
                if prepare.is_integer(output_dimension)
                else output_dimension
            )
        config = config.replace(**settings)
        channels = prepare.channel_selection(signal, signal_mask, signal_range)

    cube, problems = _prepared_cube(
        source,
        channels,
        config,
        seed,
        energy_bin=None if trained is None else trained.energy_bin,
    )
    nav_shape, energy_bin, dispersion = cube.nav_shape, cube.energy_bin, cube.dispersion
    train_mask = np.ones(nav_shape, dtype=bool) if nav_mask is None else ~nav_mask
    n_train = int(train_mask.sum())
    if trained is None and n_train < prepare.MIN_TRAIN_PIXELS:
        raise ValueError(
            f"Only {n_train} pixels are available for training; at least "
            f"{prepare.MIN_TRAIN_PIXELS} are needed."
        )
    axis = source.axes_manager.signal_axes[0]
    energy = axis.axis[channels]
    for message in problems:
        _warn_not_counts(message)
    noise = cube.noise
    nets = None
    if trained is not None:
        nets = [copy.deepcopy(net).to(torch_device) for net in trained.models]
    detection = detect(
        cube,
        train_mask.ravel(),
        config,
        torch_device,
        seed,
        show_progressbar=prepare.progressbar_setting(show_progressbar),
        models=nets,
        known_offset=None if known_drift is None else known_drift.ravel() / dispersion,
    )
    fit_problem = prepare.deviance_warning(
        detection.raw_scores["deviance"], cube.n_channels
    )
    if fit_problem is not None:
        problems = [*problems, fit_problem]
        _warn_not_counts(fit_problem)
    if trained is None:
        # Fewer fits than asked for when training was interrupted.
        config = config.replace(n_fits=len(detection.models) // 2)

    def nav(values):
        return np.asarray(values).reshape(*nav_shape, *np.shape(values)[1:])

    scores = {name: nav(v) for name, v in detection.raw_scores.items()}
    scores["combined"] = nav(detection.scores)
    drift = nav(detection.drift * dispersion)
    drift_range = float(np.nanmax(drift) - np.nanmin(drift))
    smallest = 4.0 * float(np.median(detection.offset_error)) * dispersion
    if known_drift is None and drift_range > smallest:
        warnings.warn(
            f"The spectra drift by {drift_range:.2g} {axis.units} over the scan "
            f"(s.get_vae_drift()), more than the smallest shift this map shows "
            f"({smallest:.2g} {axis.units}). The drift is taken out of the shift "
            "test, but a shift of a whole stretch of a scan row cannot be told "
            "from drift: pass the low-loss twin (low_loss=) to measure it.",
            UserWarning,
            stacklevel=2,
        )
    title = signal.metadata.General.title
    amap = make_anomaly_map(
        scores["combined"],
        signal,
        f"Anomaly map of {title}",
        threshold=threshold,
        fdr=fdr,
        method_metadata={
            "method": "VAE",
            "package": "hyperspy_vae",
            "version": __version__,
            "random_state": seed,
            "settings": config.to_dict(),
            "signal_range": [float(energy[0]), float(energy[-1])],
            "reused_model": trained is not None,
        },
    )
    if signal._lazy:
        amap = amap.as_lazy()
    # Each fit's own verdict under the same rule: how often a pixel is flagged.
    flag_frequency = np.mean(
        [
            scores_k > thresholds.rule_threshold(scores_k, threshold, fdr)
            for scores_k in -np.log10(detection.fit_combined_p)
        ],
        axis=0,
    )
    history = {"fits": detection.histories}
    if trained is None:
        history["n_train"] = int(detection.train_index.size)
    results = VAEResults(
        settings=config,
        random_state=seed,
        models=detection.models,
        energy=energy,
        energy_units=str(axis.units),
        channel_mask=channels,
        energy_bin=energy_bin,
        navigation_mask=nav_mask,
        scores=scores,
        p_values={name: nav(p) for name, p in detection.p_values.items()},
        latent_mean=nav(detection.latent_mean),
        latent_log_var=nav(detection.latent_log_var),
        history=history,
        threshold={
            "value": amap.threshold,
            "method": amap.metadata.Anomaly.threshold_method,
            "fdr": fdr,
        },
        device=str(torch_device),
        noise=noise,
        offset=nav(detection.offset),
        drift=drift,
        spikes=nav(detection.spikes),
        dispersion=dispersion,
        warnings=problems,
        flag_frequency=nav(flag_frequency),
    )
    results.anomaly_map = amap
    signal.vae_results = results
    if print_info:
        print(results.summary())
    return amap


def pca_anomalies(
    signal,
    output_dimension=3,
    navigation_mask=None,
    signal_mask=None,
    signal_range=None,
    threshold="f1",
    fdr=0.05,
    print_info=True,
):
    """Anomaly map from HyperSpy's own PCA, scored like ``vae_anomalies``.

    Runs ``decomposition(normalize_poissonian_noise=True)`` on a copy of the
    signal (``signal.learning_results`` and ``signal.data`` are untouched),
    rebuilds the data with ``output_dimension`` components and scores each
    pixel against that reconstruction with the same scores, null and
    threshold rule as ``vae_anomalies`` (the PCA loadings play the latent
    space), so the two maps compare point for point.

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        A spectrum image.
    output_dimension : int, default 3
        Number of PCA components kept.
    navigation_mask, signal_mask : numpy.ndarray or BaseSignal of bool, optional
        True = excluded, as in ``decomposition``.
    signal_range : tuple of float, optional
        ``(start, end)`` energy window to analyse.
    threshold : {"f1", "fdr", "otsu"} or float, default "f1"
        Threshold rule, as for ``vae_anomalies``.
    fdr : float, default 0.05
        False-discovery rate of the ``"fdr"`` rule and ``"f1"``'s fallback.
    print_info : bool, default True
        Print a one-line summary.

    Returns
    -------
    AnomalyMap or AnomalyMap1D
    """
    prepare.check_signal(signal)
    if not (prepare.is_integer(output_dimension) and output_dimension >= 1):
        raise ValueError(
            f"output_dimension must be a positive integer, not {output_dimension!r}."
        )
    nav_mask = prepare.navigation_mask_array(navigation_mask, signal)
    check_threshold(threshold, fdr)
    channels = prepare.channel_selection(signal, signal_mask, signal_range)
    _, expected, loadings, train_mask, _, nav_shape = _pca_fit(
        signal, output_dimension, nav_mask, channels
    )
    cube, _ = _prepared_cube(signal, channels, VAESettings(), patch_size=1)
    binned = bin_energy(expected, cube.energy_bin)
    expected = cube.noise.effective_counts(binned).astype(np.float64)
    expected = np.maximum(expected, 1e-3 * max(expected.mean(), 1e-12))
    fixed = FixedReconstruction(expected, np.nan_to_num(loadings))
    detection = detect(
        cube, train_mask, VAESettings(), _cpu_device(), 0, models=[fixed, fixed]
    )
    scores = detection.scores
    title = signal.metadata.General.title
    amap = make_anomaly_map(
        scores.reshape(nav_shape),
        signal,
        f"PCA anomaly map of {title}",
        threshold=threshold,
        fdr=fdr,
        method_metadata={
            "method": f"PCA ({output_dimension} components)",
            "package": "hyperspy_vae",
            "version": __version__,
        },
    )
    if signal._lazy:
        amap = amap.as_lazy()
    if print_info:
        print(
            f"PCA anomaly detection ({output_dimension} components): "
            f"{amap.n_anomalous} anomalous of {scores.size} pixels "
            f"(threshold {amap.threshold:.3f}, {threshold})"
        )
    return amap


def _pca_fit(signal, output_dimension, nav_mask, channels):
    """HyperSpy's Poisson-normalised PCA on a work copy, every pixel rebuilt.

    Returns
    -------
    counts, expected : numpy.ndarray
        ``(n_pixels, n_selected_channels)``.
    loadings : numpy.ndarray
        ``(n_pixels, output_dimension)``.
    train_mask : numpy.ndarray of bool
        ``(n_pixels,)``: the pixels the PCA was fitted on.
    folded_shape, nav_shape : tuple of int
    """
    from hyperspy.signals import Signal1D

    everything = np.ones(channels.size, dtype=bool)
    folded, nav_shape = prepare.folded_counts(signal, everything)
    # A work copy: the user's data and learning_results stay untouched;
    # negative counts (dark-subtraction noise) are clipped for the Poisson
    # normalisation.
    n_train = int(np.prod(nav_shape)) - (0 if nav_mask is None else int(nav_mask.sum()))
    if n_train < max(prepare.MIN_TRAIN_PIXELS, output_dimension + 1):
        raise ValueError(
            f"Only {n_train} pixels are available for PCA with {output_dimension} "
            f"components; at least {max(prepare.MIN_TRAIN_PIXELS, output_dimension + 1)} "
            "are needed."
        )
    if channels.sum() <= output_dimension:
        raise ValueError(
            f"PCA with {output_dimension} components needs more than "
            f"{output_dimension} channels; {int(channels.sum())} are selected."
        )
    full = np.clip(folded.reshape(*nav_shape, channels.size), 0, None)
    if not full[..., channels].any():
        raise ValueError("Every count in the selected channels is zero: no PCA.")
    work = Signal1D(full, axes=signal.axes_manager._get_axes_dicts())
    try:
        work.decomposition(
            normalize_poissonian_noise=True,
            output_dimension=output_dimension,
            navigation_mask=None if nav_mask is None else nav_mask.T,
            signal_mask=None if channels.all() else ~channels,
            print_info=False,
        )
    except (ValueError, np.linalg.LinAlgError) as err:
        raise ValueError(f"HyperSpy's PCA failed on these data: {err}") from err
    expected = work.get_decomposition_model(output_dimension).data[..., channels]
    counts = full[..., channels].reshape(-1, int(channels.sum()))
    expected = np.asarray(expected, dtype=np.float64).reshape(counts.shape)
    loadings = work.learning_results.loadings[:, :output_dimension].copy()
    train_mask = (
        np.ones(counts.shape[0], bool) if nav_mask is None else ~nav_mask.ravel()
    )
    if not train_mask.all():
        # HyperSpy leaves the masked pixels unfitted (NaN): project them on
        # the components, weighted like the Poisson normalisation.
        factors = work.learning_results.factors[channels, :output_dimension]
        weights = 1.0 / np.maximum(counts[train_mask].sum(axis=0), 1e-12)
        gram = factors.T @ (factors * weights[:, None])
        coefficients = np.linalg.solve(
            gram, ((counts[~train_mask] * weights) @ factors).T
        )
        expected[~train_mask] = (factors @ coefficients).T
        loadings[~train_mask] = coefficients.T
    return counts, expected, loadings, train_mask, folded.shape, nav_shape


# --------------------------------------------------------- results access
def _results(signal):
    results = getattr(signal, "vae_results", None)
    if results is None:
        raise RuntimeError(
            "This signal has no VAE results: run `s.vae_anomalies()` first."
        )
    return results


def get_anomaly_map(signal):
    """Return the anomaly map of the last ``vae_anomalies`` run.

    Returns
    -------
    AnomalyMap or AnomalyMap1D
    """
    results = _results(signal)
    if results.anomaly_map is None:
        results.anomaly_map = make_anomaly_map(
            results.scores["combined"],
            signal,
            f"Anomaly map of {signal.metadata.General.title}",
            threshold=results.threshold.get("value", "f1"),
            fdr=results.threshold.get("fdr") or 0.05,
            method_metadata={"method": "VAE", "package": "hyperspy_vae"},
        )
        results.anomaly_map.metadata.set_item(
            "Anomaly.threshold_method", results.threshold.get("method", "value")
        )
    return results.anomaly_map


def get_vae_model(signal):
    """Return the VAE reconstruction of the spectrum image.

    Like ``get_decomposition_model``: a signal of the same class and shape
    as ``signal``; channels the model did not use are zero.

    Returns
    -------
    hyperspy.signals.BaseSignal
    """
    from .folds import block_folds
    from .nn.train import decode

    results = _results(signal)
    channels = results.channel_mask
    if channels.size != signal.axes_manager.signal_axes[0].size:
        raise ValueError("The signal's energy axis changed since vae_anomalies ran.")
    folded, nav_shape = prepare.folded_counts(signal, channels)
    binned = bin_energy(folded, results.energy_bin)
    if hasattr(binned, "compute"):
        binned = binned.compute()
    noise = results.noise
    effective = noise.effective_counts(binned).reshape(-1, binned.shape[-1])
    totals = effective.sum(axis=-1, dtype=np.float64)
    latent = results.latent_mean.reshape(-1, results.latent_mean.shape[-1])
    offset = results.offset.ravel()
    # Each pixel as it was scored: by the model that did not learn from it.
    folds, _ = block_folds(binned.shape[:3])
    shapes = np.empty(effective.shape, dtype=np.float64)
    # The first fit's pair: the latent points are theirs.
    for f, net in enumerate(results.models[:2]):
        index = np.flatnonzero(folds == 1 - f) if len(results.models) > 1 else None
        index = np.arange(len(latent)) if index is None else index
        shapes[index] = decode(
            copy.deepcopy(net).cpu(),
            latent[index],
            _cpu_device(),
            results.settings.inference_batch_size,
            offset=offset[index],
        )
    # Back from effective counts to the readings' units.
    readings = noise.phi * (shapes * totals[:, None] - noise.offset)
    full = np.zeros((*nav_shape, channels.size), dtype=np.float32)
    expected = expand_energy(readings, results.energy_bin, channels.sum())
    full[..., channels] = expected.reshape(*nav_shape, -1)
    model = signal._deepcopy_with_new_data(full)
    if model._lazy:
        model = model.as_lazy()
    model.metadata.General.title = f"VAE model of {signal.metadata.General.title}"
    return model


def _cpu_device():
    import torch

    return torch.device("cpu")


def get_vae_latent(signal):
    """Return the latent maps (each pixel's posterior mean), like loadings.

    Returns
    -------
    hyperspy.signals.Signal2D or Signal1D
        The latent dimension is the navigation axis; each map is a signal.
    """
    from hyperspy.signals import Signal1D, Signal2D

    results = _results(signal)
    latent = np.moveaxis(results.latent_mean, -1, 0)
    axes = [{"name": "Latent dimension index", "size": latent.shape[0]}]
    axes += signal.axes_manager._get_navigation_axes_dicts()
    cls = Signal1D if latent.ndim == 2 else Signal2D
    out = cls(latent, axes=axes)
    out.metadata.General.title = f"VAE latent maps of {signal.metadata.General.title}"
    return out


def get_vae_drift(signal):
    """Return the energy drift over the scan, in the energy axis' units.

    From the zero-loss peak when ``vae_anomalies`` had ``low_loss``;
    otherwise a robust line, in each scan row, through the pixels' energy
    offsets against their reconstructions (the shift test compares each
    pixel with its row neighbours, so it takes the drift out). Laid out like
    the anomaly map.

    Returns
    -------
    hyperspy.signals.Signal2D or Signal1D
    """
    from hyperspy.signals import Signal1D, Signal2D

    results = _results(signal)
    drift = np.asarray(results.drift, dtype=np.float64)
    axes = signal.axes_manager._get_navigation_axes_dicts()
    cls = Signal1D if drift.ndim == 1 else Signal2D
    if drift.ndim > 2:
        cls = Signal2D
    out = cls(drift, axes=axes)
    out.metadata.General.title = f"Energy drift of {signal.metadata.General.title}"
    out.metadata.set_item("Signal.quantity", f"Energy drift ({results.energy_units})")
    return out


def plot_vae_results(signal, max_latent=4):
    """Plot the anomaly map, the score histogram, the latent maps and spectra.

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        A signal on which ``vae_anomalies`` ran.
    max_latent : int, default 4
        Most latent maps shown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .plot import plot_vae_results as _plot

    return _plot(signal, _results(signal), get_anomaly_map(signal), max_latent)


def plot_vae_loss(signal, ax=None):
    """Plot the training and held-out loss against training step.

    Like HyperSpy's scree plot for PCA: it shows whether training converged
    (for each cross-fitted model).

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        A signal on which ``vae_anomalies`` ran.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made if None.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    results = _results(signal)
    fits = [h for h in (results.history or {}).get("fits", []) if h.get("step")]
    n_channels = results.model.n_channels
    if not fits:
        raise ValueError("These results have no training history (a reused model).")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
    curves = (
        ("train_loss", "--", "training"),
        ("validation_loss", "-", "held out"),
        ("noise_floor", ":", "noise floor"),
    )
    for i, h in enumerate(fits):
        for key, style, name in curves:
            if h.get(key):
                ax.plot(
                    h["step"],
                    np.array(h[key]) / n_channels,
                    color=f"C{i}",
                    ls=style,
                    label=f"fit {i // 2 + 1}, fold {i % 2 + 1}: {name}",
                )
    ax.set_xlabel("Training step")
    ax.set_ylabel("Deviance per channel")
    ax.set_title(f"VAE training of {signal.metadata.General.title}", fontsize="medium")
    ax.legend(fontsize="small")
    return ax


def plot_latent_space(signal, pca_components=3):
    """Plot every pixel in the latent space, flagged ones highlighted, beside PCA.

    The VAE's latent means (projected on their first two principal axes
    when the latent has more than two dimensions) next to the first two
    loadings of HyperSpy's Poisson-normalised PCA of the same channels (run
    on a copy), with the pixels the VAE flags in red in both.

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        A signal on which ``vae_anomalies`` ran.
    pca_components : int, default 3
        Number of PCA components (at least 2).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .plot import plot_latent_space as _plot

    results = _results(signal)
    if not (prepare.is_integer(pca_components) and pca_components >= 2):
        raise ValueError(
            f"pca_components must be an integer >= 2, not {pca_components!r}."
        )
    nav_mask = results.navigation_mask
    _, _, loadings, _, _, _ = _pca_fit(
        signal, pca_components, nav_mask, results.channel_mask
    )
    latent = results.latent_mean.reshape(-1, results.latent_mean.shape[-1])
    amap = get_anomaly_map(signal)
    flagged = np.ravel(results.scores["combined"] > amap.threshold)
    return _plot(latent, np.nan_to_num(loadings), flagged, pca_components)


# ------------------------------------------------------------ attachment
class VAEDecomposition:
    """Mixin of the signal methods that ``import hyperspy_vae`` attaches."""

    vae_anomalies = vae_anomalies
    pca_anomalies = pca_anomalies
    get_anomaly_map = get_anomaly_map
    get_vae_model = get_vae_model
    get_vae_latent = get_vae_latent
    get_vae_drift = get_vae_drift
    plot_vae_results = plot_vae_results
    plot_latent_space = plot_latent_space
    plot_vae_loss = plot_vae_loss


_PUBLIC = (
    "vae_anomalies",
    "pca_anomalies",
    "get_anomaly_map",
    "get_vae_model",
    "get_vae_latent",
    "get_vae_drift",
    "plot_vae_results",
    "plot_latent_space",
    "plot_vae_loss",
)


def attach_methods():
    """Attach the :class:`VAEDecomposition` methods to HyperSpy's signals.

    HyperSpy has no registry for methods on existing classes, so they are
    set on ``BaseSignal`` (every signal class, ``EELSSpectrum`` and the lazy
    ones included, inherits them). Calling it again changes nothing.
    """
    from hyperspy.signal import BaseSignal

    for name in _PUBLIC:
        if getattr(BaseSignal, name, None) is not getattr(VAEDecomposition, name):
            setattr(BaseSignal, name, getattr(VAEDecomposition, name))
    if not hasattr(BaseSignal, "vae_results"):
        BaseSignal.vae_results = None

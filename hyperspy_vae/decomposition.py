"""VAEDecomposition: the signal methods, next to HyperSpy's ``decomposition``.

This is the only module, with :mod:`hyperspy_vae.signals`, that touches
HyperSpy signals: it validates the user's signal and options, turns the
signal into a :class:`~hyperspy_vae.cube.SpectrumCube`, runs the detector and
turns the results back into signals.
"""

import copy
import numbers

import numpy as np

from . import scoring
from ._version import __version__
from .cube import SpectrumCube, bin_energy, expand_energy, input_binning
from .detector import combine_scores, detect
from .results import VAEResults
from .settings import VAESettings
from .signals.anomaly_map import check_threshold, make_anomaly_map

__all__ = ["VAEDecomposition", "vae_anomalies", "pca_anomalies", "attach_methods"]

#: Fewest pixels that ``vae_anomalies`` trains on.
MIN_TRAIN_PIXELS = 16


# --------------------------------------------------------------- validation
def _check_signal(signal):
    from hyperspy.signal import BaseSignal

    if not isinstance(signal, BaseSignal):
        raise TypeError(f"Expected a HyperSpy signal, not {type(signal).__name__}.")
    am = signal.axes_manager
    if am.signal_dimension != 1:
        raise ValueError(
            "Anomaly detection needs a spectrum image: a signal with one signal "
            f"(energy) axis, but this signal has {am.signal_dimension}. Use "
            "`s.as_signal1D(-1)` or `s.transpose(signal_axes=1)` first."
        )
    if am.navigation_dimension < 1:
        raise ValueError(
            "Anomaly detection needs navigation axes (a line scan or a map): "
            "this signal is a single spectrum."
        )
    if not np.issubdtype(signal.data.dtype, np.number) or np.issubdtype(
        signal.data.dtype, np.complexfloating
    ):
        raise TypeError(
            f"The data must be real numbers (counts), not {signal.data.dtype}."
        )


def _mask_array(mask, shape, name):
    """A user's mask (array or signal, True = excluded) as a bool array."""
    if mask is None:
        return None
    data = getattr(mask, "data", mask)
    if hasattr(data, "compute"):
        data = data.compute()
    data = np.asarray(data)
    if data.dtype != bool:
        raise ValueError(f"{name} must be boolean (True = excluded), not {data.dtype}.")
    if data.shape != tuple(shape):
        raise ValueError(f"{name} has shape {data.shape}, expected {tuple(shape)}.")
    if data.all():
        raise ValueError(f"{name} excludes everything: nothing is left to use.")
    return data


def _navigation_mask(mask, signal):
    """A navigation mask as HyperSpy's ``decomposition`` takes it, in array order.

    A signal's data are in array order (``amap.get_mask()``, or
    ``s.sum(-1) > x``); a numpy array, as in ``decomposition``, has the
    shape of ``axes_manager.navigation_shape`` (HyperSpy order, the
    transpose of the data's navigation shape).
    """
    from hyperspy.signal import BaseSignal

    am = signal.axes_manager
    if mask is None:
        return None
    if isinstance(mask, BaseSignal):
        return _mask_array(mask, am._navigation_shape_in_array, "navigation_mask")
    array = np.asarray(mask)
    if array.shape != am.navigation_shape:
        raise ValueError(
            f"navigation_mask has shape {array.shape}, but an array mask must have "
            f"the signal's navigation_shape {am.navigation_shape} (HyperSpy order, "
            "as for decomposition: the transpose of the data's navigation shape "
            f"{am._navigation_shape_in_array}); or pass a signal."
        )
    return _mask_array(array.T, am._navigation_shape_in_array, "navigation_mask")


def _channel_selection(signal, signal_mask, signal_range):
    """Bool array over the signal axis: True for the channels to use."""
    axis = signal.axes_manager.signal_axes[0]
    mask = _mask_array(signal_mask, (axis.size,), "signal_mask")
    keep = np.ones(axis.size, dtype=bool) if mask is None else ~mask
    if signal_range is not None:
        try:
            start, end = (float(v) for v in signal_range)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"signal_range must be (start, end) in {axis.units}, not {signal_range!r}."
            ) from err
        low, high = axis.axis.min(), axis.axis.max()
        if start >= end or end < low or start > high:
            raise ValueError(
                f"signal_range {signal_range} is empty or outside the energy axis "
                f"({low:g} to {high:g} {axis.units})."
            )
        keep &= (axis.axis >= start) & (axis.axis <= end)
    if keep.sum() < 8:
        raise ValueError(
            f"Only {int(keep.sum())} energy channels are selected; at least 8 are needed."
        )
    return keep


def _folded_counts(signal, channels):
    """The selected channels as float32 ``(n_maps, rows, columns, channels)``."""
    data = signal.data
    index = np.flatnonzero(channels)
    if index[-1] - index[0] == index.size - 1:
        # A contiguous window: a view, no copy of float32 data.
        selection = (..., slice(index[0], index[-1] + 1))
    else:
        selection = (..., index)
    if hasattr(data, "dask"):
        # Lazy: nothing is read here; the cube reads it band by band.
        selected = data[selection].astype(np.float32)
        nav_shape = selected.shape[:-1]
        if len(nav_shape) == 1:
            return selected.reshape(1, 1, *selected.shape), nav_shape
        return selected.reshape(-1, *selected.shape[-3:]), nav_shape
    # C order with energy last: patches and spectra are gathered row by row.
    selected = np.ascontiguousarray(data[selection], dtype=np.float32)
    finite = np.isfinite(selected)
    if not finite.all():
        bad = np.argwhere(~finite)
        n_bad = len(bad)
        first = tuple(int(i) for i in bad[0][:-1])
        raise ValueError(
            f"The data contain {n_bad} non-finite value(s) (NaN or inf) in the "
            f"selected channels, first at navigation index {first} (array order). "
            "Replace or mask them first, e.g. exclude those pixels with "
            "navigation_mask or those channels with signal_mask."
        )
    nav_shape = selected.shape[:-1]
    if len(nav_shape) == 1:
        folded = selected.reshape(1, 1, *selected.shape)
    else:
        folded = selected.reshape(-1, *selected.shape[-3:])
    return folded, nav_shape


def _seed(random_state):
    if random_state is None:
        return int(np.random.default_rng().integers(2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    if _is_integer(random_state) and random_state >= 0:
        return int(random_state)
    raise ValueError(
        f"random_state must be None, a non-negative int or a numpy Generator, "
        f"not {random_state!r}."
    )


def _show_progressbar(show_progressbar):
    if show_progressbar is None:
        from hyperspy.defaults_parser import preferences

        return bool(preferences.General.show_progressbar)
    return bool(show_progressbar)


def _reuse_channels(signal, results):
    """Channels of ``signal`` matching a trained model's energies, one by one."""
    axis = signal.axes_manager.signal_axes[0]
    energy = results.energy
    step = np.median(np.abs(np.diff(energy))) if energy.size > 1 else 1.0
    nearest = np.clip(np.searchsorted(axis.axis, energy), 0, axis.size - 1)
    below = np.clip(nearest - 1, 0, axis.size - 1)
    closer = np.abs(axis.axis[below] - energy) < np.abs(axis.axis[nearest] - energy)
    chosen = np.where(closer, below, nearest)
    if np.unique(chosen).size != energy.size or not np.allclose(
        axis.axis[chosen], energy, atol=0.1 * step, rtol=0
    ):
        raise ValueError(
            "The energy axis of this signal does not match the model's: the model "
            f"was trained on {energy.size} channels from {energy[0]:g} to "
            f"{energy[-1]:g} {results.energy_units} (step {step:g}); this signal "
            f"covers {axis.axis[0]:g} to {axis.axis[-1]:g} {axis.units} with step "
            f"{getattr(axis, 'scale', np.nan):g}. Calibrate or crop the signal "
            "to the model's energy range and dispersion."
        )
    signal_step = np.median(np.abs(np.diff(axis.axis))) if axis.size > 1 else step
    if not np.isclose(signal_step, step, rtol=0.01):
        raise ValueError(
            f"The dispersion of this signal ({signal_step:g} {axis.units} per "
            f"channel) differs from the model's ({step:g} {results.energy_units})."
        )
    keep = np.zeros(axis.size, dtype=bool)
    keep[chosen] = True
    return keep


def _resampled(signal, results):
    """A copy of ``signal`` interpolated onto the model's energy channels."""
    from hyperspy.axes import UniformDataAxis

    axis = signal.axes_manager.signal_axes[0]
    energy = results.energy
    if energy[0] < axis.axis.min() or energy[-1] > axis.axis.max():
        raise ValueError(
            f"Cannot resample: the model covers {energy[0]:g} to {energy[-1]:g} "
            f"{results.energy_units}, beyond this signal's {axis.axis.min():g} to "
            f"{axis.axis.max():g} {axis.units}."
        )
    step = float(np.median(np.diff(energy)))
    new_axis = UniformDataAxis(
        offset=float(energy[0]),
        scale=step,
        size=int(round((energy[-1] - energy[0]) / step)) + 1,
        name=axis.name,
        units=axis.units,
    )
    resampled = signal.interpolate_on_axis(new_axis, axis.index_in_axes_manager)
    source_step = float(np.median(np.diff(axis.axis)))
    resampled.data = resampled.data * (step / source_step)
    return resampled


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ------------------------------------------------------------------ methods
def vae_anomalies(
    signal,
    output_dimension=None,
    navigation_mask=None,
    signal_mask=None,
    signal_range=None,
    threshold="f1",
    fdr=0.05,
    random_state=None,
    device="auto",
    model=None,
    resample=False,
    refit_fraction=0.2,
    print_info=True,
    show_progressbar=None,
    **settings,
):
    """Find anomalous pixels with a 3D convolutional variational autoencoder.

    Trains a small 3D-CVAE on the spectrum image (robustly, with no labels:
    rare anomalies are left out of what it learns), reconstructs every
    pixel's spectrum, scores how far each spectrum departs from its
    reconstruction and returns the map of scores with a threshold. The
    results are stored in ``signal.vae_results``; ``signal.data`` and
    ``signal.learning_results`` are not modified.

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        A spectrum image (e.g. ``EELSSpectrum``) with one or more navigation
        axes. Counts; negative values (dark-subtraction noise) are treated
        as zero.
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
    threshold : {"f1", "fdr", "otsu"} or float, default "f1"
        Threshold rule: ``"f1"`` maximises the F1 score expected under the
        fitted null (no labels needed); ``"fdr"`` controls the false-discovery
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
    refit_fraction : float, default 0.2
        Fraction of the training pixels that the first fit finds most
        anomalous and that the second fit leaves out (0 fits once).
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

    _check_signal(signal)
    nav_mask = _navigation_mask(navigation_mask, signal)
    check_threshold(threshold, fdr)
    if not 0 <= refit_fraction < 1:
        raise ValueError(f"refit_fraction must be in [0, 1), not {refit_fraction}.")
    torch_device = resolve_device(device)
    seed = _seed(random_state)

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
        try:
            channels = _reuse_channels(source, trained)
        except ValueError as err:
            if not resample:
                raise ValueError(
                    f"{err} Or pass resample=True to interpolate the spectra onto "
                    "the model's channels."
                ) from None
            source = _resampled(signal, trained)
            channels = _reuse_channels(source, trained)
    else:
        config = VAESettings()
        if output_dimension is not None:
            settings["latent_dim"] = (
                int(output_dimension)
                if _is_integer(output_dimension)
                else output_dimension
            )
        config = config.replace(**settings)
        channels = _channel_selection(signal, signal_mask, signal_range)

    folded, nav_shape = _folded_counts(source, channels)
    train_mask = np.ones(nav_shape, dtype=bool) if nav_mask is None else ~nav_mask
    n_train = int(train_mask.sum())
    if trained is None and n_train < MIN_TRAIN_PIXELS:
        raise ValueError(
            f"Only {n_train} pixels are available for training; at least "
            f"{MIN_TRAIN_PIXELS} are needed."
        )
    energy_bin = (
        trained.energy_bin
        if trained is not None
        else input_binning(folded.shape[-1], config.max_channels)
    )
    folded = bin_energy(folded, energy_bin)
    cube = SpectrumCube(
        folded,
        config.patch_size,
        input_binning(folded.shape[-1], config.max_encoder_channels),
    )
    net = None if trained is None else copy.deepcopy(trained.model).to(torch_device)
    detection = detect(
        cube,
        train_mask.ravel(),
        config,
        torch_device,
        seed,
        refit_fraction=refit_fraction,
        show_progressbar=_show_progressbar(show_progressbar),
        model=net,
    )
    history = dict(detection.history)
    history["n_train"] = int(detection.train_index.size)
    if trained is None and refit_fraction > 0:
        history["n_refit"] = int(detection.refit_index.size)

    def nav(values):
        return np.asarray(values).reshape(*nav_shape, *np.shape(values)[1:])

    scores = {name: nav(v) for name, v in detection.raw_scores.items()}
    scores["combined"] = nav(detection.scores)
    title = signal.metadata.General.title
    axis = source.axes_manager.signal_axes[0]
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
            "signal_range": [
                float(axis.axis[channels][0]),
                float(axis.axis[channels][-1]),
            ],
            "reused_model": trained is not None,
        },
    )
    if signal._lazy:
        amap = amap.as_lazy()
    results = VAEResults(
        settings=config,
        random_state=seed,
        model=detection.model,
        energy=axis.axis[channels],
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
    _check_signal(signal)
    if not (_is_integer(output_dimension) and output_dimension >= 1):
        raise ValueError(
            f"output_dimension must be a positive integer, not {output_dimension!r}."
        )
    nav_mask = _navigation_mask(navigation_mask, signal)
    check_threshold(threshold, fdr)
    channels = _channel_selection(signal, signal_mask, signal_range)
    counts, expected, loadings, train_mask, folded_shape, nav_shape = _pca_fit(
        signal, output_dimension, nav_mask, channels
    )
    expected = np.maximum(expected, 1e-3 * max(expected.mean(), 1e-12))
    residual_stats = scoring.residual_statistics(
        counts[train_mask], expected[train_mask]
    )
    raw = scoring.reconstruction_scores(counts, expected, residual_stats)
    _, _, scores = combine_scores(
        raw, np.nan_to_num(loadings), train_mask, folded_shape[:3]
    )
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
    folded, nav_shape = _folded_counts(signal, everything)
    # A work copy: the user's data and learning_results stay untouched;
    # negative counts (dark-subtraction noise) are clipped for the Poisson
    # normalisation.
    n_train = int(np.prod(nav_shape)) - (0 if nav_mask is None else int(nav_mask.sum()))
    if n_train < max(MIN_TRAIN_PIXELS, output_dimension + 1):
        raise ValueError(
            f"Only {n_train} pixels are available for PCA with {output_dimension} "
            f"components; at least {max(MIN_TRAIN_PIXELS, output_dimension + 1)} "
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
    from .nn.train import decode

    results = _results(signal)
    channels = results.channel_mask
    if channels.size != signal.axes_manager.signal_axes[0].size:
        raise ValueError("The signal's energy axis changed since vae_anomalies ran.")
    folded, nav_shape = _folded_counts(signal, channels)
    totals = np.clip(folded, 0, None).sum(axis=-1, dtype=np.float64).ravel()
    latent = results.latent_mean.reshape(-1, results.latent_mean.shape[-1])
    shapes = decode(
        copy.deepcopy(results.model).cpu(),
        latent,
        _cpu_device(),
        results.settings.inference_batch_size,
    )
    full = np.zeros((*nav_shape, channels.size), dtype=np.float32)
    expected = expand_energy(
        shapes * totals[:, None], results.energy_bin, channels.sum()
    )
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
    (and, with the robust refit, both fits).

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
    history = results.history
    n_channels = results.model.n_channels
    if not history.get("step"):
        raise ValueError("These results have no training history (a reused model).")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
    fits = [("first fit", history["first_fit"])] if "first_fit" in history else []
    fits.append(("final fit" if fits else "fit", history))
    for i, (name, h) in enumerate(fits):
        ax.plot(
            h["step"],
            np.array(h["train_loss"]) / n_channels,
            color=f"C{i}",
            ls="--",
            label=f"{name}: training",
        )
        ax.plot(
            h["step"],
            np.array(h["validation_loss"]) / n_channels,
            color=f"C{i}",
            label=f"{name}: held out",
        )
    ax.axhline(1.0, color="0.5", lw=0.8, label="Poisson noise floor")
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
    if not (_is_integer(pca_components) and pca_components >= 2):
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
    plot_vae_results = plot_vae_results
    plot_latent_space = plot_latent_space
    plot_vae_loss = plot_vae_loss


_PUBLIC = (
    "vae_anomalies",
    "pca_anomalies",
    "get_anomaly_map",
    "get_vae_model",
    "get_vae_latent",
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

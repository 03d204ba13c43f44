"""From a HyperSpy signal to the spectrum cube the detector sees.

Validation of the signal and of the user's masks and ranges, the channels
used, energy binning, the zero-loss peak of a low-loss twin (drift), the
noise model, and warnings where the data do not look like counts. Only this
module, :mod:`hyperspy_vae.decomposition` and :mod:`hyperspy_vae.signals`
touch HyperSpy signals.
"""

import math
import numbers

import numpy as np

__all__ = [
    "check_signal",
    "navigation_mask_array",
    "channel_selection",
    "folded_counts",
    "reuse_channels",
    "resampled",
    "energy_binning",
    "zero_loss_offsets",
    "count_warnings",
    "deviance_warning",
    "as_seed",
    "progressbar_setting",
    "is_integer",
]

#: Fewest pixels that ``vae_anomalies`` trains on.
MIN_TRAIN_PIXELS = 16


def check_signal(signal):
    """Raise unless ``signal`` is a real-valued spectrum image.

    Raises
    ------
    TypeError
        Not a HyperSpy signal, or complex or non-numeric data.
    ValueError
        No signal axis of its own (or more than one), or no navigation axis.
    """
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


def navigation_mask_array(mask, signal):
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


def channel_selection(signal, signal_mask, signal_range):
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


def folded_counts(signal, channels):
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
        if len(nav_shape) == 1 or nav_shape[-1] == 1:
            # A line scan, or a map one pixel wide: one line of pixels.
            return selected.reshape(1, 1, -1, selected.shape[-1]), nav_shape
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
    if len(nav_shape) == 1 or nav_shape[-1] == 1:
        # A line scan, or a map one pixel wide: one line of pixels.
        folded = selected.reshape(1, 1, -1, selected.shape[-1])
    else:
        folded = selected.reshape(-1, *selected.shape[-3:])
    return folded, nav_shape


def as_seed(random_state):
    """A non-negative int seed from ``None`` (fresh), an int or a Generator.

    Raises
    ------
    ValueError
        For anything else.
    """
    if random_state is None:
        return int(np.random.default_rng().integers(2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    if is_integer(random_state) and random_state >= 0:
        return int(random_state)
    raise ValueError(
        f"random_state must be None, a non-negative int or a numpy Generator, "
        f"not {random_state!r}."
    )


def progressbar_setting(show_progressbar):
    """``show_progressbar``, or HyperSpy's preference when it is None."""
    if show_progressbar is None:
        from hyperspy.defaults_parser import preferences

        return bool(preferences.General.show_progressbar)
    return bool(show_progressbar)


def reuse_channels(signal, results):
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


def resampled(signal, results):
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


def is_integer(value):
    """True for an integer (numpy's included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def energy_binning(n_pixels, n_channels, settings):
    """Adjacent channels summed into one, by the total work of the map.

    Summed counts are still counts, so binning costs no calibration, only
    energy resolution: it is used only where the work (pixels times
    channels) exceeds ``settings.max_work``, or the channels
    ``settings.max_channels``. A line scan or a map of a few thousand pixels
    keeps every channel.

    Returns
    -------
    int
        The binning factor (1: none).
    """
    return max(
        1,
        math.ceil(n_channels / settings.max_channels),
        math.ceil(n_pixels * n_channels / settings.max_work),
    )


def zero_loss_offsets(low_loss, signal):
    """Energy drift of every pixel from the zero-loss peak of a low-loss twin.

    The zero-loss peak's centre is the centroid of the channels above half
    its maximum around the highest channel (a sub-channel estimate); the
    drift is its departure from the median centre over the map.

    Parameters
    ----------
    low_loss : hyperspy.signals.Signal1D
        Low-loss spectrum image with the zero-loss peak, the same navigation
        shape as ``signal``.
    signal : hyperspy.signals.Signal1D
        The core-loss spectrum image.

    Returns
    -------
    numpy.ndarray
        Drift in the energy units of ``low_loss``, shape of the data's
        navigation axes (array order).

    Raises
    ------
    ValueError
        If the navigation shapes differ or the zero-loss peak is not found.
    """
    from hyperspy.signal import BaseSignal

    if (
        not isinstance(low_loss, BaseSignal)
        or low_loss.axes_manager.signal_dimension != 1
    ):
        raise TypeError("low_loss must be a low-loss spectrum image (a Signal1D).")
    if low_loss.axes_manager.navigation_shape != signal.axes_manager.navigation_shape:
        raise ValueError(
            f"low_loss has navigation shape {low_loss.axes_manager.navigation_shape}, "
            f"the signal {signal.axes_manager.navigation_shape}: they must match."
        )
    data = low_loss.data
    if hasattr(data, "compute"):
        data = data.compute()
    data = np.asarray(data, dtype=np.float64)
    spectra = data.reshape(-1, data.shape[-1])
    axis = low_loss.axes_manager.signal_axes[0].axis
    peak = np.argmax(spectra, axis=1)
    height = spectra[np.arange(len(spectra)), peak]
    if not np.all(height > 0):
        raise ValueError("low_loss has spectra without a positive zero-loss peak.")
    centres = np.empty(len(spectra))
    for i, (spectrum, top, h) in enumerate(zip(spectra, peak, height, strict=True)):
        lo = top
        while lo > 0 and spectrum[lo - 1] > h / 2:
            lo -= 1
        hi = top
        while hi < len(spectrum) - 1 and spectrum[hi + 1] > h / 2:
            hi += 1
        weights = spectrum[lo : hi + 1] - h / 2
        centres[i] = np.sum(axis[lo : hi + 1] * weights) / np.sum(weights)
    drift = centres - np.median(centres)
    return drift.reshape(data.shape[:-1])


def count_warnings(folded, noise):
    """Why the noise model may not hold: data that do not look like counts.

    Parameters
    ----------
    folded : numpy.ndarray or dask.array.Array
        ``(n_maps, rows, columns, n_channels)`` readings.
    noise : hyperspy_vae.noise.NoiseModel
        Their estimated noise model.

    Returns
    -------
    list of str
        One message per problem (empty when the data look like counts).
    """
    messages = list(noise.warnings)
    mean = folded.mean(axis=(0, 1, 2))
    if hasattr(mean, "compute"):
        mean = mean.compute()
    mean = np.asarray(mean, dtype=np.float64)
    if np.mean(mean <= 0) > 0.05:
        messages.append(
            f"{np.mean(mean <= 0):.0%} of the channels have a mean of zero or less: "
            "the data look background-subtracted. Pass the raw counts (the "
            "model learns the background)."
        )
    if noise.correlation.size > 1 and noise.correlation[1] > 0.9:
        messages.append(
            "Neighbouring channels' noise is almost perfectly correlated "
            f"({noise.correlation[1]:.2f}): the data look smoothed, denoised or "
            "heavily interpolated. Pass the counts as acquired."
        )
    return messages


#: The models' median held-out deviance per channel, about 1 for counts,
#: outside which the data are not taken for counts: a factor of two in the
#: channels' variance, far beyond a model's misfit (0.99 to 1.03 on the 14
#: clean maps of the realistic benchmark surveyed, tuning seed 4) and short
#: of a PCA-denoised map's (0.02 at 100 counts per channel; at 10,000,
#: 0.67, where the model's own misfit hides it).
DEVIANCE_RANGE = (0.5, 2.0)


def deviance_warning(deviance, n_channels):
    """Why the noise model may not hold, from the models' held-out fit.

    Each pixel's Poisson deviance of its effective counts against the
    reconstruction of the model that did not learn from it is about one
    per channel for counts whose noise the noise model describes. Far
    below, the spectra vary from channel to channel less than counts do
    (denoised, smoothed); far above, the models fit them worse than counts'
    noise allows (processed data, or structure the models did not learn).

    Parameters
    ----------
    deviance : numpy.ndarray
        ``(n_pixels,)`` held-out deviances.
    n_channels : int
        Channels each deviance is summed over.

    Returns
    -------
    str or None
        The message, or None where the median lies within
        :data:`DEVIANCE_RANGE`.
    """
    per_channel = float(np.nanmedian(deviance)) / max(int(n_channels) - 1, 1)
    low, high = DEVIANCE_RANGE
    if low <= per_channel <= high:
        return None
    if per_channel < low:
        return (
            f"The spectra vary from channel to channel {1 / max(per_channel, 1e-12):.3g}"
            " times less than counts with the estimated noise would (median held-out "
            f"deviance per channel {per_channel:.3g}, about 1 for counts): they look "
            "denoised (PCA) or smoothed. Pass the counts as acquired."
        )
    return (
        "The models fit the spectra worse than counts' noise allows (median "
        f"held-out deviance per channel {per_channel:.3g}, about 1 for counts): "
        "the data may be processed (deconvolved, interpolated, rescaled per "
        "pixel), or hold structure the models did not learn."
    )

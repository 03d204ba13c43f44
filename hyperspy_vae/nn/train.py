"""Fit loop and batched inference: device, batches, early stop, progress."""

import copy
import logging
import math
import warnings
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from scipy import stats

from .alignment import coarse_offsets, fit_offsets, shift_logits
from .losses import kl_divergence, multinomial_deviance, multinomial_nll
from .model import CVAE3D

__all__ = ["resolve_device", "to_device", "fit", "predict", "decode"]

_logger = logging.getLogger(__name__)


def resolve_device(device="auto"):
    """Return the :class:`torch.device` for ``device``.

    Parameters
    ----------
    device : str or torch.device, default "auto"
        ``"auto"`` picks CUDA, then Apple MPS, then the CPU; ``"cpu"``,
        ``"cuda"``, ``"cuda:N"`` or ``"mps"`` ask for one.

    Raises
    ------
    ValueError
        For an unknown device name.
    RuntimeError
        If the requested accelerator is not available.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'auto', not {device!r}.")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'mps'."
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device='cuda' was requested but CUDA is not available; "
            "use device='auto' or device='cpu'."
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(
            "device='mps' was requested but Apple MPS is not available; "
            "use device='auto' or device='cpu'."
        )
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device {device!r}: use 'cpu', 'cuda' or 'mps'.")
    return resolved


def _autocast(device):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def to_device(array, device):
    """A numpy array as a tensor on ``device`` (pinned memory for CUDA)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


@contextmanager
def _flush_denormals():
    """Flush subnormal floats to zero on the CPU while training.

    Adam's second-moment estimates of tiny gradients fall into the subnormal
    range, where x86 arithmetic is tens of times slower: without this, some
    fits ran at a tenth of their speed. Torch's default (off) is restored.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _without_tf32():
    """cuDNN settings as they are, but no TF32 (full fp32 convolutions)."""
    cudnn = torch.backends.cudnn
    return cudnn.flags(
        enabled=cudnn.enabled,
        benchmark=cudnn.benchmark,
        deterministic=cudnn.deterministic,
        allow_tf32=False,
    )


#: Width (eV) below which no core-loss feature varies (core-hole lifetimes
#: and the spectrometer's resolution broaden every edge more).
FINEST_FEATURE_EV = 0.1
#: Channels wider than this (eV) are not blurred: they already span a good
#: part of a white line (2.4 eV wide for Fe L3), and a blur would widen it.
WIDEST_BLURRED_CHANNEL_EV = 0.25


def output_blur(dispersion):
    """Blur of the decoder's logits, in channels (``CVAE3D``'s ``output_blur``).

    One channel, or :data:`FINEST_FEATURE_EV` where channels are finer, and
    none for channels wider than :data:`WIDEST_BLURRED_CHANNEL_EV`: with
    fine channels a reconstruction learned from noisy counts is jagged from
    channel to channel, and its energy derivative, which aligns and tests
    each pixel, is then mostly that noise.
    """
    d = max(float(dispersion), 1e-12)
    if d > WIDEST_BLURRED_CHANNEL_EV:
        return 0.0
    return max(FINEST_FEATURE_EV, d) / d


#: Training goes on (with a halved learning rate) while the held-out
#: deviance exceeds what a perfect model would score by more than this
#: fraction: at high counts the model's misfit, not the noise, would
#: otherwise decide the scores.
MISFIT_TOLERANCE = 0.01
#: Most halvings of the learning rate before training stops anyway.
MAX_HALVINGS = 3
#: Gauss-Newton steps of the energy offsets per training batch (each pixel's
#: offset is kept between visits, so a few steps per visit converge).
_OFFSET_STEPS = 2


def evaluation_interval(eval_every, batch_size, n_fit):
    """Steps between two evaluations of the held-out loss.

    ``eval_every`` steps, or fewer where the training pixels are fewer than a
    batch: a step then passes ``batch_size / n_fit`` times over each of them,
    and a network memorises their noise within a few tens of passes (on
    6 x 10 maps, 27 pixels per model, the held-out deviance was lowest at
    the first evaluation, after 25 steps or 118 passes, and rose by 30 %
    after). The interval is scaled down so that it spans as many passes as
    ``eval_every`` steps over a batch's worth of pixels.

    Parameters
    ----------
    eval_every : int
        The setting (see :class:`~hyperspy_vae.settings.VAESettings`).
    batch_size : int
        Samples per step.
    n_fit : int
        Pixels the steps draw from.

    Returns
    -------
    int
        At least 1.
    """
    if n_fit >= batch_size:
        return int(eval_every)
    return max(1, round(eval_every * n_fit / batch_size))


def _batch_losses(model, cube, index, device, sample, offsets, mixed_precision=True):
    """Losses of a batch, each reconstruction moved by its pixel's offset.

    ``offsets`` (a tensor over every pixel of the cube, in channels) holds
    each pixel's fitted energy offset, refined here by Gauss-Newton (no
    gradient). The reconstruction is moved by it before the likelihood:
    where a spectrum sits in energy (drift, or a chemical shift) costs the
    network nothing, so it has no reason to reproduce a shift, and the
    fitted offset of a shifted pixel carries all of it; the shift is then
    found by comparing offsets with the pixel's neighbours'.
    """
    patches = to_device(cube.patches(index), device).float()
    counts = to_device(cube.centre_counts(index), device)
    with _autocast(device) if mixed_precision else nullcontext():
        logits, mean, log_var = model(patches, sample=sample)
    logits, mean, log_var = logits.float(), mean.float(), log_var.float()
    where = torch.as_tensor(index, device=offsets.device)
    offset, _, _ = fit_offsets(
        logits.detach(), counts, offsets[where].to(device), _OFFSET_STEPS
    )
    offsets[where] = offset.to(offsets.device)
    aligned = shift_logits(logits, offset)
    return (
        multinomial_nll(aligned, counts),
        multinomial_deviance(aligned.detach(), counts),
        kl_divergence(mean, log_var),
    )


def initial_offsets(cube, index, template_logits, device, batch_size):
    """Starting offsets of the pixels ``index`` against a template spectrum.

    Cross-correlation (within ``cube.max_shift`` channels), then Gauss-Newton.

    Returns
    -------
    torch.Tensor
        ``(len(index),)`` float32 on the CPU.
    """
    out = torch.zeros(len(index))
    template = template_logits.to(device).float()
    for start in range(0, len(index), batch_size):
        part = index[start : start + batch_size]
        counts = to_device(cube.centre_counts(part), device)
        logits = template.expand(len(part), -1)
        coarse = coarse_offsets(counts, logits, cube.max_shift)
        offset, _, _ = fit_offsets(logits, counts, coarse, 4)
        out[start : start + len(part)] = offset.cpu()
    return out


def _kept(deviance, trim_fraction):
    """Indices of the best-fitting samples (robust, trimmed likelihood)."""
    n_keep = max(1, math.ceil(len(deviance) * (1.0 - trim_fraction)))
    return torch.topk(deviance, n_keep, largest=False).indices


def _validation_loss(model, cube, index, settings, device, offsets):
    """Trimmed mean held-out deviance, and what a perfect model would score.

    Each held-out pixel is aligned on the reconstruction from its starting
    offset (a few Gauss-Newton steps, not kept).

    The second (the noise floor) is the same trimmed mean for counts drawn
    from the model's own expected counts: where the first stays well above
    it, the model still misses structure that the counts resolve.
    """
    model.eval()
    deviances, floors = [], []
    with torch.no_grad():
        for start in range(0, len(index), settings.inference_batch_size):
            chunk = index[start : start + settings.inference_batch_size]
            patches = to_device(cube.patches(chunk), device).float()
            counts = to_device(cube.centre_counts(chunk), device)
            logits, _, _ = model(patches, sample=False)
            where = torch.as_tensor(chunk, device=offsets.device)
            offset, _, _ = fit_offsets(
                logits.float(), counts, offsets[where].to(device), _OFFSET_STEPS
            )
            aligned = shift_logits(logits.float(), offset)
            deviances.append(multinomial_deviance(aligned, counts))
            expected = counts.sum(-1, keepdim=True) * torch.softmax(aligned, -1)
            floors.append(multinomial_deviance(aligned, torch.poisson(expected)))
    model.train()
    deviance, floor = torch.cat(deviances), torch.cat(floors)
    return (
        float(deviance[_kept(deviance, settings.trim_fraction)].mean()),
        float(floor[_kept(floor, settings.trim_fraction)].mean()),
    )


def _data_statistics(cube, index, rng, n_sample=2048):
    """Log mean spectral shape, and per-channel input centre and spread."""
    sample = rng.choice(index, size=min(n_sample, len(index)), replace=False)
    # The mean spectrum without the top and bottom 10 % of each channel: a
    # cosmic-ray spike does not put a peak into the decoder's starting shape.
    counts = stats.trim_mean(cube.centre_counts(sample).astype(np.float64), 0.1)
    log_shape = np.log(counts / max(counts.sum(), 1e-12) + 1e-8)
    half = cube.patch_size // 2
    centre = cube.patches(sample)[:, half, half].astype(np.float32)
    # Each channel clipped to its 1st and 99th percentiles first: a cosmic-ray
    # spike in one pixel does not set the channel's scale (on a small map
    # its standard deviation would be the spike's alone), while the spread
    # between phases and thicknesses, which the encoder must keep, stays.
    low, high = np.percentile(centre, [1.0, 99.0], axis=0)
    clipped = np.clip(centre, low, high)
    mean = clipped.mean(axis=0)
    std = clipped.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return (
        torch.from_numpy(log_shape.astype(np.float32)),
        torch.from_numpy(mean.astype(np.float32)),
        torch.from_numpy(std.astype(np.float32)),
    )


def fit(
    cube,
    train_index,
    settings,
    device,
    seed,
    show_progressbar=False,
):
    """Train a :class:`CVAE3D` on the pixels ``train_index`` of ``cube``.

    The loss is the multinomial negative log-likelihood of each centre
    pixel's counts, its reconstruction moved by the pixel's fitted energy
    offset (see :func:`_batch_losses`), plus ``beta`` times the KL term; the
    worst-fitting ``trim_fraction`` of each batch is left out (robust
    training). A held-out part of the pixels drives early stopping: when it
    stops improving while still above its noise floor (what a perfect model
    would score), the learning rate is halved instead (up to
    :data:`MAX_HALVINGS` times); the best model is returned.
    A non-finite loss restores the last good state and halves the learning
    rate; a ``KeyboardInterrupt`` stops training with a warning and keeps the
    best model so far; a GPU out-of-memory error halves the batch size and
    continues.

    Parameters
    ----------
    cube : hyperspy_vae.cube.SpectrumCube
        The data.
    train_index : numpy.ndarray of int
        Flat pixel indices to learn from.
    settings : hyperspy_vae.settings.VAESettings
        Training settings.
    device : torch.device
        Where to train.
    seed : int
        Seed of every random draw (initial weights, batches, sampling).
    show_progressbar : bool, default False
        Show a progress bar of the training steps.

    Returns
    -------
    model : CVAE3D
        The trained model (best held-out loss), in eval mode, on ``device``.
    history : dict
        ``step``, ``train_loss``, ``validation_loss`` and ``noise_floor``
        lists, ``interrupted`` (bool) and ``train_index`` (the pixels learned
        from, after the ``max_train_pixels`` draw; validation pixels
        included).
    """
    from hyperspy.external.progressbar import progressbar

    rng = np.random.default_rng(seed)
    train_index = rng.permutation(np.asarray(train_index))
    if len(train_index) > settings.max_train_pixels:
        train_index = train_index[: settings.max_train_pixels]
    n_val = int(round(settings.validation_fraction * len(train_index)))
    if len(train_index) - n_val < 1:
        n_val = 0
    cube.prefetch(train_index)
    val_index, fit_index = train_index[:n_val], train_index[n_val:]
    if n_val == 0:
        val_index = fit_index

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _flush_denormals():
        torch.manual_seed(seed)
        log_shape, input_mean, input_std = _data_statistics(cube, fit_index, rng)
        model = CVAE3D(
            cube.n_channels,
            settings.latent_dim,
            settings.patch_size,
            settings.hidden_channels,
            cube.n_input_channels,
            log_shape,
            input_mean,
            input_std,
            output_blur=output_blur(cube.dispersion),
        ).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
        offsets = torch.zeros(cube.n_pixels)
        offsets[train_index] = initial_offsets(
            cube, train_index, log_shape, device, settings.inference_batch_size
        )
        history = {
            "step": [],
            "train_loss": [],
            "validation_loss": [],
            "interrupted": False,
            "train_index": train_index,
        }
        best = (math.inf, copy.deepcopy(model.state_dict()))
        good_state = copy.deepcopy(model.state_dict())
        stale = 0
        halvings = 0
        running = []
        bar = progressbar(
            range(1, settings.max_steps + 1),
            disable=not show_progressbar,
            desc="Training VAE",
            leave=False,
        )
        model.train()
        batch_size = settings.batch_size
        eval_every = evaluation_interval(
            settings.eval_every, batch_size, len(fit_index)
        )
        try:
            for step in bar:
                index = rng.choice(fit_index, size=batch_size)
                try:
                    nll, deviance, kl = _batch_losses(
                        model, cube, index, device, True, offsets
                    )
                except torch.cuda.OutOfMemoryError:
                    batch_size = _halve_batch(batch_size, device)
                    continue
                keep = _kept(deviance, settings.trim_fraction)
                beta = settings.beta * min(1.0, step / settings.kl_warmup_steps)
                loss = (nll[keep] + beta * kl[keep]).mean() / cube.n_channels
                if not torch.isfinite(loss):
                    _recover(model, optimizer, good_state, step)
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running.append(float(deviance[keep].mean()))
                if step % eval_every == 0 or step == settings.max_steps:
                    val, floor = _validation_loss(
                        model, cube, val_index, settings, device, offsets
                    )
                    history["step"].append(step)
                    history["train_loss"].append(float(np.mean(running)))
                    history["validation_loss"].append(val)
                    history.setdefault("noise_floor", []).append(floor)
                    running = []
                    if not math.isfinite(val):
                        _recover(model, optimizer, good_state, step)
                        continue
                    good_state = copy.deepcopy(model.state_dict())
                    bar.set_postfix(deviance=f"{val:.1f}")
                    if val < best[0] * (1 - 1e-3):
                        best = (val, copy.deepcopy(model.state_dict()))
                        stale = 0
                    else:
                        stale += 1
                        if stale >= settings.patience:
                            # Still well above the noise floor (high counts):
                            # a smaller step, not a stop.
                            if (
                                val > floor * (1 + MISFIT_TOLERANCE)
                                and halvings < MAX_HALVINGS
                            ):
                                halvings += 1
                                stale = 0
                                for group in optimizer.param_groups:
                                    group["lr"] *= 0.5
                            else:
                                break
        except KeyboardInterrupt:
            history["interrupted"] = True
            warnings.warn(
                "Training was interrupted; the best model so far is kept and used.",
                RuntimeWarning,
                stacklevel=2,
            )
        finally:
            bar.close()
    if math.isfinite(best[0]):
        model.load_state_dict(best[1])
    else:
        model.load_state_dict(good_state)
    model.eval()
    return model, history


def _halve_batch(batch_size, device):
    """Halve the batch size after a GPU out-of-memory error."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if batch_size <= 1:
        raise MemoryError("The GPU ran out of memory even with one patch per batch.")
    warnings.warn(
        f"GPU out of memory: batch size halved to {batch_size // 2}.",
        RuntimeWarning,
        stacklevel=3,
    )
    return batch_size // 2


def _recover(model, optimizer, good_state, step):
    """Restore the last good weights and halve the learning rate."""
    model.load_state_dict(good_state)
    for group in optimizer.param_groups:
        group["lr"] *= 0.5
        lr = group["lr"]
    optimizer.state.clear()
    if lr < 1e-7:
        raise FloatingPointError(
            f"The training loss stayed non-finite (step {step}) even at a "
            "learning rate below 1e-7; check the data for extreme values."
        )
    _logger.warning(
        "Non-finite loss at step %d: restored the last good state, learning rate "
        "halved to %.3g.",
        step,
        lr,
    )


def predict(model, cube, index, device, batch_size, decode=True):
    """Encode and reconstruct the pixels ``index`` in batches.

    Parameters
    ----------
    model : CVAE3D
        A trained model.
    cube : hyperspy_vae.cube.SpectrumCube
        The data.
    index : numpy.ndarray of int
        Flat pixel indices.
    device : torch.device
        Where to compute.
    batch_size : int
        Pixels per batch.
    decode : bool, default True
        Reconstruct the spectra; otherwise ``logits`` is None (encoding only).

    Yields
    ------
    index : numpy.ndarray of int
        The batch's pixel indices.
    latent_mean, latent_log_var : torch.Tensor
        Posterior mean and log-variance, ``(batch, latent_dim)``, on ``device``.
    logits : torch.Tensor
        Reconstruction logits over energy channels at offset 0 (their
        softmax is the spectral shape), float32 ``(batch, n_channels)``, on
        ``device`` (None unless ``decode``).
    """
    model.eval()
    start = 0
    # Full precision on every device: no TF32 convolutions on CUDA.
    with torch.no_grad(), _without_tf32():
        while start < len(index):
            chunk = index[start : start + batch_size]
            try:
                # Full precision: scores must not depend on the device.
                patches = to_device(cube.patches(chunk), device).float()
                mean, log_var = model.encode(patches)
                logits = None
                if decode:
                    logits = model.decode(mean).float()
            except torch.cuda.OutOfMemoryError:
                batch_size = _halve_batch(batch_size, device)
                continue
            start += len(chunk)
            yield chunk, mean.float(), log_var.float(), logits


def decode(model, latent_mean, device, batch_size, offset=None):
    """Return the spectral shapes (softmax) decoded from latent points.

    Parameters
    ----------
    model : CVAE3D
        A trained model.
    latent_mean : numpy.ndarray
        ``(n, latent_dim)``.
    device : torch.device
        Where to compute.
    batch_size : int
        Points per batch.
    offset : numpy.ndarray, optional
        ``(n,)`` energy offsets in channels: each shape is moved by its
        offset (see :func:`hyperspy_vae.nn.alignment.shift_logits`).

    Returns
    -------
    numpy.ndarray
        float32 ``(n, n_channels)``; each row sums to one.
    """
    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(latent_mean), batch_size):
            z = torch.from_numpy(latent_mean[start : start + batch_size]).to(device)
            logits = model.decode(z).float()
            if offset is not None:
                o = torch.from_numpy(
                    np.asarray(offset[start : start + batch_size], dtype=np.float32)
                ).to(device)
                logits = shift_logits(logits, o)
            out.append(torch.softmax(logits, dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.n_channels))

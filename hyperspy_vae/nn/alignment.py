"""Energy offsets of spectra against their reconstructions (pure PyTorch).

The network reconstructs each pixel's spectrum at a position of its own
choosing; where the pixel's spectrum actually sits (spectrometer drift, or a
chemical shift of a whole edge) is an explicit per-pixel *energy offset*,
fitted by Gauss-Newton on the counts' likelihood. Training fits it too, so
the network has no reason to spend its latent space on energy translations:
drift never becomes part of what it learns, and a shifted pixel can be told
from its neighbours by its offset (see :mod:`hyperspy_vae.scoring`).

Offsets are in channels, positive when the spectrum sits higher in energy
than the reconstruction.
"""

import numpy as np
import torch

__all__ = [
    "shift_logits",
    "smooth_channels",
    "offset_weights",
    "fit_offsets",
    "coarse_offsets",
]


#: Catmull-Rom cubic: the weights of the four neighbours (columns) are
#: ``[1, f, f**2, f**3] @ _CUBIC`` for a fraction ``f`` of a channel, and
#: their derivatives in ``f`` are ``[1, f, f**2, f**3] @ _CUBIC_SLOPE``.
_CUBIC = (
    (0.0, 1.0, 0.0, 0.0),
    (-0.5, 0.0, 0.5, 0.0),
    (1.0, -2.5, 2.0, -0.5),
    (-0.5, 1.5, -1.5, 0.5),
)
_CUBIC_SLOPE = (
    (-0.5, 0.0, 0.5, 0.0),
    (2.0, -5.0, 4.0, -1.0),
    (-1.5, 4.5, -4.5, 1.5),
    (0.0, 0.0, 0.0, 0.0),
)


def _cubic_weights(fraction):
    """Catmull-Rom weights of the four neighbours and their derivatives."""
    f = fraction[..., None]
    powers = torch.cat([torch.ones_like(f), f, f * f, f * f * f], dim=-1)
    weights = powers @ torch.tensor(_CUBIC, dtype=f.dtype, device=f.device)
    slopes = powers @ torch.tensor(_CUBIC_SLOPE, dtype=f.dtype, device=f.device)
    return weights, slopes


def _combine(windows, weights):
    """``sum_j windows[j] * weights[:, j]`` (four windows)."""
    out = windows[0] * weights[:, 0:1]
    for j in range(1, 4):
        out = torch.addcmul(out, windows[j], weights[:, j : j + 1])
    return out


def shift_logits(logits, offset, derivative=False):
    """Logits moved up in energy by ``offset`` channels (cubic interpolation).

    ``out[k] = logits(k - offset)``, interpolated with Catmull-Rom cubics
    (exact for quadratics, smooth, no overshoot beyond a few percent);
    beyond the ends the end values continue. Differentiable in ``logits``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, n_channels)``.
    offset : torch.Tensor
        ``(batch,)`` channels.
    derivative : bool, default False
        Also return the derivative of the output with respect to ``offset``.

    Returns
    -------
    torch.Tensor or tuple of torch.Tensor
    """
    n_channels = logits.shape[-1]
    # Every channel of a spectrum moves by the same offset: one fractional
    # part, one set of four weights per spectrum, and one gather of the
    # channels the four taps read (tap j of channel k reads k + j - 1 + base).
    move = -offset.to(torch.float64)
    base = torch.floor(move)
    weights, slopes = _cubic_weights((move - base).to(logits.dtype))
    index = (
        torch.arange(-1, n_channels + 2, device=logits.device)[None, :]
        + (base.long()[:, None])
    )
    taps = torch.gather(logits, 1, index.clamp(0, n_channels - 1))
    windows = [taps[:, j : j + n_channels] for j in range(4)]
    shifted = _combine(windows, weights)
    if not derivative:
        return shifted
    # d position / d offset = -1.
    return shifted, _combine(windows, -slopes)


def smooth_channels(values, sigma):
    """Gaussian smoothing along the last axis (end values continued).

    Parameters
    ----------
    values : torch.Tensor
        ``(batch, n_channels)``.
    sigma : float
        Standard deviation in channels; 0 returns ``values`` unchanged.

    Returns
    -------
    torch.Tensor
    """
    if sigma <= 0:
        return values
    radius = max(1, int(np.ceil(4.0 * sigma)))
    x = torch.arange(-radius, radius + 1, device=values.device, dtype=values.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum())[None, None]
    padded = torch.nn.functional.pad(
        values[:, None], (radius, radius), mode="replicate"
    )
    return torch.nn.functional.conv1d(padded, kernel)[:, 0]


def offset_weights(expected, tangent, smoothing=0.0):
    """Channel weights of the offset's estimating equation.

    The likelihood's own weights are ``tangent / expected``, the derivative
    of the log expected counts. A reconstruction learned from noisy counts
    carries a faint ripple from channel to channel; its derivative then
    weights the noise of flat channels, where the true derivative is nil,
    and the offset scatters wider than its Fisher error says. Smoothed by a
    Gaussian of ``smoothing`` channels, the weights keep the edges' slopes
    and lose the ripple; the equation ``sum (y - m) w = 0`` still holds at
    the true offset whatever the weights, so the offset stays unbiased.

    Parameters
    ----------
    expected, tangent : torch.Tensor
        ``(batch, n_channels)``.
    smoothing : float, default 0.0
        Gaussian standard deviation in channels.

    Returns
    -------
    torch.Tensor
        ``(batch, n_channels)``.
    """
    return smooth_channels(tangent / expected.clamp_min(1e-6), smoothing)


def fit_offsets(
    logits, counts, offset, n_iter=4, weight=None, max_step=1.0, smoothing=0.0
):
    """Gauss-Newton fit of each spectrum's energy offset.

    The expected counts are ``total * softmax(shift_logits(logits, o))``;
    each step moves ``o`` by the weighted projection of the residual on the
    expected counts' derivative (weights ``1 / expected``: counts whose
    variance is their mean), at most ``max_step`` channels. With
    ``smoothing``, the projection is on the smoothed weights of
    :func:`offset_weights` (a root of the estimating equation, not the
    likelihood's maximum).

    Parameters
    ----------
    logits : torch.Tensor
        ``(batch, n_channels)`` reconstruction logits (at offset 0).
    counts : torch.Tensor
        ``(batch, n_channels)`` effective counts.
    offset : torch.Tensor
        ``(batch,)`` starting offsets (channels).
    n_iter : int, default 4
        Gauss-Newton steps.
    weight : torch.Tensor, optional
        ``(batch, n_channels)`` channel weights in [0, 1] (0 leaves a channel
        out, e.g. a cosmic-ray spike: out of the fit and of the total the
        expected counts are scaled to).
    max_step : float, default 1.0
        Largest change of an offset in one step, in channels.
    smoothing : float, default 0.0
        Gaussian standard deviation (channels) of the weights' smoothing.

    Returns
    -------
    offset : torch.Tensor
        ``(batch,)`` fitted offsets.
    expected : torch.Tensor
        ``(batch, n_channels)`` expected counts at the fitted offsets.
    tangent : torch.Tensor
        ``(batch, n_channels)`` derivative of ``expected`` with respect to
        the offset.
    """
    offset = offset.clone()
    with torch.no_grad():
        if weight is None:
            total = counts.sum(dim=-1, keepdim=True)
        for step in range(n_iter + 1):
            shifted, slope = shift_logits(logits, offset, derivative=True)
            p = torch.softmax(shifted, dim=-1)
            if weight is not None:
                # The total of the channels kept, over their share of the shape.
                total = (weight * counts).sum(-1, keepdim=True) / (weight * p).sum(
                    -1, keepdim=True
                ).clamp_min(1e-12)
            expected = total * p
            tangent = expected * (slope - (p * slope).sum(-1, keepdim=True))
            if step == n_iter:
                break
            if smoothing > 0:
                w = offset_weights(expected, tangent, smoothing)
                if weight is not None:
                    w = w * weight
                denominator = (tangent * w).sum(-1)
                # Weights that do not follow the slope (no edge) take no step.
                numerator = torch.where(
                    denominator > 1e-12, ((counts - expected) * w).sum(-1), 0.0
                )
                denominator = denominator.clamp_min(1e-12)
            else:
                w = 1.0 / expected.clamp_min(1e-6)
                if weight is not None:
                    w = w * weight
                numerator = ((counts - expected) * tangent * w).sum(-1)
                denominator = (tangent * tangent * w).sum(-1).clamp_min(1e-12)
            offset = offset + (numerator / denominator).clamp(-max_step, max_step)
    return offset, expected, tangent


def coarse_offsets(counts, logits, max_shift):
    """Whole-channel offsets of greatest likelihood (cross-correlation).

    The multinomial log-likelihood of the counts at offset ``L`` is
    ``sum_k y_k log p(k - L) - N log sum_k p(k - L)``: a cross-correlation of
    the counts with the log spectral shape, less the total ``N`` times the
    log of the moved shape's sum over the window (the shape continues its
    end values beyond the ends), computed for every ``L`` within
    ``+-max_shift`` channels at once by FFT. A starting point for :func:`fit_offsets` when offsets may exceed
    a feature's width; unlike a correlation of derivatives it is not thrown
    off by the noise of each channel.

    Parameters
    ----------
    counts : torch.Tensor
        ``(batch, n_channels)``.
    logits : torch.Tensor
        ``(batch, n_channels)`` reconstruction logits.
    max_shift : int
        Largest offset searched, in channels.

    Returns
    -------
    torch.Tensor
        ``(batch,)`` float offsets (whole channels).
    """
    n = counts.shape[-1]
    max_shift = int(max(0, min(max_shift, n // 4)))
    if max_shift == 0:
        return torch.zeros(counts.shape[0], device=counts.device)
    # Double precision: the correlation's rounding grows with the counts.
    counts = counts.double()
    log_shape = torch.log_softmax(logits.double(), dim=-1)
    padded = torch.nn.functional.pad(
        log_shape[:, None], (max_shift, max_shift), mode="replicate"
    )[:, 0]
    length = 1 << (n + 2 * max_shift + n).bit_length()
    # c[j] = sum_k y_k padded[k + j] for j = 0 .. 2 max_shift; offset L = max_shift - j.
    correlation = torch.fft.irfft(
        torch.conj(torch.fft.rfft(counts, n=length)) * torch.fft.rfft(padded, n=length),
        n=length,
    )[:, : 2 * max_shift + 1]
    # The shape moved by L is renormalised over the window: its log-sum
    # enters the likelihood times the total counts.
    mass = torch.nn.functional.pad(torch.cumsum(torch.exp(padded), dim=-1), (1, 0))
    lags = torch.arange(2 * max_shift + 1, device=counts.device)
    window_mass = mass[:, lags + n] - mass[:, lags]
    total = counts.sum(-1, keepdim=True)
    likelihood = correlation - total * torch.log(window_mass.clamp_min(1e-30))
    return (max_shift - likelihood.argmax(dim=-1)).float()

"""Count-likelihood losses: multinomial and Poisson NLL, deviance, KL."""

import torch

__all__ = [
    "kl_divergence",
    "multinomial_deviance",
    "multinomial_nll",
    "poisson_nll",
]


def multinomial_nll(logits, counts):
    """Multinomial negative log-likelihood of counts over energy channels.

    The softmax of ``logits`` over the last axis is the spectral shape; the
    observed counts weight its log. Constant terms (the multinomial
    coefficient) are omitted.

    Parameters
    ----------
    logits : torch.Tensor
        Shape ``(batch, n_channels)``.
    counts : torch.Tensor
        Observed counts, same shape, non-negative.

    Returns
    -------
    torch.Tensor
        NLL per sample, shape ``(batch,)``.
    """
    return -(counts * torch.log_softmax(logits, dim=-1)).sum(dim=-1)


def multinomial_deviance(logits, counts):
    """Deviance of counts against the multinomial fit (0 for a perfect fit).

    For a correct model it is close to chi-square distributed with about
    ``n_channels`` degrees of freedom, whatever the total counts, so it ranks
    pixels of different thickness fairly.

    Parameters
    ----------
    logits : torch.Tensor
        Shape ``(batch, n_channels)``.
    counts : torch.Tensor
        Observed counts, same shape, non-negative.

    Returns
    -------
    torch.Tensor
        Deviance per sample, shape ``(batch,)``.
    """
    total = counts.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    log_observed = torch.log(torch.where(counts > 0, counts / total, 1.0))
    log_p = torch.log_softmax(logits, dim=-1)
    return 2.0 * (counts * (log_observed - log_p)).sum(dim=-1)


def poisson_nll(log_rate, counts):
    """Poisson negative log-likelihood (without the ``log(c!)`` term).

    Parameters
    ----------
    log_rate : torch.Tensor
        Log of the expected counts, shape ``(batch, n_channels)``.
    counts : torch.Tensor
        Observed counts, same shape.

    Returns
    -------
    torch.Tensor
        NLL per sample, shape ``(batch,)``.
    """
    return (torch.exp(log_rate) - counts * log_rate).sum(dim=-1)


def kl_divergence(mean, log_var):
    """KL divergence of N(mean, exp(log_var)) from the standard normal prior.

    Returns
    -------
    torch.Tensor
        KL per sample, shape ``(batch,)``.
    """
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=-1)

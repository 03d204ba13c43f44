"""Figures of the results (matplotlib; every function returns its figure)."""

import numpy as np

__all__ = ["plot_vae_results", "plot_latent_space", "compare"]


def _first_map(values):
    """The first 2D (or 1D) map of navigation-shaped values."""
    values = np.asarray(values)
    while values.ndim > 2:
        values = values[0]
    return values


def _extent(amap):
    axes = amap.axes_manager.signal_axes
    if len(axes) < 2:
        return None
    x, y = axes[0], axes[1]
    return (x.axis[0], x.axis[-1], y.axis[-1], y.axis[0])


def _axis_label(axis):
    name = axis.name if isinstance(axis.name, str) else "position"
    units = axis.units if isinstance(axis.units, str) else ""
    return f"{name} ({units})" if units else name


def _draw_map(ax, amap, values, mask=None, cmap="viridis", vmin=None, vmax=None):
    values = _first_map(values)
    sig_axes = amap.axes_manager.signal_axes
    if values.ndim == 1:
        ax.plot(sig_axes[0].axis, values, color="C0")
        if mask is not None:
            m = _first_map(mask)
            ax.plot(sig_axes[0].axis[m], values[m], "o", color="C3", ms=4)
        ax.set_xlabel(_axis_label(sig_axes[0]))
        return None
    im = ax.imshow(
        values,
        extent=_extent(amap),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    if mask is not None and _first_map(mask).any():
        ax.contour(
            _first_map(mask).astype(float),
            levels=[0.5],
            colors="red",
            linewidths=0.8,
            extent=_extent(amap),
            origin="upper",
        )
    ax.set_xlabel(_axis_label(sig_axes[0]))
    ax.set_ylabel(_axis_label(sig_axes[1]))
    return im


def plot_vae_results(signal, results, amap, max_latent=4):
    """Anomaly map, histogram, latent maps, typical vs anomalous spectra.

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        The spectrum image.
    results : hyperspy_vae.results.VAEResults
        Its results.
    amap : AnomalyMap or AnomalyMap1D
        Its anomaly map.
    max_latent : int, default 4
        Most latent maps shown.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 0.9])
    ax_map, ax_hist, ax_spec = top.subplots(1, 3)
    scores = results.scores["combined"]
    mask = scores > amap.threshold
    im = _draw_map(ax_map, amap, scores, mask)
    if im is not None:
        top.colorbar(im, ax=ax_map, label="score (-log10 p)", shrink=0.8)
    ax_map.set_title(
        f"Anomaly map: {int(mask.sum())} pixels flagged", fontsize="medium"
    )
    amap.plot_histogram(ax=ax_hist)
    ax_hist.set_title("Score histogram", fontsize="medium")

    axis = signal.axes_manager.signal_axes[0]
    data = signal.data
    if hasattr(data, "compute"):
        data = data.compute()
    flat = np.asarray(data).reshape(-1, axis.size)
    flags = mask.ravel()
    energy = axis.axis
    normal_mean = flat[~flags].mean(axis=0) if (~flags).any() else None
    if normal_mean is not None:
        ax_spec.plot(energy, normal_mean, color="0.3", label="mean of normal pixels")
    if flags.any():
        anomalous_mean = flat[flags].mean(axis=0)
        ax_spec.plot(energy, anomalous_mean, color="C3", label="mean of flagged pixels")
        if normal_mean is not None:
            ax_spec.plot(
                energy,
                anomalous_mean - normal_mean,
                color="C0",
                lw=0.8,
                label="difference",
            )
    used = results.energy
    ax_spec.axvspan(used[0], used[-1], color="C2", alpha=0.08, label="scored range")
    ax_spec.set_xlabel(_axis_label(axis))
    ax_spec.set_ylabel("Counts")
    ax_spec.legend(fontsize="small")
    ax_spec.set_title("Typical vs anomalous spectra", fontsize="medium")

    latent = results.latent_mean
    n_show = min(max_latent, latent.shape[-1])
    ax_lat = np.atleast_1d(bottom.subplots(1, n_show))
    for i, ax in enumerate(ax_lat):
        im = _draw_map(ax, amap, latent[..., i], cmap="RdBu_r")
        ax.set_title(f"Latent {i}", fontsize="medium")
        if im is not None:
            bottom.colorbar(im, ax=ax, shrink=0.7)
    bottom.suptitle("Latent maps (posterior means)", fontsize="medium")
    fig.suptitle(amap.metadata.General.title)
    return fig


def compare(maps, truth=None, titles=None, pca_components=(3, 4, 5)):
    """Anomaly maps side by side on one colour scale, optionally with the truth.

    Parameters
    ----------
    maps : list of AnomalyMap, or a spectrum image
        The maps to compare (e.g. the VAE's and PCA's). Given a spectrum
        image ``s`` instead, its VAE map (``s.vae_results``, or a new
        ``s.vae_anomalies()`` run) is drawn beside ``s.pca_anomalies(k)`` for
        each ``k`` in ``pca_components``.
    truth : numpy.ndarray of bool, optional
        Navigation-shaped ground truth, drawn first.
    titles : list of str, optional
        Panel titles; default the maps' titles (or "VAE", "PCA, k = ...").
    pca_components : tuple of int, default (3, 4, 5)
        PCA output dimensions, when ``maps`` is a spectrum image.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import hyperspy_vae
    >>> s, truth = hyperspy_vae.data.fe_l23_spectrum_image((32, 32), random_state=0)
    >>> fig = hyperspy_vae.plot.compare(s, truth.anomalous)  # doctest: +SKIP
    """
    from hyperspy.signal import BaseSignal

    from .signals.anomaly_map import AnomalyMapMixin

    if isinstance(maps, BaseSignal) and not isinstance(maps, AnomalyMapMixin):
        signal = maps
        results = getattr(signal, "vae_results", None)
        vae_map = results.anomaly_map if results is not None else None
        if vae_map is None:
            vae_map = signal.vae_anomalies(print_info=False)
        maps = [vae_map] + [
            signal.pca_anomalies(output_dimension=k, print_info=False)
            for k in pca_components
        ]
        titles = titles or ["VAE"] + [f"PCA, k = {k}" for k in pca_components]
    import matplotlib.pyplot as plt

    n = len(maps) + (truth is not None)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.6), layout="constrained")
    axes = np.atleast_1d(axes)
    if truth is not None:
        _draw_map(axes[0], maps[0], truth.astype(float), cmap="gray_r")
        axes[0].set_title("Ground truth", fontsize="medium")
    vmax = max(float(np.nanmax(m.data)) for m in maps)
    for i, amap in enumerate(maps):
        ax = axes[i + (truth is not None)]
        mask = amap.data > amap.threshold
        im = _draw_map(ax, amap, amap.data, mask, vmin=0, vmax=vmax)
        title = titles[i] if titles else amap.metadata.General.title
        ax.set_title(f"{title}\n{int(mask.sum())} flagged", fontsize="medium")
    if im is not None:
        fig.colorbar(im, ax=axes, label="score (-log10 p)", shrink=0.8)
    return fig


def _two_dimensional(points):
    """The first two principal axes of ``points`` (``(n, d)``), and a label."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[1] <= 2:
        if points.shape[1] == 1:
            points = np.column_stack([points[:, 0], np.zeros(len(points))])
        return points, ("dimension 0", "dimension 1")
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, ("projection 1", "projection 2")


def _scatter(ax, points, flagged, title):
    xy, labels = _two_dimensional(points)
    ax.scatter(*xy[~flagged].T, s=3, color="0.6", alpha=0.5, label="normal")
    ax.scatter(*xy[flagged].T, s=8, color="C3", label=f"flagged ({flagged.sum()})")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small", markerscale=2)


def plot_latent_space(latent, pca_loadings, flagged, pca_components):
    """Every pixel in the VAE latent space beside PCA's first two loadings.

    Parameters
    ----------
    latent : numpy.ndarray
        ``(n_pixels, latent_dim)`` posterior means (projected on their first
        two principal axes when there are more than two).
    pca_loadings : numpy.ndarray
        ``(n_pixels, k)`` PCA loadings.
    flagged : numpy.ndarray of bool
        ``(n_pixels,)`` pixels flagged by the VAE.
    pca_components : int
        Number of PCA components (for the title).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, (ax_vae, ax_pca) = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
    _scatter(ax_vae, latent, flagged, "VAE latent space")
    _scatter(
        ax_pca,
        pca_loadings[:, :2],
        flagged,
        f"PCA loadings ({pca_components} components)",
    )
    ax_pca.set_xlabel("loading 1")
    ax_pca.set_ylabel("loading 2")
    fig.suptitle("Pixels flagged by the VAE, in the VAE's and PCA's spaces")
    return fig

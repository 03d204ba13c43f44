"""Anomaly-map signals: per-pixel anomaly scores with a threshold."""

import numbers

import numpy as np
from hyperspy.signals import LazySignal1D, LazySignal2D, Signal1D, Signal2D

from .. import thresholds

__all__ = ["AnomalyMap", "AnomalyMap1D", "LazyAnomalyMap", "LazyAnomalyMap1D"]

_DEFAULT_FDR = 0.05
THRESHOLD_RULES = ("f1", "fdr", "otsu")


def check_threshold(threshold, fdr):
    """Raise ``ValueError`` unless ``threshold`` and ``fdr`` are valid.

    Parameters
    ----------
    threshold : {"f1", "fdr", "otsu"} or float
        A threshold rule or a finite score.
    fdr : float
        A false-discovery rate in (0, 1).
    """
    real = isinstance(fdr, numbers.Real) and not isinstance(fdr, bool)
    if not (real and 0 < fdr < 1):
        raise ValueError(f"fdr must be in (0, 1), not {fdr}.")
    if isinstance(threshold, str):
        if threshold not in THRESHOLD_RULES:
            raise ValueError(
                f"Unknown threshold {threshold!r}: use 'f1', 'fdr', 'otsu' or a number."
            )
    elif not (
        isinstance(threshold, numbers.Real)
        and not isinstance(threshold, bool)
        and np.isfinite(threshold)
    ):
        raise ValueError(
            f"threshold must be 'f1', 'fdr', 'otsu' or a finite number, not {threshold!r}."
        )


class AnomalyMapMixin:
    """Behaviour shared by the 2D and 1D anomaly maps.

    The data are anomaly scores, ``-log10`` of each pixel's p-value under
    the fitted null (higher is more anomalous). The threshold and how it was
    chosen live in ``metadata.Anomaly``, so they survive ``save``/``load``.
    """

    _signal_type = "anomaly_map"

    @property
    def threshold(self):
        """Score above which a pixel is anomalous (float), or None if unset."""
        value = self.metadata.get_item("Anomaly.threshold")
        return None if value is None else float(value)

    def _scores(self):
        data = self.data
        if self._lazy:
            data = data.compute()
        return np.asarray(data, dtype=np.float64)

    def set_threshold(self, threshold="f1", contamination=None, fdr=None):
        """Choose the threshold above which pixels are anomalous.

        Parameters
        ----------
        threshold : {"f1", "fdr", "otsu"} or float, default "f1"
            ``"f1"``: the threshold that maximises the F1 score expected
            under the fitted null (the pixels' p-values are ``10 ** -score``),
            falling back to ``"fdr"`` where the data show no more anomalous
            pixels than noise would; ``"fdr"``: Benjamini-Hochberg, so that
            about ``fdr`` of the flagged pixels are expected to be false
            alarms; ``"otsu"``: Otsu's threshold of the score histogram; a
            float: that score.
        contamination : float, optional
            Flag this fraction of pixels with the highest scores instead
            (PyOD's convention); ``threshold`` must then be left at its
            default.
        fdr : float, optional
            False-discovery rate for ``"fdr"`` (and the fallback of
            ``"f1"``); defaults to the last one used, else 0.05.

        Examples
        --------
        >>> amap.set_threshold("fdr", fdr=0.01)  # doctest: +SKIP
        >>> amap.set_threshold(contamination=0.02)  # doctest: +SKIP
        """
        if fdr is None:
            fdr = self.metadata.get_item("Anomaly.fdr", _DEFAULT_FDR)
        if contamination is not None and threshold not in ("f1", None):
            raise ValueError("Give either a threshold or a contamination, not both.")
        check_threshold("f1" if threshold is None else threshold, fdr)
        scores = self._scores()
        if contamination is not None:
            value = thresholds.contamination_threshold(scores, contamination)
            method = "contamination"
        else:
            value = thresholds.rule_threshold(scores, threshold, fdr)
            method = threshold if threshold in ("f1", "fdr", "otsu") else "value"
        self.metadata.set_item("Anomaly.threshold", float(value))
        self.metadata.set_item("Anomaly.threshold_method", method)
        self.metadata.set_item("Anomaly.fdr", float(fdr))
        if contamination is not None:
            self.metadata.set_item("Anomaly.contamination", float(contamination))

    def get_mask(self):
        """Boolean signal, True where the score exceeds the threshold.

        Its axes are the map's, all as navigation axes (signal dimension 0),
        which is what HyperSpy takes as a navigation mask: pass it directly as
        the ``navigation_mask`` of ``s.decomposition()`` or
        ``s.vae_anomalies()`` (True = excluded there, so this leaves the
        anomalous pixels out). ``mask.T.plot()`` shows it as an image.

        Returns
        -------
        hyperspy.signals.BaseSignal
        """
        if self.threshold is None:
            raise ValueError("No threshold is set: call set_threshold() first.")
        mask = self._deepcopy_with_new_data(self.data > self.threshold)
        mask.set_signal_type("")
        mask = mask.transpose(signal_axes=0)
        mask.metadata.General.title = f"Anomalous pixels of {self._source_title()}"
        if mask.metadata.has_item("Anomaly"):
            del mask.metadata.Anomaly
        return mask

    def _source_title(self):
        title = self.metadata.General.title
        for prefix in ("Anomaly map of ", "PCA anomaly map of "):
            if title.startswith(prefix):
                return title[len(prefix) :]
        return title

    def get_regions(self):
        """Connected regions of anomalous pixels, largest first.

        Pixels above the threshold are grouped with their edge neighbours
        (``scipy.ndimage.label``) in each map (line scans: runs of pixels).

        Returns
        -------
        list of dict
            One per region: ``label`` (1, 2, ...), ``size`` (pixels),
            ``centroid`` (calibrated navigation coordinates, in the map's
            signal-axis order, x first) and ``mean_score``. With extra
            navigation axes, ``index`` gives the map the region is in.
        """
        from scipy import ndimage

        if self.threshold is None:
            raise ValueError("No threshold is set: call set_threshold() first.")
        scores = self._scores()
        n_axes = len(self.axes_manager.signal_axes)
        maps = scores.reshape(-1, *scores.shape[-n_axes:])
        axes = self.axes_manager.signal_axes  # x first; array order is reversed
        regions = []
        for map_index, values in enumerate(maps):
            labels, n = ndimage.label(values > self.threshold)
            for label in range(1, n + 1):
                inside = labels == label
                centre = ndimage.center_of_mass(inside)  # array order
                centroid = tuple(
                    float(axis.index2value(0) + axis.scale * c)
                    if axis.is_uniform
                    else float(np.interp(c, np.arange(axis.size), axis.axis))
                    for axis, c in zip(axes, centre[::-1], strict=True)
                )
                region = {
                    "label": len(regions) + 1,
                    "size": int(inside.sum()),
                    "centroid": centroid,
                    "mean_score": float(values[inside].mean()),
                }
                if len(maps) > 1:
                    region["index"] = int(map_index)
                regions.append(region)
        regions.sort(key=lambda r: -r["size"])
        for i, region in enumerate(regions, start=1):
            region["label"] = i
        return regions

    @property
    def n_anomalous(self):
        """Number of pixels above the threshold."""
        if self.threshold is None:
            raise ValueError("No threshold is set: call set_threshold() first.")
        return int(np.sum(self._scores() > self.threshold))

    def plot_histogram(self, ax=None, bins="auto", log=True):
        """Histogram of the scores with the threshold drawn.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw; a new figure is made if None.
        bins : int or str, default "auto"
            Passed to :meth:`matplotlib.axes.Axes.hist`.
        log : bool, default True
            Logarithmic count axis, so that a few anomalous pixels show.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
        scores = self._scores().ravel()
        scores = scores[np.isfinite(scores)]
        ax.hist(scores, bins=bins, color="0.5", log=log)
        if self.threshold is not None:
            ax.axvline(
                self.threshold,
                color="C3",
                label=f"threshold {self.threshold:.2f} "
                f"({self.metadata.get_item('Anomaly.threshold_method', '')}): "
                f"{self.n_anomalous} pixels",
            )
            ax.legend(loc="upper right", fontsize="small")
        ax.set_xlabel("Anomaly score (-log10 p)")
        ax.set_ylabel("Pixels")
        ax.set_title(self.metadata.General.title, fontsize="medium")
        return ax


class AnomalyMap(AnomalyMapMixin, Signal2D):
    """Anomaly scores of a 2D scan (higher is more anomalous).

    Made by ``s.vae_anomalies()`` or ``s.pca_anomalies()``. Extra navigation
    dimensions of the source (a time series of maps) stay navigation axes.
    """


class AnomalyMap1D(AnomalyMapMixin, Signal1D):
    """Anomaly scores of a line scan (higher is more anomalous)."""


class LazyAnomalyMap(AnomalyMap, LazySignal2D):
    """Lazy anomaly map of a 2D scan."""


class LazyAnomalyMap1D(AnomalyMap1D, LazySignal1D):
    """Lazy anomaly map of a line scan."""


def make_anomaly_map(
    scores, source, title, threshold="f1", fdr=_DEFAULT_FDR, method_metadata=None
):
    """Build the anomaly map of ``source`` from navigation-shaped scores.

    Parameters
    ----------
    scores : numpy.ndarray
        Navigation-shaped scores (array order).
    source : hyperspy.signals.BaseSignal
        The spectrum image the scores belong to; its navigation axes become
        the map's axes.
    title : str
        Title of the new signal.
    threshold : {"f1", "fdr", "otsu"} or float, default "f1"
        The initial threshold rule, see :meth:`AnomalyMapMixin.set_threshold`.
    fdr : float, default 0.05
        False-discovery rate of the ``"fdr"`` rule (and ``"f1"``'s fallback).
    method_metadata : dict, optional
        Stored under ``metadata.Anomaly`` (how the map was made).

    Returns
    -------
    AnomalyMap or AnomalyMap1D
    """
    axes = source.axes_manager._get_navigation_axes_dicts()
    cls = AnomalyMap1D if scores.ndim == 1 else AnomalyMap
    amap = cls(np.array(scores, dtype=np.float64), axes=axes)
    amap.metadata.General.title = title
    for key, value in (method_metadata or {}).items():
        amap.metadata.set_item(f"Anomaly.{key}", value)
    amap.set_threshold(threshold, fdr=fdr)
    return amap

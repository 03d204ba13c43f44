"""Figures against baseline images (pytest-mpl), on fixed inputs.

Regenerate the baselines after a deliberate change of a figure with
``python -m pytest tests/test_figures.py --mpl-generate-path=tests/baseline``
and look at them before committing.
"""

import numpy as np
import pytest

from hyperspy_vae import AnomalyMap
from hyperspy_vae import plot as vae_plot

COMPARE = dict(baseline_dir="baseline", style="default", tolerance=2)


def _map(seed, title):
    rng = np.random.default_rng(seed)
    scores = rng.exponential(0.4, (24, 32))
    scores[5:9, 6:10] += 6.0
    scores[16, 25] += 9.0
    amap = AnomalyMap(scores)
    amap.metadata.General.title = title
    for axis, name in zip(amap.axes_manager.signal_axes, ("x", "y"), strict=True):
        axis.name, axis.units, axis.scale = name, "nm", 0.5
    amap.set_threshold(3.0)
    return amap


@pytest.mark.mpl_image_compare(**COMPARE)
def test_compare_figure():
    truth = np.zeros((24, 32), dtype=bool)
    truth[5:9, 6:10] = truth[16, 25] = True
    return vae_plot.compare(
        [_map(0, "VAE"), _map(1, "PCA")], truth, titles=["VAE", "PCA, k = 3"]
    )


@pytest.mark.mpl_image_compare(**COMPARE)
def test_histogram_figure():
    ax = _map(0, "VAE").plot_histogram()
    return ax.figure


@pytest.mark.mpl_image_compare(**COMPARE)
def test_latent_space_figure():
    rng = np.random.default_rng(2)
    latent = rng.standard_normal((400, 4))
    flagged = np.zeros(400, dtype=bool)
    flagged[:12] = True
    latent[:12] += 4.0
    loadings = rng.standard_normal((400, 3))
    return vae_plot.plot_latent_space(latent, loadings, flagged, 3)

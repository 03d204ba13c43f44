"""hyperspy_vae: spectral anomaly detection in EELS spectrum images.

``import hyperspy_vae`` attaches ``vae_anomalies``, ``pca_anomalies``,
``get_anomaly_map``, ``get_vae_model``, ``get_vae_latent``,
``plot_vae_results`` and ``plot_latent_space`` to HyperSpy's signals (HyperSpy has no registry for
methods on existing classes). Importing is cheap: torch loads only when a
model is trained or used.
"""

from . import data, plot
from ._version import __version__
from .decomposition import (
    VAEDecomposition,
    attach_methods,
    pca_anomalies,
    vae_anomalies,
)
from .results import VAEResults
from .settings import VAESettings
from .signals import AnomalyMap, AnomalyMap1D, LazyAnomalyMap, LazyAnomalyMap1D

attach_methods()

__all__ = [
    "AnomalyMap",
    "AnomalyMap1D",
    "LazyAnomalyMap",
    "LazyAnomalyMap1D",
    "VAEDecomposition",
    "VAEResults",
    "VAESettings",
    "__version__",
    "data",
    "plot",
    "pca_anomalies",
    "vae_anomalies",
]

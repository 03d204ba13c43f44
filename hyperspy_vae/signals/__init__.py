"""Signal classes registered by hyperspy_vae."""

from .anomaly_map import AnomalyMap, AnomalyMap1D, LazyAnomalyMap, LazyAnomalyMap1D

__all__ = ["AnomalyMap", "AnomalyMap1D", "LazyAnomalyMap", "LazyAnomalyMap1D"]

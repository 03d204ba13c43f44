"""Synthetic EELS spectrum images with known anomalies (ground truth).

:func:`fe_l23_spectrum_image` builds an Fe L2,3 spectrum image from analytic
edge shapes (no downloads, no generalised oscillator strength files), with
anomalous pixels and, on request, the nuisances of measured data: drift over
the scan, detector gain and noise, plural scattering, several edges, a second
phase and cosmic-ray spikes.
"""

from .edges import FE_L2, FE_L3, fe_l23_expected_spectrum
from .spectrum_image import (
    SyntheticTruth,
    fe_l23_spectrum_image,
    low_loss_spectrum_image,
)

__all__ = [
    "FE_L2",
    "FE_L3",
    "SyntheticTruth",
    "fe_l23_expected_spectrum",
    "fe_l23_spectrum_image",
    "low_loss_spectrum_image",
]

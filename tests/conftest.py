import os

os.environ.setdefault("MPLBACKEND", "agg")

import hyperspy.api as hs  # noqa: E402
import pytest  # noqa: E402

import hyperspy_vae  # noqa: E402
from hyperspy_vae.data import fe_l23_spectrum_image  # noqa: E402

hs.preferences.General.show_progressbar = False

#: Small and fast: 96 channels of 0.5 eV cover both Fe white lines.
SMALL = dict(n_channels=96, dispersion=0.5, offset=680.0)
#: One fit (n_fits=1): the ensemble has its own tests (test_ensemble.py).
FAST = dict(max_steps=60, eval_every=20, print_info=False, n_fits=1)


@pytest.fixture
def small_si():
    """A 16 x 16 map with a few strongly shifted pixels, and its truth."""
    return fe_l23_spectrum_image(
        (16, 16), shift=2.0, fraction=0.05, random_state=3, **SMALL
    )


@pytest.fixture(scope="module")
def fitted_si():
    """A small map on which vae_anomalies has run once (shared per module)."""
    s, truth = fe_l23_spectrum_image(
        (16, 16), shift=2.0, fraction=0.05, random_state=3, **SMALL
    )
    amap = s.vae_anomalies(random_state=0, **FAST)
    return s, truth, amap


__all__ = ["FAST", "SMALL", "hyperspy_vae"]

"""Property-based tests: shapes, dtypes, masks and value ranges.

Whatever the input, ``vae_anomalies`` either returns a finite map or raises
a clear ``ValueError``/``TypeError`` of its own; it never crashes from deep
inside torch or numpy and never alters ``s.data`` or ``s.learning_results``.
"""

import numpy as np
from hyperspy.signals import Signal1D
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hyperspy_vae  # noqa: F401


def _raised_by_us(err):
    """True if the innermost frame that raised ``err`` is hyperspy_vae's."""
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return "hyperspy_vae" in tb.tb_frame.f_code.co_filename


TINY = dict(max_steps=4, eval_every=2, print_info=False, random_state=0)


@st.composite
def spectrum_images(draw):
    rows = draw(st.integers(1, 7))
    cols = draw(st.integers(1, 7))
    channels = draw(st.integers(4, 40))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8]))
    low = draw(st.sampled_from([0.0, -5.0]))
    high = draw(st.sampled_from([0.0, 1.0, 50.0, 1e4]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    data = rng.uniform(low, max(high, low + 1e-3), size=(rows, cols, channels))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        data = np.clip(np.round(data), info.min, info.max)
    signal = Signal1D(data.astype(dtype))
    nav_mask = None
    if draw(st.booleans()):
        nav_mask = rng.uniform(size=(cols, rows)) < draw(st.floats(0.0, 1.0))
    return signal, nav_mask


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spectrum_images())
def test_never_crashes_and_never_alters_the_data(case):
    signal, nav_mask = case
    before = signal.data.copy()
    try:
        amap = signal.vae_anomalies(navigation_mask=nav_mask, **TINY)
    except (ValueError, TypeError) as err:
        assert str(err)
        assert _raised_by_us(err), "an error from deep inside a dependency"
    else:
        assert amap.data.shape == signal.data.shape[:-1]
        assert np.isfinite(amap.data).all()
        assert np.isfinite(amap.threshold)
    np.testing.assert_array_equal(signal.data, before)
    assert signal.data.dtype == before.dtype
    assert signal.learning_results.loadings is None


@settings(max_examples=25, deadline=None, derandomize=True)
@given(spectrum_images(), st.integers(1, 4))
def test_pca_anomalies_never_crashes(case, k):
    signal, nav_mask = case
    before = signal.data.copy()
    try:
        amap = signal.pca_anomalies(k, navigation_mask=nav_mask, print_info=False)
    except (ValueError, TypeError) as err:
        assert str(err)
        assert _raised_by_us(err), "an error from deep inside a dependency"
    else:
        assert amap.data.shape == signal.data.shape[:-1]
    np.testing.assert_array_equal(signal.data, before)

"""The noise model, estimated from the data."""

import numpy as np
import pytest

from hyperspy_vae.data import fe_l23_spectrum_image
from hyperspy_vae.noise import NoiseModel, biweight_variance, estimate_noise


def _cube(s):
    data = s.data
    return (
        data.reshape(1, *data.shape)
        if data.ndim == 3
        else data.reshape(1, 1, *data.shape)
    )


@pytest.mark.parametrize(
    ("options", "phi"),
    [
        (dict(), 1.0),
        (dict(gain=0.1), 0.1),
        (dict(gain=30.0), 30.0),
        (dict(noise_factor=4.0), 4.0),
        (dict(dose=0.1), 1.0),  # ~10 counts per channel: integer lattice
        (dict(navigation_shape=(100,)), 1.0),
    ],
)
def test_variance_per_unit_mean_is_recovered(options, phi):
    kwargs = dict(navigation_shape=(32, 32), fraction=0.02, random_state=0)
    kwargs.update(options)
    s, _ = fe_l23_spectrum_image(**kwargs)
    noise = estimate_noise(_cube(s))
    assert noise.phi == pytest.approx(phi, rel=0.06)
    assert noise.correlation[1:].max(initial=0) < 0.05


def test_read_noise_and_gain_together():
    s, truth = fe_l23_spectrum_image(
        (32, 32), fraction=0.0, gain=30.0, read_noise=30.0, dose=0.3, random_state=1
    )
    noise = estimate_noise(_cube(s))
    mean = truth.expected.mean()
    variance = noise.phi * mean + noise.read_variance
    assert variance == pytest.approx(30.0 * mean + 900.0, rel=0.05)


def test_channel_correlation_of_blurred_data():
    s, _ = fe_l23_spectrum_image((32, 32), fraction=0.0, psf_sigma=1.0, random_state=2)
    noise = estimate_noise(_cube(s))
    assert noise.correlation[1] == pytest.approx(0.78, abs=0.05)
    assert noise.long_run_factor > 2.5


def test_effective_counts_are_gain_invariant():
    s, _ = fe_l23_spectrum_image((32, 32), fraction=0.0, random_state=3)
    cube = _cube(s)
    y1 = estimate_noise(cube).effective_counts(cube)
    y4 = estimate_noise(4 * cube).effective_counts(4 * cube)
    np.testing.assert_allclose(y1, y4, rtol=1e-4, atol=1e-3)


def test_biweight_ignores_outliers():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(20000)
    x[:400] = 1e4  # 2 % gross outliers (spikes, anomalies)
    assert biweight_variance(x) == pytest.approx(1.0, rel=0.05)


def test_round_trip_and_a_map_too_small_for_an_estimate():
    model = NoiseModel(phi=2.5, read_variance=3.0, correlation=np.array([1.0, 0.2]))
    again = NoiseModel.from_dict(model.to_dict())
    assert again.phi == 2.5 and again.read_variance == 3.0
    np.testing.assert_array_equal(again.correlation, [1.0, 0.2])
    tiny = estimate_noise(np.ones((1, 2, 2, 50)))
    assert tiny.phi == 1.0 and tiny.warnings


def test_sparse_counts_and_zero_padded_channels():
    rng = np.random.default_rng(5)
    counts = rng.poisson(0.05, (1, 20, 30, 200)).astype(np.float32)
    counts[..., 150:] = 0.0  # channels beyond the detector: always zero
    noise = estimate_noise(counts)
    assert np.isfinite(noise.phi) and noise.phi == pytest.approx(1.0, rel=0.3)
    assert np.isfinite(noise.effective_counts(counts)).all()

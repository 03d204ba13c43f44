"""End to end under the nuisances of measured data: drift, gain, spikes, phases."""

import warnings

import numpy as np
import pytest

from hyperspy_vae.data import fe_l23_spectrum_image, low_loss_spectrum_image

from .conftest import FAST, SMALL


def _flags(amap):
    return np.asarray(amap.data) > amap.threshold


def test_drift_from_the_zero_loss_peak_and_from_the_data():
    s, truth = fe_l23_spectrum_image(
        (24, 24),
        shift=2.0,
        fraction=0.03,
        drift={"jitter": 1.0},
        random_state=1,
        **SMALL,
    )
    ll = low_loss_spectrum_image(truth, random_state=2)
    before = s.data.copy()
    s.vae_anomalies(low_loss=ll, random_state=0, **FAST)
    measured = s.get_vae_drift().data
    true = truth.drift - np.median(truth.drift)
    np.testing.assert_allclose(measured, true, atol=0.03)
    np.testing.assert_array_equal(s.data, before)  # nothing interpolated
    with pytest.warns(UserWarning, match="drift"):
        s.vae_anomalies(random_state=0, **FAST)
    from_data = s.get_vae_drift().data
    assert np.corrcoef(from_data.ravel(), true.ravel())[0, 1] > 0.9
    assert s.get_vae_drift().axes_manager.signal_shape == (24, 24)


def test_low_loss_must_match_the_navigation_shape():
    s, truth = fe_l23_spectrum_image((12, 12), random_state=1, **SMALL)
    ll = low_loss_spectrum_image(truth).inav[:6]
    with pytest.raises(ValueError, match="navigation shape"):
        s.vae_anomalies(low_loss=ll, **FAST)


def test_row_jitter_is_not_flagged():
    s, _ = fe_l23_spectrum_image(
        (24, 24), fraction=0.0, drift={"jitter": 0.5}, random_state=3, **SMALL
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        amap = s.vae_anomalies(random_state=0, **FAST)
    assert _flags(amap).sum() <= 2


def test_a_detector_gain_changes_nothing():
    s, truth = fe_l23_spectrum_image(
        (24, 24), shift=1.5, fraction=0.04, random_state=4, **SMALL
    )
    flags = _flags(s.vae_anomalies(random_state=0, **FAST))
    assert flags[truth.anomalous].mean() > 0.5
    for factor in (0.25, 4.0):
        scaled = s._deepcopy_with_new_data(s.data * np.float32(factor))
        other = _flags(scaled.vae_anomalies(random_state=0, **FAST))
        assert np.mean(other != flags) <= 0.01
        assert scaled.vae_results.noise.phi == pytest.approx(
            factor * s.vae_results.noise.phi, rel=1e-3
        )


def test_spikes_are_reported_not_flagged():
    s, truth = fe_l23_spectrum_image(
        (24, 24), fraction=0.0, spikes=0.02, random_state=5, **SMALL
    )
    amap = s.vae_anomalies(random_state=0, **FAST)
    found = s.vae_results.spikes
    assert found[truth.spikes].all()
    assert found.sum() <= truth.spikes.sum() + 2
    assert _flags(amap).sum() <= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_a_second_phase_is_not_an_anomaly(seed):
    s, _ = fe_l23_spectrum_image(
        (24, 24), fraction=0.0, second_phase=0.4, random_state=6, **SMALL
    )
    # Trained as by default (a model trained a few steps has not yet told
    # the phases apart).
    amap = s.vae_anomalies(random_state=seed, print_info=False)
    assert _flags(amap).sum() <= 2


def test_data_that_are_not_counts_are_warned_about():
    s, _ = fe_l23_spectrum_image((16, 16), fraction=0.0, random_state=7, **SMALL)
    subtracted = s._deepcopy_with_new_data(s.data - s.data.mean(axis=-1, keepdims=True))
    with pytest.warns(UserWarning, match="background-subtracted"):
        subtracted.vae_anomalies(random_state=0, **FAST)
    assert subtracted.vae_results.warnings
    assert "background-subtracted" in subtracted.vae_results.summary()


def test_the_held_out_fit_tells_denoised_data_from_counts():
    from hyperspy_vae import prepare

    n = 300
    assert prepare.deviance_warning(np.full(50, 1.02 * (n - 1)), n) is None
    assert "denoised" in prepare.deviance_warning(np.full(50, 0.05 * (n - 1)), n)
    assert "worse" in prepare.deviance_warning(np.full(50, 3.0 * (n - 1)), n)
    s, _ = fe_l23_spectrum_image((16, 16), fraction=0.0, random_state=7, **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s.vae_anomalies(random_state=0, **FAST)
    assert not any("assume counts" in str(w.message) for w in caught)
    assert not s.vae_results.warnings
    s.decomposition(normalize_poissonian_noise=True, print_info=False)
    denoised = s.get_decomposition_model(3)
    with pytest.warns(UserWarning, match="denoised"):
        # Trained long enough to fit smooth spectra (60 steps leave a misfit
        # of half the counts' noise).
        denoised.vae_anomalies(random_state=0, **dict(FAST, max_steps=300))
    assert any("denoised" in w for w in denoised.vae_results.warnings)


def test_long_spectra_of_a_small_map_keep_every_channel():
    s, _ = fe_l23_spectrum_image(
        (12, 12),
        fraction=0.0,
        n_channels=1200,
        dispersion=0.1,
        offset=660.0,
        random_state=8,
    )
    s.vae_anomalies(random_state=0, **FAST)
    assert s.vae_results.energy_bin == 1
    assert s.vae_results.model.n_channels == 1200

"""Several fits (``n_fits``): averaged statistics and the flag frequency."""

import numpy as np
import pytest

from hyperspy_vae import VAEResults

from .conftest import FAST


def test_single_fit_frequency_is_the_flags(fitted_si):
    s, _, amap = fitted_si
    frequency = s.vae_results.flag_frequency
    np.testing.assert_array_equal(frequency, (amap.data > amap.threshold) * 1.0)


@pytest.fixture(scope="module")
def ensemble_si():
    from hyperspy_vae.data import fe_l23_spectrum_image

    from .conftest import SMALL

    s, truth = fe_l23_spectrum_image(
        (16, 16), shift=2.0, fraction=0.05, random_state=3, **SMALL
    )
    amap = s.vae_anomalies(random_state=0, **{**FAST, "n_fits": 2})
    return s, truth, amap


def test_ensemble_keeps_every_fit_and_a_frequency(ensemble_si):
    s, truth, amap = ensemble_si
    results = s.vae_results
    assert len(results.models) == 4
    assert len(results.history["fits"]) == 4
    frequency = results.flag_frequency
    assert frequency.shape == amap.data.shape
    assert set(np.unique(frequency)) <= {0.0, 0.5, 1.0}
    # Strong shifts: the fits agree on nearly every pixel, and they flag
    # the anomalous ones.
    assert np.isin(frequency, (0.0, 1.0)).mean() > 0.9
    assert frequency[truth.anomalous].mean() > 0.5
    assert frequency[~truth.anomalous].mean() < 0.1
    assert "x 2 fits" in results.summary()


def test_ensemble_differs_from_its_first_fit(ensemble_si, fitted_si):
    # The same seed: the first fit of the ensemble is the single fit, so the
    # averaged scores differ from it only through the second fit.
    s, _, amap = ensemble_si
    single = fitted_si[2]
    assert not np.allclose(amap.data, single.data)
    np.testing.assert_allclose(
        np.corrcoef(amap.data.ravel(), single.data.ravel())[0, 1], 1.0, atol=0.2
    )


def test_ensemble_round_trip_and_reuse(ensemble_si, tmp_path):
    s, _, amap = ensemble_si
    path = s.vae_results.save(tmp_path / "ensemble")
    loaded = VAEResults.load(path)
    assert len(loaded.models) == 4 and loaded.settings.n_fits == 2
    np.testing.assert_array_equal(loaded.flag_frequency, s.vae_results.flag_frequency)
    again = s.deepcopy().vae_anomalies(model=path, print_info=False)
    np.testing.assert_allclose(again.data, amap.data, rtol=1e-5, atol=1e-6)


def test_wrong_number_of_networks_is_refused(ensemble_si, tmp_path):
    s, _, _ = ensemble_si
    results = s.vae_results
    models = results.models
    results.models = models[:3]
    try:
        path = results.save(tmp_path / "odd")
    finally:
        results.models = models
    with pytest.raises(ValueError, match="two cross-fitted ones per fit"):
        VAEResults.load(path)


def test_n_fits_must_be_positive(small_si):
    s, _ = small_si
    with pytest.raises(ValueError, match="n_fits"):
        s.vae_anomalies(**{**FAST, "n_fits": 0})


def test_settings_saved_before_n_fits_are_one_fit():
    from hyperspy_vae.settings import VAESettings

    saved = VAESettings().to_dict()
    assert saved.pop("n_fits") == 3
    assert VAESettings.from_dict(saved).n_fits == 1


def test_interrupted_ensemble_keeps_the_finished_fits(small_si, monkeypatch):
    from hyperspy_vae.nn import train

    original = train.fit
    calls = []

    def fit_interrupted_in_the_second_fit(*args, **kwargs):
        model, history = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            history["interrupted"] = True
        return model, history

    monkeypatch.setattr(train, "fit", fit_interrupted_in_the_second_fit)
    s, _ = small_si
    s.vae_anomalies(random_state=0, **{**FAST, "n_fits": 3})
    assert len(calls) == 4  # the second fit's pair, then no third fit
    assert len(s.vae_results.models) == 2
    assert s.vae_results.settings.n_fits == 1

"""The model, losses and scores alone (no HyperSpy)."""

import numpy as np
import pytest
import torch

from hyperspy_vae import scoring
from hyperspy_vae.nn.losses import kl_divergence, multinomial_deviance
from hyperspy_vae.nn.model import CVAE3D
from hyperspy_vae.settings import VAESettings


def test_model_shapes():
    model = CVAE3D(n_channels=101, latent_dim=3, patch_size=3)
    logits, mean, log_var = model(torch.rand(5, 3, 3, 101))
    assert logits.shape == (5, 101) and mean.shape == (5, 3) and log_var.shape == (5, 3)


def test_deviance_zero_for_perfect_fit_and_positive_otherwise():
    counts = torch.tensor([[1.0, 2.0, 7.0]])
    exact = torch.log(counts)
    assert float(multinomial_deviance(exact, counts)) == pytest.approx(0.0, abs=1e-5)
    assert float(multinomial_deviance(torch.zeros(1, 3), counts)) > 0


def test_kl_zero_at_prior():
    assert float(kl_divergence(torch.zeros(1, 4), torch.zeros(1, 4))) == 0.0


def _peaks(shift, n=400, rng=None):
    e = np.linspace(0, 40, 200)
    mu = 50 + 400 * np.exp(-0.5 * ((e - 20 - shift) / 1.5) ** 2)
    mu = np.broadcast_to(mu, (n, e.size))
    return rng.poisson(mu).astype(float), np.broadcast_to(
        50 + 400 * np.exp(-0.5 * ((e - 20) / 1.5) ** 2), (n, e.size)
    )


def test_shift_score_is_standard_normal_under_null_and_detects_shift():
    rng = np.random.default_rng(0)
    counts, expected = _peaks(0.0, rng=rng)
    z = scoring.reconstruction_scores(counts, expected)["shift"]
    assert abs(z.mean()) < 0.2 and 0.85 < z.std() < 1.15
    shifted, _ = _peaks(0.3, rng=rng)
    z_shift = scoring.reconstruction_scores(shifted, expected)["shift"]
    assert np.abs(z_shift).min() > 4


def test_pearson_and_deviance_of_perfect_reconstruction():
    counts = np.array([[1.0, 5.0, 9.0, 2.0]])
    scores = scoring.reconstruction_scores(counts, counts)
    assert scores["pearson"][0] == pytest.approx(0.0, abs=1e-12)
    assert scores["deviance"][0] == pytest.approx(0.0, abs=1e-9)


def test_fdr_threshold_flags_strong_signals_only():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=990), np.full(10, 1e-9)])
    scores = -np.log10(p)
    threshold = scoring.fdr_threshold(scores, p, 0.05)
    flagged = scores > threshold
    assert flagged[-10:].all() and flagged[:990].sum() <= 3
    none = scoring.fdr_threshold(scores[:990], p[:990], 0.01)
    assert (scores[:990] > none).sum() <= 1


def test_null_p_values_are_uniform_for_normal_scores():
    rng = np.random.default_rng(2)
    values = rng.standard_normal(5000)
    p = scoring.null_p_values(values, np.ones(5000, bool), "two-sided")
    assert 0.008 < (p < 0.01).mean() < 0.013


@pytest.mark.parametrize(
    "change",
    [
        dict(patch_size=2),
        dict(trim_fraction=0.9),
        dict(hidden_channels=(8, 8)),
        dict(beta=-1.0),
        dict(batch_size=True),
    ],
)
def test_settings_validate(change):
    with pytest.raises(ValueError):
        VAESettings(**change)


def test_settings_round_trip():
    s = VAESettings(latent_dim=2, hidden_channels=(4, 8, 8))
    assert VAESettings.from_dict(s.to_dict()) == s


def test_local_score_finds_a_narrow_peak_the_deviance_dilutes():
    rng = np.random.default_rng(3)
    expected = np.full((300, 320), 100.0)
    counts = rng.poisson(expected).astype(float)
    bump = 40.0 * np.exp(-0.5 * ((np.arange(320) - 150) / 2.0) ** 2)
    counts[:30] += rng.poisson(bump, size=(30, 320))
    scores = scoring.reconstruction_scores(counts, expected)
    reference = np.ones(300, bool)
    p_local = scoring.null_p_values(scores["local"], reference, "maximum")
    p_deviance = scoring.null_p_values(scores["deviance"], reference, "upper")
    assert np.median(p_local[:30]) < 1e-4
    assert np.median(p_local[:30]) < 1e-2 * np.median(p_deviance[:30])


def test_maximum_null_is_calibrated():
    rng = np.random.default_rng(4)
    values = np.abs(rng.standard_normal((20000, 200))).max(axis=1)
    p = scoring.null_p_values(values, np.ones(values.size, bool), "maximum")
    assert 0.007 < (p < 0.01).mean() < 0.014
    assert (p < 1e-3).mean() < 2.5e-3


def test_expected_f1_threshold_adapts_and_falls_back():
    rng = np.random.default_rng(5)
    null = rng.uniform(size=4000)
    strong = np.concatenate([null, np.full(80, 1e-12)])
    scores = -np.log10(strong)
    flagged = scores > scoring.expected_f1_threshold(scores, strong, 0.05)
    assert flagged[-80:].all() and flagged[:4000].sum() <= 2
    # Weak signals: more lenient than Benjamini-Hochberg at 5 %.
    weak = np.concatenate([null, 10 ** -rng.uniform(2, 5, size=200)])
    scores = -np.log10(weak)
    f1_cut = scoring.expected_f1_threshold(scores, weak, 0.05)
    assert f1_cut < scoring.fdr_threshold(scores, weak, 0.05)
    # No signal: the fallback flags (almost) nothing.
    scores = -np.log10(null)
    assert (scores > scoring.expected_f1_threshold(scores, null, 0.05)).sum() <= 1


def test_encoder_input_binned_for_long_spectra_while_output_keeps_every_channel():
    from hyperspy_vae.cube import SpectrumCube, input_binning

    assert input_binning(320, 384) == 1 and input_binning(1312, 384) == 4
    rng = np.random.default_rng(0)
    counts = rng.poisson(20.0, (1, 6, 5, 1310)).astype(np.float32)
    cube = SpectrumCube(counts, 3, input_binning(1310, 384))
    assert cube.n_input_channels == 328
    patches = cube.patches(np.array([0, 29]))
    assert patches.shape == (2, 3, 3, 328)
    # The corner patch repeats the edge pixels; bins are means of 4 channels.
    expected = np.sqrt(counts[0, 0, 0, :4].mean() * cube.scale[0, 0, 0])
    assert patches[0, 0, 0, 0] == pytest.approx(expected, rel=1e-3)  # float16
    model = CVAE3D(1310, 2, 3, (4, 8, 8), n_input_channels=328)
    logits, _, _ = model(torch.from_numpy(patches))
    assert logits.shape == (2, 1310)


def test_local_score_filters_match_scipy_gaussian_filters():
    from scipy import ndimage

    x = np.random.default_rng(1).standard_normal((20, 150))
    expected = np.max(
        [
            np.abs(ndimage.gaussian_filter1d(x, w, axis=-1, mode="constant")).max(-1)
            / np.sqrt(np.sum(scoring._gaussian(w) ** 2))
            for w in scoring.LOCAL_WIDTHS
        ],
        axis=0,
    )
    got = scoring._largest_smoothed(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_shift_null_spread_floored_at_its_theoretical_unit_variance():
    rng = np.random.default_rng(2)
    narrow = rng.normal(0.0, 0.5, 200)  # a small sample that happens to be narrow
    reference = np.ones(200, dtype=bool)
    p_free = scoring.null_p_values(narrow, reference, "two-sided")
    p_floor = scoring.null_p_values(narrow, reference, "two-sided", min_spread=1.0)
    assert np.all(p_floor >= p_free - 1e-12)
    from scipy import stats

    z = narrow - np.median(narrow)
    np.testing.assert_allclose(p_floor, 2 * stats.norm.sf(np.abs(z)), rtol=1e-9)


def test_bin_energy_sums_channels_and_expand_spreads_them_back():
    from hyperspy_vae.cube import bin_energy, expand_energy

    counts = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    binned = bin_energy(counts, 4)
    np.testing.assert_array_equal(binned[0], [6, 22, 17])  # last bin: 2 channels
    assert bin_energy(counts, 1) is counts
    expanded = expand_energy(binned, 4, 10)
    assert expanded.shape == (2, 10)
    np.testing.assert_allclose(expanded.sum(axis=-1), counts.sum(axis=-1))
    np.testing.assert_allclose(expanded[0, 8:], [8.5, 8.5])


def test_pooled_shift_lifts_weak_clusters_not_the_pixels_beside_strong_ones():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((1, 30, 30))
    z[0, 10:14, 10:14] += 2.5  # a weak 4 x 4 cluster
    z[0, 20, 20] = 40.0  # one strong isolated anomaly
    pooled = scoring.pooled_shift(z.ravel(), (1, 30, 30)).reshape(z.shape)
    assert pooled[0, 11:13, 11:13].mean() > 1.8 * z[0, 11:13, 11:13].mean()
    beside = pooled[0, 19:22, 19:22].copy()
    beside[1, 1] = 0.0
    assert np.abs(beside).max() < 5.0  # own |z| plus at most 2, over sqrt(2)
    ref = np.ones(900, dtype=bool)
    p_own = scoring.null_p_values(z.ravel(), ref, "two-sided", 1.0)
    p_pooled = scoring.null_p_values(pooled.ravel(), ref, "two-sided", 1.0)
    assert scoring.pooling_helps(z.ravel(), p_own, p_pooled)
    strong = z.copy()
    strong[0, 10:14, 10:14] += 30.0
    pooled = scoring.pooled_shift(strong.ravel(), (1, 30, 30))
    p_own = scoring.null_p_values(strong.ravel(), ref, "two-sided", 1.0)
    p_pooled = scoring.null_p_values(pooled, ref, "two-sided", 1.0)
    assert not scoring.pooling_helps(strong.ravel(), p_own, p_pooled)

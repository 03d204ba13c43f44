"""The synthetic data generator and its nuisances."""

import numpy as np
import pytest

from hyperspy_vae.data import fe_l23_spectrum_image
from hyperspy_vae.data.nuisances import scan_drift


def _ratio_of_variance_to_mean(s, truth):
    residual = s.data - truth.expected
    return float(residual.var() / truth.expected.mean())


def test_defaults_are_unit_gain_poisson():
    s, truth = fe_l23_spectrum_image((24, 24), fraction=0.0, random_state=0)
    assert _ratio_of_variance_to_mean(s, truth) == pytest.approx(1.0, rel=0.05)
    assert np.all(s.data == np.round(s.data))
    assert truth.spikes.sum() == 0 and truth.phase.sum() == 0


@pytest.mark.parametrize(
    ("options", "ratio"),
    [
        (dict(gain=30.0), 30.0),
        (dict(gain=0.1), 0.1),
        (dict(noise_factor=4.0), 4.0),
        (dict(gain=2.0, noise_factor=3.0), 6.0),
    ],
)
def test_detector_noise_has_the_stated_variance(options, ratio):
    s, truth = fe_l23_spectrum_image((24, 24), fraction=0.0, random_state=1, **options)
    assert _ratio_of_variance_to_mean(s, truth) == pytest.approx(ratio, rel=0.08)


def test_read_noise_makes_negative_values():
    s, truth = fe_l23_spectrum_image(
        (16, 16), fraction=0.0, dose=0.05, read_noise=5.0, random_state=2
    )
    assert s.data.min() < 0
    assert truth.noise["read_noise"] == 5.0


def test_point_spread_correlates_neighbouring_channels():
    s, truth = fe_l23_spectrum_image(
        (24, 24), fraction=0.0, psf_sigma=1.0, random_state=3
    )
    r = (s.data - truth.expected).reshape(-1, s.data.shape[-1])
    rho = np.corrcoef(r[:, 100:200:2].ravel(), r[:, 101:201:2].ravel())[0, 1]
    assert rho > 0.5


def test_drift_modes():
    rng = np.random.default_rng(0)
    jitter = scan_drift(rng, (20, 30), {"jitter": 0.5})
    assert np.allclose(jitter, jitter[:, :1])  # constant within a row
    assert 0.2 < np.ptp(jitter) <= 0.5
    settling = scan_drift(rng, (20, 30), {"settling": 1.0})
    assert settling[0, 0] == pytest.approx(1.0) and settling[-1, -1] < 0.01
    step = scan_drift(rng, (20, 30), {"step": 0.5})
    assert set(np.unique(step)) == {0.0, 0.5}
    with pytest.raises(ValueError, match="Unknown drift"):
        scan_drift(rng, (4, 4), {"sideways": 1.0})
    s, truth = fe_l23_spectrum_image(
        (20, 30), fraction=0.0, drift={"time": 1.2}, random_state=4
    )
    assert np.ptp(truth.drift) == pytest.approx(1.2, rel=0.01)


def test_second_phase_has_a_sharp_straight_interface():
    _, truth = fe_l23_spectrum_image((40, 40), second_phase=0.4, random_state=5)
    assert truth.phase.mean() == pytest.approx(0.4, abs=0.001)
    # A half-plane: every row's phase pixels are contiguous.
    for row in truth.phase:
        assert np.count_nonzero(np.diff(row.astype(int))) <= 1


def test_spikes_are_counted_and_removed_by_the_limit():
    s, truth = fe_l23_spectrum_image((20, 20), spikes=0.02, shift=0.5, random_state=6)
    assert truth.spikes.sum() == 8
    assert truth.spike_counts.max() > 2 * truth.expected.max()
    lr = truth.likelihood_ratio(s.data)
    assert np.isfinite(lr).all()


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(gain=30.0, read_noise=30.0),
        dict(psf_sigma=1.0),
        dict(plural_scattering=(0.2, 1.5)),
        dict(second_phase=0.4),
        dict(edges=("O_K", "Fe_L23"), offset=450.0, n_channels=1200),
    ],
)
def test_limit_separates_anomalies(options):
    s, truth = fe_l23_spectrum_image(
        (24, 24), shift=1.0, fraction=0.05, random_state=7, **options
    )
    lr = truth.likelihood_ratio(s.data)
    assert lr[truth.anomalous].min() > np.median(lr[~truth.anomalous])
    assert np.mean(lr[truth.anomalous]) > np.quantile(lr[~truth.anomalous], 0.99)


@pytest.mark.parametrize(
    ("options", "shape", "tolerance"),
    [
        (dict(), (40, 40), 0.1),
        (dict(gain=30.0, read_noise=30.0, dose=0.1), (40, 40), 0.1),
        (dict(noise_factor=4.0), (40, 40), 0.1),
        # Correlated channels: a dense covariance per pixel, so a smaller cube.
        (dict(psf_sigma=1.0, n_channels=160, dispersion=0.5), (16, 16), 0.2),
    ],
)
def test_limit_p_values_are_uniform_on_a_clean_map(options, shape, tolerance):
    # The ratio standardised by its null moments: a standard normal on
    # normal pixels, whichever branch (Poisson, Gaussian readings,
    # correlated channels) computes it.
    s, truth = fe_l23_spectrum_image(
        shape, shift=0.5, fraction=0.0, random_state=9, **options
    )
    mean, std = truth.likelihood_ratio_null()
    z = (truth.likelihood_ratio(s.data) - mean) / std
    assert abs(z.mean()) < tolerance
    assert abs(z.std() - 1.0) < tolerance
    p = truth.limit_p_values(s.data)
    assert np.mean(p < 0.1) == pytest.approx(0.1, abs=tolerance / 2)


def test_plural_scattering_weakens_the_white_lines():
    plain, t0 = fe_l23_spectrum_image((8, 8), fraction=0.0, drift=0.0, random_state=8)
    thick, t1 = fe_l23_spectrum_image(
        (8, 8), fraction=0.0, drift=0.0, plural_scattering=(1.0, 1.5), random_state=8
    )
    # The plasmon series moves counts up in energy: the white lines weaken.
    peak = np.argmax(t0.expected[0, 0])
    ratio = t1.expected[..., peak] / t0.expected[..., peak]
    assert ratio.max() < 0.75


def test_multi_edge_shift_moves_only_fe():
    s, truth = fe_l23_spectrum_image(
        (8, 8),
        shift=1.0,
        fraction=0.2,
        edges=("O_K", "Fe_L23"),
        offset=450.0,
        n_channels=1200,
        random_state=9,
    )
    energy = s.axes_manager[-1].axis
    difference = np.abs(truth.expected_anomalous - truth.expected_normal).max(
        axis=(0, 1)
    )
    assert difference[(energy > 520) & (energy < 560)].max() < 1e-3
    assert difference[(energy > 700) & (energy < 730)].max() > 1.0


def _white_line_scales(energy, edge):
    """Least-squares scales of the Fe2+ L3 and L2 white lines in ``edge``.

    Also returns their areas (at scale 1) over ``energy``.
    """
    from hyperspy_vae.data.edges import FE_L2, FE_L3, continuum_step, white_line

    continuum = 220.0 * (
        continuum_step(energy, FE_L3 - 0.5, 0.6)
        + 0.5 * continuum_step(energy, FE_L2 - 0.5, 0.6)
    )
    lines = np.stack(
        [900.0 * white_line(energy, FE_L3, 1.2), 300.0 * white_line(energy, FE_L2, 1.4)]
    )
    scales, *_ = np.linalg.lstsq(lines.T, edge - continuum, rcond=None)
    return scales, lines.sum(axis=1) * (energy[1] - energy[0])


@pytest.mark.parametrize("ratio", [1 / 1.8, 1.5])
def test_l3_l2_ratio_changes_the_ratio_and_keeps_the_area(ratio):
    from hyperspy_vae.data.edges import fe_l23_edge

    energy = np.linspace(400.0, 1100.0, 70001)
    scales, areas = _white_line_scales(energy, fe_l23_edge(energy, l3_l2_ratio=ratio))
    assert scales[0] / scales[1] == pytest.approx(ratio, rel=1e-6)
    # The summed area of the lines stays (Lorentzian tails beyond the range
    # aside).
    assert scales @ areas == pytest.approx(areas.sum(), rel=1e-2)
    assert _white_line_scales(energy, fe_l23_edge(energy))[0] == pytest.approx(
        [1.0, 1.0]
    )


def test_broadening_keeps_the_area_and_lowers_the_white_lines():
    from hyperspy_vae.data.edges import FE_L3, fe_l23_edge

    energy = np.linspace(400.0, 1100.0, 70001)
    plain, broad = fe_l23_edge(energy), fe_l23_edge(energy, broadening=1.4)
    step = energy[1] - energy[0]
    assert broad.sum() * step == pytest.approx(plain.sum() * step, rel=2e-3)
    at_l3 = np.argmin(np.abs(energy - FE_L3))
    assert broad[at_l3] < 0.8 * plain[at_l3]


@pytest.mark.parametrize(
    ("anomaly", "strength", "changed", "unchanged"),
    [
        # Metallic iron's L3 white line below the oxide's.
        ("pre_peak", 0.2, (705.5, 708.0), (740.0, 750.0)),
        # A fluoride's F K edge: nothing below its onset.
        ("contaminant_edge", 0.05, (686.0, 700.0), (670.0, 682.0)),
        ("l3_l2_ratio", 1 / 1.8, (706.0, 712.0), (670.0, 700.0)),
        ("broadening", 1.4, (706.0, 712.0), (670.0, 700.0)),
        ("missing_edge", 0.1, (706.0, 712.0), (670.0, 700.0)),
    ],
)
def test_anomaly_kinds_change_the_anomalous_pixels_where_expected(
    anomaly, strength, changed, unchanged
):
    s, truth = fe_l23_spectrum_image(
        (8, 8),
        fraction=0.2,
        anomaly=anomaly,
        strength=strength,
        drift=0.0,
        random_state=3,
    )
    energy = s.axes_manager[-1].axis
    difference = truth.expected_anomalous - truth.expected_normal
    inside = (energy > changed[0]) & (energy < changed[1])
    outside = (energy > unchanged[0]) & (energy < unchanged[1])
    typical = truth.expected_normal[..., inside].mean()
    assert np.abs(difference[..., inside]).max() > 0.05 * typical
    assert np.abs(difference[..., outside]).max() < 0.01 * typical
    # Only the anomalous pixels carry the change; the limit tells them apart.
    assert np.array_equal(
        truth.expected[truth.anomalous], truth.expected_anomalous[truth.anomalous]
    )
    assert np.array_equal(
        truth.expected[~truth.anomalous], truth.expected_normal[~truth.anomalous]
    )
    lr = truth.likelihood_ratio(s.data)
    assert np.median(lr[truth.anomalous]) > np.quantile(lr[~truth.anomalous], 0.9)


def test_anomaly_kinds_on_composed_spectra():
    # Second phase, plural scattering and two edges: the new kinds still
    # apply to the Fe edge of either valence (and the F K edge on top).
    for anomaly in ("pre_peak", "l3_l2_ratio", "broadening", "contaminant_edge"):
        s, truth = fe_l23_spectrum_image(
            (8, 8),
            fraction=0.3,
            anomaly=anomaly,
            second_phase=0.5,
            plural_scattering=(0.2, 0.5),
            edges=("O_K", "Fe_L23"),
            offset=500.0,
            n_channels=1024,
            random_state=4,
        )
        difference = np.abs(truth.expected_anomalous - truth.expected_normal)
        assert difference.max(axis=-1).min() > 0.1, anomaly
        assert np.all(np.isfinite(s.data))


def test_missing_edge_strength_one_removes_the_whole_edge():
    s, truth = fe_l23_spectrum_image(
        (6, 6), fraction=0.2, anomaly="missing_edge", random_state=5
    )
    _, partial = fe_l23_spectrum_image(
        (6, 6), fraction=0.2, anomaly="missing_edge", strength=0.5, random_state=5
    )
    removed = truth.expected_normal - truth.expected_anomalous
    half = partial.expected_normal - partial.expected_anomalous
    np.testing.assert_allclose(half, 0.5 * removed, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(anomaly="shift", strength=0.5), "takes its size from shift"),
        (dict(anomaly="l3_l2_ratio", strength=0.0), "must be positive"),
        (dict(anomaly="broadening", strength=-1.0), "must be positive"),
        (dict(anomaly="missing_edge", strength=1.5), r"must be in \[0, 1\]"),
        (dict(anomaly="valence"), "anomaly must be one of"),
    ],
)
def test_anomaly_strength_errors(options, message):
    with pytest.raises(ValueError, match=message):
        fe_l23_spectrum_image((4, 4), random_state=0, **options)

import numpy as np
import pytest
from hyperspy.signals import Signal2D

from hyperspy_vae import AnomalyMap, AnomalyMap1D
from hyperspy_vae.data import fe_l23_spectrum_image

from .conftest import FAST, SMALL


def test_returns_map_with_navigation_axes(fitted_si):
    s, _, amap = fitted_si
    assert isinstance(amap, AnomalyMap)
    assert amap.data.shape == s.data.shape[:-1]
    assert amap.metadata.General.title == f"Anomaly map of {s.metadata.General.title}"
    assert [a.name for a in amap.axes_manager.signal_axes] == ["x", "y"]
    assert np.isfinite(amap.data).all()
    assert s.get_anomaly_map() is amap
    assert amap.metadata.Anomaly.threshold_method == "f1"


def test_data_and_learning_results_untouched(small_si):
    s, _ = small_si
    before = s.data.copy()
    s.vae_anomalies(random_state=1, **FAST)
    s.pca_anomalies(3, print_info=False)
    np.testing.assert_array_equal(s.data, before)
    assert s.learning_results.loadings is None


def test_same_random_state_same_map(small_si):
    s, _ = small_si
    a = s.vae_anomalies(random_state=7, **FAST)
    b = s.vae_anomalies(random_state=7, **FAST)
    np.testing.assert_array_equal(a.data, b.data)
    c = s.vae_anomalies(random_state=8, **FAST)
    assert not np.array_equal(a.data, c.data)


def test_navigation_mask_excludes_from_training_only(small_si):
    s, _ = small_si
    mask = np.zeros(s.data.shape[:-1], dtype=bool)  # array order (y, x)
    mask[:, :6] = True
    # As for decomposition, an array mask is in navigation_shape order (x, y).
    amap = s.vae_anomalies(navigation_mask=mask.T, random_state=0, **FAST)
    assert s.vae_results.history["n_train"] == (~mask).sum()
    assert np.isfinite(amap.data[mask]).all()
    np.testing.assert_array_equal(s.vae_results.navigation_mask, mask)


def test_navigation_mask_orientation_matches_decomposition():
    s, _ = fe_l23_spectrum_image((6, 10), random_state=0, **SMALL)
    data_order = np.zeros((6, 10), dtype=bool)
    data_order[0, :4] = True
    with pytest.raises(ValueError, match="navigation_shape"):
        s.vae_anomalies(navigation_mask=data_order, **FAST)
    s.vae_anomalies(navigation_mask=data_order.T, random_state=0, **FAST)
    np.testing.assert_array_equal(s.vae_results.navigation_mask, data_order)
    # A signal mask is taken as its data (array order), as HyperSpy does.
    from hyperspy.signals import BaseSignal

    as_signal = BaseSignal(data_order).T
    s.vae_anomalies(navigation_mask=as_signal, random_state=0, **FAST)
    np.testing.assert_array_equal(s.vae_results.navigation_mask, data_order)
    s.pca_anomalies(3, navigation_mask=data_order.T, print_info=False)


def test_navigation_mask_as_signal(small_si):
    s, _ = small_si
    mask = Signal2D(np.zeros(s.data.shape[:-1], dtype=bool)).T
    mask.data[0, 0] = True
    s.vae_anomalies(navigation_mask=mask, random_state=0, **FAST)
    assert s.vae_results.history["n_train"] == mask.data.size - 1


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.zeros((3, 3), dtype=bool), "shape"),
        (np.ones((16, 16), dtype=bool), "excludes everything"),
        (np.zeros((16, 16)), "boolean"),
    ],
)
def test_bad_navigation_mask(small_si, mask, message):
    s, _ = small_si
    with pytest.raises(ValueError, match=message):
        s.vae_anomalies(navigation_mask=mask, **FAST)


def test_signal_mask_and_range_select_channels(small_si):
    s, _ = small_si
    signal_mask = np.zeros(96, dtype=bool)
    signal_mask[:10] = True
    s.vae_anomalies(signal_mask=signal_mask, random_state=0, **FAST)
    assert s.vae_results.energy.size == 86
    assert s.vae_results.energy[0] == pytest.approx(685.0)
    s.vae_anomalies(signal_range=(700.0, 720.0), random_state=0, **FAST)
    assert s.vae_results.energy.min() >= 700.0
    assert s.vae_results.energy.max() <= 720.0
    model = s.get_vae_model()
    assert model.data.shape == s.data.shape
    assert (model.data[..., s.vae_results.channel_mask] > 0).all()
    assert (model.data[..., ~s.vae_results.channel_mask] == 0).all()


def test_signal_range_outside_axis(small_si):
    s, _ = small_si
    with pytest.raises(ValueError, match="outside the energy axis"):
        s.vae_anomalies(signal_range=(100.0, 200.0), **FAST)


def test_nan_is_named(small_si):
    s, _ = small_si
    s.data[2, 3, 10] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite value.*\(2, 3\)"):
        s.vae_anomalies(**FAST)


def test_line_scan_gives_anomaly_map_1d():
    s, truth = fe_l23_spectrum_image(
        (60,), shift=2.0, fraction=0.05, random_state=0, **SMALL
    )
    amap = s.vae_anomalies(random_state=0, **FAST)
    assert isinstance(amap, AnomalyMap1D)
    assert amap.data.shape == (60,)
    assert s.get_vae_latent().data.shape == (4, 60)


def test_extra_navigation_axes_stay_navigation(small_si):
    s, _ = small_si
    import hyperspy.api as hs

    stack = hs.stack([s, s])
    amap = stack.vae_anomalies(random_state=0, **FAST)
    assert isinstance(amap, AnomalyMap)
    assert amap.axes_manager.navigation_shape == (2,)
    assert amap.axes_manager.signal_shape == (16, 16)


def test_model_and_latent_shapes(fitted_si):
    s, _, _ = fitted_si
    model = s.get_vae_model()
    assert type(model) is type(s) and model.data.shape == s.data.shape
    # The reconstruction keeps each pixel's counts.
    np.testing.assert_allclose(model.data.sum(-1), s.data.sum(-1), rtol=1e-3)
    latent = s.get_vae_latent()
    assert latent.data.shape == (4, 16, 16)
    assert latent.axes_manager.navigation_axes[0].name == "Latent dimension index"


def test_set_threshold_rules(fitted_si):
    _, _, amap = fitted_si
    amap.set_threshold(contamination=0.25)
    assert amap.n_anomalous == pytest.approx(64, abs=1)
    amap.set_threshold(3.0)
    assert amap.threshold == 3.0 and amap.metadata.Anomaly.threshold_method == "value"
    amap.set_threshold("otsu")
    assert amap.metadata.Anomaly.threshold_method == "otsu"
    amap.set_threshold()
    assert amap.metadata.Anomaly.threshold_method == "f1"
    amap.set_threshold("fdr", fdr=0.01)
    strict = amap.n_anomalous
    amap.set_threshold("fdr", fdr=0.2)
    assert amap.n_anomalous >= strict
    with pytest.raises(ValueError, match="Unknown threshold"):
        amap.set_threshold("median")
    with pytest.raises(ValueError, match="not both"):
        amap.set_threshold(2.0, contamination=0.1)


def test_mask_is_a_navigation_mask(fitted_si):
    s, _, amap = fitted_si
    mask = amap.get_mask()
    assert mask.data.dtype == bool
    assert mask.data.sum() == amap.n_anomalous
    work = s.deepcopy()
    work.decomposition(navigation_mask=mask, print_info=False, output_dimension=3)


def test_print_info_and_summary(small_si, capsys):
    s, _ = small_si
    s.vae_anomalies(random_state=0, max_steps=20, eval_every=10)
    out = capsys.readouterr().out
    assert "VAE anomaly detection" in out and "anomalous of 256 pixels" in out


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(max_steps=-1), ValueError, "max_steps"),
        (dict(output_dimension=0), ValueError, "latent_dim"),
        (dict(device="tpu"), ValueError, "device"),
        (dict(learning_rate="fast"), ValueError, "learning_rate"),
        (dict(epochs=3), TypeError, "Unknown VAE setting"),
        (dict(fdr=1.5), ValueError, "fdr"),
        (dict(threshold="mean"), ValueError, "Unknown threshold"),
    ],
)
def test_bad_settings_fail_at_once(small_si, kwargs, error, message):
    s, _ = small_si
    with pytest.raises(error, match=message):
        s.vae_anomalies(print_info=False, **kwargs)


def test_cuda_without_cuda_is_clear(small_si):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    s, _ = small_si
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        s.vae_anomalies(device="cuda", print_info=False)


def test_not_a_spectrum_image():
    with pytest.raises(ValueError, match="one signal"):
        Signal2D(np.ones((4, 8, 8))).vae_anomalies()
    from hyperspy.signals import Signal1D

    with pytest.raises(ValueError, match="navigation axes"):
        Signal1D(np.ones(64)).vae_anomalies()


def test_results_before_run_is_clear():
    from hyperspy.signals import Signal1D

    with pytest.raises(RuntimeError, match="vae_anomalies"):
        Signal1D(np.ones((4, 64))).get_anomaly_map()


def test_plot_returns_figure(fitted_si):
    import matplotlib.figure

    s, _, amap = fitted_si
    fig = s.plot_vae_results()
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = amap.plot_histogram()
    assert ax.get_xlabel().startswith("Anomaly score")
    fig = s.plot_latent_space(pca_components=3)
    vae_ax, pca_ax = fig.axes
    assert pca_ax.get_xlabel() == "loading 1"
    flagged = vae_ax.collections[1].get_offsets()
    assert len(flagged) == amap.n_anomalous


def test_lazy_signal_gives_same_map(small_si):
    s, _ = small_si
    eager = s.vae_anomalies(random_state=4, **FAST)
    lazy = s.as_lazy().vae_anomalies(random_state=4, **FAST)
    np.testing.assert_allclose(lazy.data, eager.data, rtol=1e-5, atol=1e-6)


def test_pca_anomalies_with_range_and_mask(small_si):
    s, truth = small_si
    full = s.pca_anomalies(3, print_info=False)
    assert full.metadata.Anomaly.method == "PCA (3 components)"
    assert full.metadata.General.title.startswith("PCA anomaly map of")
    windowed = s.pca_anomalies(
        3,
        signal_range=(700.0, 730.0),
        navigation_mask=truth.anomalous.T,
        print_info=False,
    )
    assert windowed.data.shape == full.data.shape
    assert np.isfinite(windowed.data).all()
    assert s.learning_results.loadings is None


def test_summary_follows_threshold_changes(fitted_si):
    s, _, amap = fitted_si
    amap.set_threshold(contamination=0.25)
    assert "contamination" in s.vae_results.summary()
    amap.set_threshold("fdr", fdr=0.05)


def test_plot_vae_loss(fitted_si):
    s, _, _ = fitted_si
    ax = s.plot_vae_loss()
    assert ax.get_ylabel() == "Deviance per channel"
    labels = [line.get_label() for line in ax.get_lines()]
    assert "fit 1, fold 1: held out" in labels and "fit 1, fold 2: training" in labels


def test_get_regions_labels_connected_pixels():
    data = np.zeros((8, 10))
    data[1:3, 1:4] = 5.0  # 6 pixels
    data[6, 8] = 9.0  # 1 pixel
    amap = AnomalyMap(data)
    amap.axes_manager.signal_axes[0].scale = 2.0  # x in nm
    amap.set_threshold(1.0)
    regions = amap.get_regions()
    assert [r["size"] for r in regions] == [6, 1]
    assert regions[0]["centroid"] == pytest.approx((4.0, 1.5))
    assert regions[1]["centroid"] == pytest.approx((16.0, 6.0))
    assert regions[1]["mean_score"] == 9.0


def test_long_spectra_binned_in_energy_and_reused_alike(tmp_path):
    s, truth = fe_l23_spectrum_image(
        (12, 12),
        shift=2.0,
        fraction=0.05,
        n_channels=400,
        dispersion=0.1,
        offset=690.0,
        random_state=1,
    )
    amap = s.vae_anomalies(random_state=0, max_channels=100, **FAST)
    results = s.vae_results
    assert results.energy_bin == 4 and results.model.n_channels == 100
    assert results.energy.size == 400
    model = s.get_vae_model()
    assert model.data.shape == s.data.shape
    np.testing.assert_allclose(model.data.sum(axis=-1), s.data.sum(axis=-1), rtol=1e-4)
    path = results.save(tmp_path / "binned.npz")
    again = s.deepcopy().vae_anomalies(model=path, print_info=False)
    np.testing.assert_allclose(again.data, amap.data, rtol=1e-5)


def test_compare_a_spectrum_image_draws_vae_beside_pca_on_one_scale(fitted_si):
    import matplotlib.pyplot as plt

    from hyperspy_vae.plot import compare

    s, truth, _ = fitted_si
    fig = compare(s, truth.anomalous, pca_components=(3, 4))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split("\n")[0] for ax in panels] == [
        "Ground truth",
        "VAE",
        "PCA, k = 3",
        "PCA, k = 4",
    ]
    limits = {ax.images[0].get_clim() for ax in panels[1:]}
    assert len(limits) == 1
    plt.close(fig)


def test_reuse_on_another_dispersion_refused_unless_resampled(fitted_si):
    from hyperspy_vae.demo import f1_score

    s, _, _ = fitted_si
    s2, truth2 = fe_l23_spectrum_image(
        (16, 16),
        shift=2.0,
        fraction=0.05,
        random_state=4,
        n_channels=192,
        dispersion=0.25,
        offset=680.0,
    )
    before = s2.data.copy()
    with pytest.raises(ValueError, match="resample=True"):
        s2.vae_anomalies(model=s.vae_results, print_info=False)
    amap = s2.vae_anomalies(model=s.vae_results, resample=True, print_info=False)
    assert f1_score(amap.data > amap.threshold, truth2.anomalous) >= 0.7
    np.testing.assert_array_equal(s2.data, before)
    assert s2.vae_results.energy.size == s.vae_results.energy.size
    short = s2.isig[:700.0]
    with pytest.raises(ValueError, match="Cannot resample"):
        short.vae_anomalies(model=s.vae_results, resample=True, print_info=False)

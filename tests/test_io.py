import hyperspy.api as hs
import numpy as np
import pytest

from hyperspy_vae import AnomalyMap, AnomalyMap1D, VAEResults


@pytest.mark.parametrize("extension", ["hspy", "zspy"])
def test_anomaly_map_round_trip(fitted_si, tmp_path, extension):
    _, _, amap = fitted_si
    amap.set_threshold(contamination=0.1)
    path = tmp_path / f"map.{extension}"
    amap.save(path)
    loaded = hs.load(path)
    assert type(loaded) is AnomalyMap
    np.testing.assert_array_equal(loaded.data, amap.data)
    assert loaded.threshold == amap.threshold
    assert loaded.metadata.Anomaly.threshold_method == "contamination"
    assert loaded.metadata.Anomaly.method == "VAE"
    assert loaded.axes_manager.signal_axes[0].units == "nm"
    np.testing.assert_array_equal(loaded.get_mask().data, amap.get_mask().data)


def test_line_map_round_trip(tmp_path):
    amap = AnomalyMap1D(np.arange(10.0))
    amap.set_threshold(5.5)
    amap.save(tmp_path / "line.hspy")
    loaded = hs.load(tmp_path / "line.hspy")
    assert type(loaded) is AnomalyMap1D
    assert loaded.threshold == 5.5
    assert loaded.n_anomalous == 4


def test_lazy_load_gives_lazy_map(fitted_si, tmp_path):
    _, _, amap = fitted_si
    amap.save(tmp_path / "map.zspy")
    lazy = hs.load(tmp_path / "map.zspy", lazy=True)
    assert type(lazy).__name__ == "LazyAnomalyMap"
    assert lazy.n_anomalous == amap.n_anomalous


def test_results_save_load_and_reuse(fitted_si, tmp_path):
    s, _, amap = fitted_si
    path = s.vae_results.save(tmp_path / "model")
    assert path.suffix == ".npz"
    with pytest.raises(FileExistsError):
        s.vae_results.save(path)
    loaded = VAEResults.load(path)
    assert loaded.settings == s.vae_results.settings
    np.testing.assert_array_equal(loaded.scores["combined"], amap.data)
    s2 = s.deepcopy()
    again = s2.vae_anomalies(model=path, print_info=False)
    np.testing.assert_allclose(again.data, amap.data, rtol=1e-5, atol=1e-6)


def test_crafted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, metadata_json=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        VAEResults.load(path)


def test_reuse_rejects_other_energy_axis(fitted_si):
    s, _, _ = fitted_si
    other = s.deepcopy()
    other.axes_manager.signal_axes[0].offset += 20.0
    with pytest.raises(ValueError, match="energy axis"):
        other.vae_anomalies(model=s.vae_results, print_info=False)


def test_reuse_with_a_gapped_signal_mask_and_load_without_suffix(small_si, tmp_path):
    s, _ = small_si
    gap = np.zeros(96, dtype=bool)
    gap[40:50] = True
    first = s.vae_anomalies(
        signal_mask=gap, random_state=0, max_steps=40, eval_every=20, print_info=False
    )
    s.vae_results.save(tmp_path / "gapped")
    loaded = VAEResults.load(tmp_path / "gapped")
    again = s.deepcopy().vae_anomalies(model=loaded, print_info=False)
    np.testing.assert_allclose(again.data, first.data, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="model="):
        s.vae_anomalies(model=loaded, signal_range=(690.0, 720.0), print_info=False)


def test_map_does_not_alias_the_results(fitted_si):
    s, _, amap = fitted_si
    stored = s.vae_results.scores["combined"].copy()
    changed = amap.deepcopy()
    amap.data += 0  # in place on the map the user holds
    amap.data[0, 0] = -1.0
    np.testing.assert_array_equal(s.vae_results.scores["combined"], stored)
    amap.data[0, 0] = stored[0, 0]
    assert changed.data.shape == stored.shape


def test_numpy_scalars_are_accepted(small_si):
    s, _ = small_si
    s.vae_anomalies(
        output_dimension=np.int64(2),
        fdr=np.float32(0.05),
        random_state=np.int32(1),
        max_steps=20,
        eval_every=10,
        print_info=False,
    )
    assert s.vae_results.settings.latent_dim == 2

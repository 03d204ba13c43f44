"""Bad input, faults and untrusted files (see tests/README.md for the table)."""

import subprocess
import sys
import warnings

import hyperspy.api as hs
import numpy as np
import pytest
import torch
from hyperspy.signals import Signal1D

import hyperspy_vae
from hyperspy_vae import VAEResults
from hyperspy_vae.data import fe_l23_spectrum_image
from hyperspy_vae.nn import train

from .conftest import FAST, SMALL


@pytest.fixture
def tiny_si():
    return fe_l23_spectrum_image((12, 12), fraction=0.0, random_state=5, **SMALL)


def test_negative_values_from_dark_subtraction_work(tiny_si):
    s, _ = tiny_si
    rng = np.random.default_rng(0)
    s.data -= 3.0  # a dark offset: a few percent of the channels go negative
    s.data[rng.uniform(size=s.data.shape) < 0.03] = -5.0
    before = s.data.copy()
    amap = s.vae_anomalies(random_state=0, **FAST)
    assert np.isfinite(amap.data).all()
    np.testing.assert_array_equal(s.data, before)
    assert np.isfinite(s.pca_anomalies(3, print_info=False).data).all()


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float64, np.float16])
def test_numeric_dtypes_work(tiny_si, dtype):
    s, _ = tiny_si
    typed = s._deepcopy_with_new_data(s.data.astype(dtype))
    amap = typed.vae_anomalies(random_state=0, **FAST)
    assert np.isfinite(amap.data).all()
    assert typed.data.dtype == dtype


def test_zero_and_constant_spectra_are_scored(tiny_si):
    s, _ = tiny_si
    s.data[0, 0] = 0.0
    s.data[0, 1] = 7.0
    amap = s.vae_anomalies(random_state=0, **FAST)
    assert np.isfinite(amap.data).all()


def test_single_huge_spike_is_reported_as_a_spike_not_an_anomaly(tiny_si):
    s, _ = tiny_si
    s.data[5, 6, 40] = 1e6
    amap = s.vae_anomalies(random_state=0, max_steps=100, print_info=False)
    flags = amap.data > amap.threshold
    spikes = s.vae_results.spikes
    assert spikes[5, 6] and spikes.sum() == 1
    assert not flags[5, 6]
    assert flags.sum() <= 1


def test_too_few_pixels(tiny_si):
    s, _ = tiny_si
    small = s.inav[:3, :3]
    with pytest.raises(ValueError, match="at least 16"):
        small.vae_anomalies(print_info=False)


def test_inf_is_named(tiny_si):
    s, _ = tiny_si
    s.data[1, 2, 3] = np.inf
    s.data[4, 4, 4] = -np.inf
    with pytest.raises(ValueError, match=r"2 non-finite value.*\(1, 2\)"):
        s.vae_anomalies(print_info=False)


def test_complex_and_boolean_data_refused():
    with pytest.raises(TypeError, match="real numbers"):
        Signal1D(np.ones((4, 4, 32), dtype=complex)).vae_anomalies()
    with pytest.raises(TypeError, match="real numbers"):
        Signal1D(np.ones((4, 4, 32), dtype=bool)).vae_anomalies()


def test_signal_mask_excluding_everything(tiny_si):
    s, _ = tiny_si
    with pytest.raises(ValueError, match="excludes everything"):
        s.vae_anomalies(signal_mask=np.ones(96, bool), print_info=False)
    with pytest.raises(ValueError, match="shape"):
        s.vae_anomalies(signal_mask=np.ones(5, bool), print_info=False)


def test_non_uniform_energy_axis_works(tiny_si):
    s, _ = tiny_si
    axis = s.axes_manager.signal_axes[0]
    energy = axis.axis + 0.02 * (axis.axis - axis.axis[0]) ** 1.1 / 10
    s.axes_manager.signal_axes[0].convert_to_non_uniform_axis()
    s.axes_manager.signal_axes[0].axis = energy
    amap = s.vae_anomalies(random_state=0, **FAST)
    assert np.isfinite(amap.data).all()
    assert np.isfinite(s.pca_anomalies(3, print_info=False).data).all()


def test_non_finite_loss_recovers(tiny_si, monkeypatch):
    s, _ = tiny_si
    original = train._batch_losses
    calls = {"n": 0}

    def sometimes_nan(*args, **kwargs):
        nll, deviance, kl = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:
            nll = nll * float("nan")
        return nll, deviance, kl

    monkeypatch.setattr(train, "_batch_losses", sometimes_nan)
    amap = s.vae_anomalies(random_state=0, **FAST)
    assert np.isfinite(amap.data).all()


def test_keyboard_interrupt_keeps_best_model(tiny_si, monkeypatch):
    s, _ = tiny_si
    original = torch.optim.Adam.step
    calls = {"n": 0}

    def interrupt_later(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 45:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupt_later)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        amap = s.vae_anomalies(random_state=0, **FAST)
    assert any(fit["interrupted"] for fit in s.vae_results.history["fits"])
    assert np.isfinite(amap.data).all()
    assert "interrupted" in s.vae_results.summary()


def test_gpu_out_of_memory_halves_the_batch(tiny_si, monkeypatch):
    s, _ = tiny_si
    original = train._batch_losses
    calls = {"n": 0}

    def out_of_memory_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "_batch_losses", out_of_memory_once)
    with pytest.warns(RuntimeWarning, match="batch size halved to 64"):
        amap = s.vae_anomalies(random_state=0, **FAST)
    assert np.isfinite(amap.data).all()


def test_determinism_across_processes(tmp_path):
    script = (
        "import numpy as np, hyperspy.api as hs, hyperspy_vae\n"
        "hs.preferences.General.show_progressbar = False\n"
        "s, _ = hyperspy_vae.data.fe_l23_spectrum_image((12, 12), random_state=1,"
        " n_channels=96, dispersion=0.5, offset=680.0)\n"
        "a = s.vae_anomalies(random_state=3, max_steps=40, eval_every=20,"
        " print_info=False)\n"
        "np.save(__import__('sys').argv[1], a.data)\n"
    )
    paths = [tmp_path / f"run{i}.npy" for i in range(2)]
    for path in paths:
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    np.testing.assert_array_equal(np.load(paths[0]), np.load(paths[1]))


def test_results_file_of_newer_version_refused(tiny_si, tmp_path):
    import json

    s, _ = tiny_si
    s.vae_anomalies(random_state=0, **FAST)
    path = s.vae_results.save(tmp_path / "model.npz")
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["metadata_json"]))
    meta["format_version"] = 99
    arrays["metadata_json"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "newer.npz", **arrays)
    with pytest.raises(ValueError, match="newer hyperspy_vae"):
        VAEResults.load(tmp_path / "newer.npz")
    meta["format_version"] = 1
    arrays["metadata_json"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "older.npz", **arrays)
    with pytest.raises(ValueError, match="older hyperspy_vae"):
        VAEResults.load(tmp_path / "older.npz")
    arrays["weights/0/output_bias"] = np.zeros(7, dtype=np.float32)
    meta["format_version"] = 3
    arrays["metadata_json"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "mismatch.npz", **arrays)
    with pytest.raises(ValueError, match="do not match"):
        VAEResults.load(tmp_path / "mismatch.npz")
    np.savez(tmp_path / "other.npz", data=np.zeros(3))
    with pytest.raises(ValueError, match="not a hyperspy_vae results file"):
        VAEResults.load(tmp_path / "other.npz")


def test_learning_results_untouched_by_both_methods(tiny_si):
    s, _ = tiny_si
    s.decomposition(print_info=False)
    factors = s.learning_results.factors.copy()
    s.vae_anomalies(random_state=0, **FAST)
    s.pca_anomalies(2, print_info=False)
    np.testing.assert_array_equal(s.learning_results.factors, factors)


def test_no_warnings_on_a_normal_run(tiny_si):
    s, _ = tiny_si
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s.vae_anomalies(random_state=0, **FAST)


_ = (hs, hyperspy_vae)

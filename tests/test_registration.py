from pathlib import Path

import numpy as np
import pytest
import yaml
from hyperspy.signals import BaseSignal

import hyperspy_vae
from hyperspy_vae import signals as vae_signals

YAML = Path(hyperspy_vae.__file__).parent / "hyperspy_extension.yaml"
ENTRIES = yaml.safe_load(YAML.read_text())["signals"]


def test_yaml_names_four_classes():
    assert set(ENTRIES) == {
        "AnomalyMap",
        "AnomalyMap1D",
        "LazyAnomalyMap",
        "LazyAnomalyMap1D",
    }


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_entry_resolves_through_set_signal_type(name):
    entry = ENTRIES[name]
    shape = (3, 4, 5)[: 1 + entry["signal_dimension"]]
    s = BaseSignal(np.zeros(shape)).transpose(signal_axes=entry["signal_dimension"])
    if entry["lazy"]:
        s = s.as_lazy()
    s.set_signal_type(entry["signal_type"])
    assert type(s).__name__ == name
    assert isinstance(s, getattr(vae_signals, name))
    assert s._lazy == entry["lazy"]


def test_attach_is_idempotent_and_reaches_eels():
    from exspy.signals import EELSSpectrum, LazyEELSSpectrum

    before = EELSSpectrum.vae_anomalies
    hyperspy_vae.attach_methods()
    hyperspy_vae.attach_methods()
    assert EELSSpectrum.vae_anomalies is before
    for cls in (EELSSpectrum, LazyEELSSpectrum):
        for name in ("vae_anomalies", "pca_anomalies", "get_anomaly_map"):
            assert callable(getattr(cls, name))


def test_version_defined():
    assert isinstance(hyperspy_vae.__version__, str) and hyperspy_vae.__version__

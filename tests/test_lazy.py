"""Lazy (dask) spectrum images: read band by band, same map as in memory."""

import hyperspy.api as hs
import numpy as np
import pytest

from .conftest import FAST, SMALL, hyperspy_vae


@pytest.fixture(scope="module")
def chunked_file(tmp_path_factory):
    s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
        (24, 20), shift=2.0, fraction=0.05, random_state=3, **SMALL
    )
    path = tmp_path_factory.mktemp("lazy") / "si.zspy"
    s.save(path, chunks=(8, 10, 96))
    return path, truth


def _run(s):
    amap = s.vae_anomalies(random_state=0, **FAST)
    return amap, s.vae_results


def test_lazy_map_equals_eager_map(chunked_file):
    path, truth = chunked_file
    eager_map, eager = _run(hs.load(path))
    lazy_signal = hs.load(path, lazy=True)
    lazy_map, lazy = _run(lazy_signal)
    assert lazy_signal._lazy and lazy_map._lazy
    np.testing.assert_allclose(lazy_map.data.compute(), eager_map.data, rtol=1e-5)
    assert lazy_map.threshold == pytest.approx(eager_map.threshold, rel=1e-6)
    for name in ("shift", "local", "latent", "deviance"):
        np.testing.assert_allclose(
            lazy.scores[name], eager.scores[name], rtol=1e-5, atol=1e-6
        )


def test_lazy_reads_chunk_by_chunk(chunked_file, monkeypatch):
    """No computation of the lazy cube spans more than one chunk."""
    import dask.array as da

    path, _ = chunked_file
    s = hs.load(path, lazy=True)
    largest = []
    original = da.Array.compute

    def compute(self, *args, **kwargs):
        largest.append(self.nbytes)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(da.Array, "compute", compute)
    s.vae_anomalies(random_state=0, **FAST)
    band_bytes = 8 * 10 * 96 * 4  # one chunk
    assert largest and max(largest) <= band_bytes


def test_lazy_map_under_a_distributed_cluster(chunked_file):
    distributed = pytest.importorskip("distributed")
    path, _ = chunked_file
    eager_map, _ = _run(hs.load(path))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit="512MiB", processes=True
        ) as cluster,
        distributed.Client(cluster),
    ):
        lazy_map, _ = _run(hs.load(path, lazy=True))
        values = lazy_map.data.compute()
    np.testing.assert_allclose(values, eager_map.data, rtol=1e-5)

"""The CUDA path; skipped where CUDA is not available."""

import numpy as np
import pytest
import torch

from hyperspy_vae.demo import f1_score

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)


def test_cuda_trains_and_scores_like_the_cpu(small_si):
    s, truth = small_si
    amap = s.vae_anomalies(
        device="cuda", random_state=0, max_steps=100, print_info=False
    )
    assert s.vae_results.device.startswith("cuda")
    flags = amap.data > amap.threshold
    assert f1_score(flags, truth.anomalous) >= 0.9
    # Inference is fp32 (no TF32): the same model scores alike on the CPU.
    cpu = s.deepcopy()
    cpu_map = cpu.vae_anomalies(model=s.vae_results, device="cpu", print_info=False)
    assert np.mean((cpu_map.data > cpu_map.threshold) == flags) >= 0.99
    normal = ~truth.anomalous
    np.testing.assert_allclose(cpu_map.data[normal], amap.data[normal], atol=0.05)


def test_cuda_model_saved_and_loaded_on_the_cpu(small_si, tmp_path):
    from hyperspy_vae.results import VAEResults

    s, _ = small_si
    s.vae_anomalies(device="cuda", random_state=0, max_steps=40, print_info=False)
    path = s.vae_results.save(tmp_path / "cuda_model.npz")
    loaded = VAEResults.load(path)
    assert next(loaded.model.parameters()).device.type == "cpu"

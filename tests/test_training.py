"""Training schedule: how often the held-out loss is evaluated, the output blur."""

import numpy as np
import pytest
import torch

from hyperspy_vae.cube import SpectrumCube
from hyperspy_vae.data import fe_l23_spectrum_image
from hyperspy_vae.nn.model import CVAE3D
from hyperspy_vae.nn.train import choose_output_blur, evaluation_interval
from hyperspy_vae.settings import VAESettings

from .conftest import SMALL


@pytest.mark.parametrize(
    ("n_fit", "expected"),
    [(10_000, 25), (128, 25), (127, 25), (64, 12), (27, 5), (2, 1), (1, 1)],
)
def test_evaluation_interval_shrinks_below_a_batch(n_fit, expected):
    assert evaluation_interval(25, 128, n_fit) == expected


def test_small_training_set_is_evaluated_more_often():
    # 6 x 10 pixels: 30 per fold, 3 held out, 27 to learn from: every 5 steps.
    s, _ = fe_l23_spectrum_image((6, 10), random_state=0, **SMALL)
    s.vae_anomalies(
        random_state=0, max_steps=30, eval_every=25, n_fits=1, print_info=False
    )
    for fit in s.vae_results.history["fits"]:
        steps = np.asarray(fit["step"])
        assert steps[0] == 5
        assert np.all(steps % 5 == 0)


def _line(width):
    channels = np.arange(160.0)
    return 50.0 + 400.0 * np.exp(-0.5 * ((channels - 80.0) / width) ** 2)


@pytest.mark.parametrize(("template_width", "more_blur"), [(2.0, True), (4.0, False)])
def test_output_blur_is_chosen_by_the_held_out_fit(template_width, more_blur):
    # Spectra of a line 4 channels wide; the model's reconstruction (a fresh
    # model decodes its mean-spectrum bias) either sharper, as one learned
    # from few spectra comes out, or of the spectra's own width.
    rng = np.random.default_rng(0)
    counts = rng.poisson(_line(4.0), size=(1, 8, 8, 160)).astype(np.float32)
    cube = SpectrumCube(counts, patch_size=3)
    model = CVAE3D(
        160, 2, log_mean_spectrum=np.log(_line(template_width)), output_blur=1.0
    )
    blur = choose_output_blur(
        model, cube, np.arange(64), VAESettings(), torch.device("cpu"), torch.zeros(64)
    )
    assert float(model.output_blur) == pytest.approx(blur)
    if more_blur:
        assert blur > 1.0
    else:
        assert blur == pytest.approx(1.0)

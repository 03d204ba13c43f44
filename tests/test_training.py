"""Training schedule: how often the held-out loss is evaluated."""

import numpy as np
import pytest

from hyperspy_vae.data import fe_l23_spectrum_image
from hyperspy_vae.nn.train import evaluation_interval

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

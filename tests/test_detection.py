"""Detection quality on small synthetic data (a test that can fail)."""

import numpy as np

from hyperspy_vae.data import fe_l23_spectrum_image

from .conftest import FAST, SMALL


def _f1(flags, truth):
    tp = np.sum(flags & truth)
    return 2 * tp / (flags.sum() + truth.sum())


def test_vae_finds_shifted_edges_without_labels():
    s, truth = fe_l23_spectrum_image(
        (24, 24), shift=1.5, fraction=0.04, random_state=11, **SMALL
    )
    amap = s.vae_anomalies(random_state=0, max_steps=150, print_info=False)
    assert _f1(amap.get_mask().data, truth.anomalous) > 0.85


def test_no_anomalies_few_false_alarms():
    s, truth = fe_l23_spectrum_image(
        (24, 24), shift=1.5, fraction=0.0, random_state=12, **SMALL
    )
    assert not truth.anomalous.any()
    amap = s.vae_anomalies(random_state=0, max_steps=150, print_info=False)
    assert amap.n_anomalous <= 2


def test_generator_truth_and_limit():
    s, truth = fe_l23_spectrum_image(
        (20, 20), shift=1.0, fraction=0.05, layout="random", random_state=0, **SMALL
    )
    assert truth.anomalous.sum() == 20
    llr = truth.likelihood_ratio(s.data)
    assert llr[truth.anomalous].min() > np.median(llr[~truth.anomalous])
    assert s.metadata.Signal.signal_type == "EELS"
    assert truth.expected.shape == s.data.shape


def test_generator_kinds_of_anomaly():
    for kind in ("peak", "missing_edge"):
        s, truth = fe_l23_spectrum_image(
            (10, 10), fraction=0.1, anomaly=kind, random_state=0, **SMALL
        )
        diff = truth.expected_anomalous - truth.expected_normal
        assert np.abs(diff).max() > 10


def test_offsets_carry_the_whole_shift_of_a_shifted_region():
    # Training moves each reconstruction by its pixel's own offset, so the
    # network has no reason to reproduce a shift: a region shifted by 1.5 eV
    # (3 channels) keeps all of it in its offsets. (Moving it by the rows'
    # drift only, the network learned most of the shift: 0.8 channels left.)
    s, _ = fe_l23_spectrum_image((16, 16), fraction=0.0, random_state=5, **SMALL)
    later, _ = fe_l23_spectrum_image(
        (16, 16), fraction=0.0, random_state=5, **dict(SMALL, offset=678.5)
    )
    region = np.zeros((16, 16), dtype=bool)
    region[4:12, 4:8] = True
    s.data[region] = later.data[region]
    s.vae_anomalies(random_state=0, **FAST)
    offset = np.asarray(s.vae_results.offset)
    found = np.median(offset[region]) - np.median(offset[~region])
    assert 2.7 < found < 3.3

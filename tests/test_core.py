"""The model, losses and scores alone (no HyperSpy)."""

import numpy as np
import pytest
import torch

from hyperspy_vae import detector, nulls, scoring, thresholds
from hyperspy_vae.folds import block_folds
from hyperspy_vae.nn.alignment import (
    coarse_offsets,
    fit_offsets,
    shift_logits,
    smooth_channels,
)
from hyperspy_vae.nn.losses import kl_divergence, multinomial_deviance
from hyperspy_vae.nn.model import CVAE3D
from hyperspy_vae.settings import VAESettings


def test_model_shapes():
    model = CVAE3D(n_channels=101, latent_dim=3, patch_size=3)
    logits, mean, log_var = model(torch.rand(5, 3, 3, 101))
    assert logits.shape == (5, 101) and mean.shape == (5, 3) and log_var.shape == (5, 3)


def test_deviance_zero_for_perfect_fit_and_positive_otherwise():
    counts = torch.tensor([[1.0, 2.0, 7.0]])
    exact = torch.log(counts)
    assert float(multinomial_deviance(exact, counts)) == pytest.approx(0.0, abs=1e-5)
    assert float(multinomial_deviance(torch.zeros(1, 3), counts)) > 0


def test_kl_zero_at_prior():
    assert float(kl_divergence(torch.zeros(1, 4), torch.zeros(1, 4))) == 0.0


def _edge(offset_channels, n_channels=200):
    """A white line on a flat background, moved up by ``offset_channels``."""
    k = np.arange(n_channels) - offset_channels
    return 50 + 400 * np.exp(-0.5 * ((k - 100) / 6.0) ** 2)


def test_shift_logits_moves_a_smooth_spectrum():
    logits = torch.tensor(np.log(_edge(0.0)), dtype=torch.float32)[None].repeat(3, 1)
    moved = shift_logits(logits, torch.tensor([0.0, 1.5, -2.25]))
    for row, offset in zip(moved, (0.0, 1.5, -2.25), strict=True):
        np.testing.assert_allclose(torch.exp(row).numpy(), _edge(offset), rtol=2e-3)


def test_shift_logits_derivative_is_the_offsets_finite_difference():
    logits = torch.tensor(np.log(_edge(0.0)), dtype=torch.float64)[None].repeat(4, 1)
    offset = torch.tensor([0.0, 0.3, -1.75, 4.5], dtype=torch.float64)
    _, slope = shift_logits(logits, offset, derivative=True)
    step = 1e-5
    numeric = (
        shift_logits(logits, offset + step) - shift_logits(logits, offset - step)
    ) / (2 * step)
    # Away from whole channels, where the cubic's derivative jumps.
    np.testing.assert_allclose(slope[1:].numpy(), numeric[1:].numpy(), atol=1e-6)


def test_output_blur_is_a_gaussian_convolution_with_the_end_values_continued():
    from scipy.ndimage import gaussian_filter1d

    torch.manual_seed(0)
    model = CVAE3D(n_channels=60, latent_dim=2, output_blur=1.5)
    torch.nn.init.normal_(model.decoder[-1].weight)
    z = torch.randn(3, 2)
    with torch.no_grad():
        sharp = (model.decoder(z) + model.output_bias).double().numpy()
        blurred = model.decode(z).double().numpy()
    # The same kernel: truncated at 3 standard deviations (+ half a channel).
    expected = gaussian_filter1d(sharp, 1.5, axis=-1, mode="nearest", truncate=3.0)
    np.testing.assert_allclose(blurred, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(blurred, sharp, atol=1e-3)


def test_offsets_are_found_beyond_a_feature_width_and_to_a_fraction_of_a_channel():
    rng = np.random.default_rng(0)
    true = np.array([0.0, 0.4, -1.7, 9.2, -11.6])
    counts = torch.tensor(
        rng.poisson(np.stack([20 * _edge(t) for t in true])), dtype=torch.float32
    )
    logits = torch.tensor(np.log(_edge(0.0)), dtype=torch.float32)[None].repeat(5, 1)
    start = coarse_offsets(counts, logits, max_shift=14)
    assert np.all(np.abs(start.numpy() - true) <= 1.0)
    offset, expected, tangent = fit_offsets(logits, counts, start, 5)
    np.testing.assert_allclose(offset.numpy(), true, atol=0.1)
    assert expected.shape == tangent.shape == counts.shape


def test_a_cosmic_ray_spike_does_not_drag_the_offset():
    # A peak on a background at offset 0.4 channel; every other spectrum
    # has a spike of 20 times the peak on the peak's falling slope, where it
    # pulls the coarse search and the Gauss-Newton steps most (to about 1.7
    # channels when the spikes were found only after the fit).
    rng = np.random.default_rng(0)
    channels = np.arange(200, dtype=np.float64)
    shape = 60.0 * np.exp(-channels / 150.0) + 300.0 * np.exp(
        -0.5 * ((channels - 100.0) / 3.0) ** 2
    )
    logits = torch.log(torch.from_numpy(shape)).float().repeat(40, 1)
    moved = torch.softmax(shift_logits(logits, torch.full((40,), 0.4)), -1)
    counts = rng.poisson(moved.double().numpy() * shape.sum()).astype(np.float32)
    struck = np.zeros(counts.shape, dtype=bool)
    struck[::2, 105] = True
    counts[struck] += 20.0 * shape.max()
    counts = torch.from_numpy(counts)
    n_values = counts.numel()
    limit = (scoring.spike_limit(n_values, np.ones(1)), scoring.spike_alpha(n_values))
    start = coarse_offsets(counts, logits, 8)
    offset, _, _, spikes = detector._align(logits, counts, start, limit, max_shift=8)
    assert np.array_equal(spikes.numpy(), struck)
    offset = offset.numpy()
    # Their error is about 0.08 channel, with a spike or without.
    for group in (offset[struck.any(axis=1)], offset[~struck.any(axis=1)]):
        assert abs(group.mean() - 0.4) < 0.06
        assert np.abs(group - 0.4).max() < 0.35


def test_offset_score_is_standard_normal_at_the_right_offset():
    rng = np.random.default_rng(1)
    mu = np.broadcast_to(_edge(0.0), (2000, 200))
    counts = torch.tensor(rng.poisson(mu), dtype=torch.float32)
    logits = torch.tensor(np.log(mu), dtype=torch.float32)
    _, expected, tangent = fit_offsets(logits, counts, torch.zeros(2000), 0)
    score, variance, information = scoring.offset_score(
        counts, expected, tangent, np.ones(1)
    )
    z = score / np.sqrt(variance)
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
    np.testing.assert_allclose(variance, information)  # independent channels


def _offsets_through_a_rippled_reconstruction(n, ripple, seed):
    """Offsets and errors of ``n`` spectra of a broad, weak edge, per smoothing.

    The reconstruction follows the edge but for a faint ripple of its own
    (``ripple`` in log counts, over a few channels), as one learned from
    noisy counts does.
    """
    rng = np.random.default_rng(seed)
    k = np.arange(200)
    mu = np.broadcast_to(200 + 60 * np.exp(-0.5 * ((k - 100) / 10.0) ** 2), (n, 200))
    counts = torch.tensor(rng.poisson(mu), dtype=torch.float32)
    noise = torch.tensor(rng.normal(0.0, ripple, (n, 200)), dtype=torch.float32)
    logits = torch.log(torch.tensor(mu, dtype=torch.float32))
    logits = logits + smooth_channels(noise, 1.0)
    offsets, errors = [], []
    for smoothing in scoring.OFFSET_SMOOTHINGS:
        offset, expected, tangent = fit_offsets(
            logits, counts, torch.zeros(n), 5, smoothing=smoothing
        )
        _, variance, information = scoring.offset_score(
            counts, expected, tangent, np.ones(1), smoothing=smoothing
        )
        offsets.append(offset.double().numpy())
        errors.append(np.sqrt(variance) / information)
    return np.stack(offsets), errors


def test_smoothed_weights_measure_offsets_through_a_rippled_reconstruction():
    # A ripple of 0.5 % over a few channels: its derivative weights the noise
    # of the flat background, and the offsets scatter wider than their
    # Fisher error says.
    offsets, errors = _offsets_through_a_rippled_reconstruction(1200, 0.01, 5)
    chosen, spreads = scoring.least_scattered(offsets, (1, 30, 40))
    assert scoring.OFFSET_SMOOTHINGS[chosen] > 0
    assert spreads[chosen] < 0.95 * spreads[0]
    assert abs(np.median(offsets[chosen])) < 0.1 * spreads[chosen]  # unbiased
    # The smoothed equation's stated error is its scatter; the likelihood's
    # own understates it.
    assert 0.9 < offsets[chosen].std() / np.median(errors[chosen]) < 1.1
    assert offsets[0].std() / np.median(errors[0]) > 1.2


def test_a_line_scan_of_fifty_pixels_takes_the_smoothing_its_pairs_favour():
    # The same kind of reconstruction on a 50-pixel line scan: the spreads of
    # so few offsets are too noisy to be told apart as independent values,
    # but the pixels' departures, compared pixel by pixel, favour the
    # smoothing (an earlier version kept the unsmoothed offsets on all ten).
    smoothed = 0
    for seed in range(10):
        offsets, _ = _offsets_through_a_rippled_reconstruction(50, 0.02, seed)
        chosen, spreads = scoring.least_scattered(offsets, (1, 1, 50))
        assert spreads[chosen] <= spreads[0]
        smoothed += chosen > 0
    assert smoothed >= 3


def test_context_shift_compares_a_pixel_with_its_own_side_of_a_step():
    rng = np.random.default_rng(2)
    offsets = rng.normal(0.0, 0.1, (1, 4, 40))
    offsets[..., 20:] += 3.0  # a drift step within every row
    offsets[0, 1, 8] += 2.0  # one shifted pixel
    errors = np.full(offsets.size, 0.1)
    refs, errs, step, _ = scoring.offset_references(
        offsets.ravel(), errors, (1, 4, 40), 8
    )
    assert step[[20 + 40 * r for r in range(4)]].all()  # beside the step
    assert not step[[5, 45, 125]].any()  # far from it
    # Near the offset: S = I (o - ref), V = I, LR = I (o - ref)**2.
    information = np.full(refs.shape, 100.0)
    scores = information * (offsets.ravel() - refs)
    ratio = information * (offsets.ravel() - refs) ** 2
    choice = np.where(step, -1, 0)
    z = scoring.context_shift(scores, information, information, ratio, errs, choice)
    z = z.reshape(4, 40)
    assert z[1, 8] > 10
    z[1, 8] = 0
    assert np.abs(z).max() < 5  # the step itself is not an anomaly


def test_a_cluster_narrower_than_the_sides_is_measured_against_the_line():
    rng = np.random.default_rng(3)
    offsets = rng.normal(0.0, 0.1, (1, 3, 64))
    offsets[0, 1, 30:35] += 2.0  # a cluster five pixels wide
    offsets[0, 2, 32:] += 2.0  # a step in the next row
    errors = np.full(offsets.size, 0.1)
    window = scoring.run_window(64)
    refs, _, step, _ = scoring.offset_references(
        offsets.ravel(), errors, (1, 3, 64), window
    )
    step = step.reshape(3, 64)
    # In the cluster and at its rims: the line (or that of the pixel's run,
    # which the cluster does not move).
    assert np.isin(step[1, 30:35], (0, 3)).all()
    assert np.all(np.abs(refs[0].reshape(3, 64)[1, 30:35]) < 0.2)
    assert step[2, 31:33].all()  # beside the step: the sides
    assert not step[0, 2:-2].any()  # at a row's end (no side): every candidate


def test_a_cluster_beyond_a_phase_boundary_is_measured_against_its_own_run():
    # A phase boundary 12 pixels to the left of a cluster shifted towards
    # the other phase's level: the left side and the line through the whole
    # window reach across the boundary, and the line, passing near the
    # cluster's level, lets it pass. The run of the row on the cluster's
    # side of the boundary measures it.
    rng = np.random.default_rng(7)
    shape = (1, 4, 64)
    offsets = rng.normal(0.0, 0.1, shape)
    offsets[..., :28] += 3.0  # the boundary, in every row
    offsets[0, 1, 40:45] += 2.0  # a cluster in the second phase
    errors = np.full(offsets.size, 0.1)
    window = scoring.run_window(64)
    refs, errs, step, _ = scoring.offset_references(
        offsets.ravel(), errors, shape, window
    )
    step, line = step.reshape(shape[1:]), refs[0].reshape(shape[1:])
    assert (step[1, 40:45] == 3).all()
    assert np.all(np.abs(line[1, 40:45]) < 0.2)
    assert (step[:, 26:30] != 3).all()  # right beside the boundary: no run
    # The most lenient of the whole window's line and the two sides (as
    # before the runs) passes the cluster; its own run does not.
    whole = refs.copy(), errs.copy()
    whole[0][0], whole[1][0], _ = scoring._row_lines(
        offsets.ravel(), errors, shape, window
    )

    def z(references, reference_errors, choice):
        information = np.full(refs.shape, 100.0)
        scores = information * (offsets.ravel() - references)
        ratio = information * (offsets.ravel() - references) ** 2
        choice = np.full(offsets.size, choice)
        return scoring.context_shift(
            scores, information, information, ratio, reference_errors, choice
        )

    z_lenient, z_run = z(*whole, -1), z(refs, errs, 0)
    cluster = np.arange(64 + 40, 64 + 45)
    assert np.all(z_run[cluster] > 10) and np.median(z_lenient[cluster]) < 10
    # The rest of the map, compared so, stays quiet.
    normal = np.flatnonzero(step.ravel() == 3)
    normal = np.setdiff1d(normal, cluster)
    assert np.abs(z_run[normal]).max() < 5


def _noisy_row(seed, sigma, n=64):
    """A single scan row of offsets with normal noise, and their errors."""
    offsets = np.random.default_rng(seed).normal(0.0, sigma, (1, 1, n))
    return offsets, np.full(n, sigma)


def test_a_line_pulled_by_a_step_further_off_gives_way_to_the_pixels_run():
    # A boundary 17 pixels to the left of pixel 39, and a shifted pixel on
    # the plateau at the median of its left side: the sides agree once the
    # line's slope is allowed for, while the line, pulled up by the higher
    # level, misses the pixels beside pixel 39 on both sides in the same
    # direction, as round a cluster. The pixel's own run measures it, and
    # the shifted pixels are still measured against the plateau.
    offsets, errors = _noisy_row(11, 0.2)
    shape = offsets.shape
    offsets[..., :22] += 4.0
    shifted = [34, 49]
    offsets[0, 0, shifted] += 2.0
    refs, _, _, _ = scoring.offset_references(
        offsets.ravel(), errors, shape, scoring.run_window(64)
    )
    plateau = np.setdiff1d(np.arange(36, 64), shifted)
    assert np.all(np.abs(refs[0][plateau]) < 0.3)
    assert np.all(np.abs(refs[0][shifted]) < 0.3)


def test_a_cluster_keeps_the_line_where_its_edge_is_the_step():
    # A cluster eight pixels wide on a homogeneous row: the line misses the
    # pixels beside each of its pixels in the same direction, and the
    # window's best split lies at the cluster's edge, less than half a
    # window away: no run of the cluster's own stands for it.
    offsets, errors = _noisy_row(12, 0.45)
    shape = offsets.shape
    offsets[0, 0, 20:28] += 2.0
    refs, _, _, _ = scoring.offset_references(
        offsets.ravel(), errors, shape, scoring.run_window(64)
    )
    assert np.all(np.abs(refs[0][20:28]) < 0.7)


def test_a_gradual_interface_keeps_no_run():
    rng = np.random.default_rng(8)
    shape = (1, 1, 64)
    offsets = rng.normal(0.0, 0.05, shape)
    offsets[..., 20:] += 3.0
    offsets[0, 0, 14:26] = np.linspace(0.0, 3.0, 12)  # a ramp 12 pixels wide
    errors = np.full(offsets.size, 0.05)
    window = scoring.run_window(64)
    pixels = np.arange(26, 34)  # just beyond the ramp, inside the window
    line, error = scoring.segment_lines(offsets.ravel(), errors, shape, window, pixels)
    assert np.isnan(line).all() and np.isnan(error).all()
    offsets[0, 0, 14:26] = np.where(np.arange(14, 26) < 20, 0.0, 3.0)  # sharp
    line, _ = scoring.segment_lines(offsets.ravel(), errors, shape, window, pixels)
    assert np.all(np.abs(line - 3.0) < 0.1)


def test_a_cluster_cut_off_at_a_rows_end_is_no_run_of_its_own():
    # The best split of a window near a row's start can cut off a cluster
    # of shifted pixels; a run so short does not stand for its pixels.
    rng = np.random.default_rng(9)
    shape = (1, 1, 64)
    offsets = rng.normal(0.0, 0.05, shape)
    offsets[0, 0, 1:6] += 2.0  # a cluster at the row's start
    offsets[0, 0, 40:] += 3.0  # a boundary further on
    errors = np.full(offsets.size, 0.05)
    window = scoring.run_window(64)
    line, _ = scoring.segment_lines(
        offsets.ravel(), errors, shape, window, np.arange(1, 6)
    )
    assert not np.any(np.abs(line - 2.0) < 1.0)  # never the cluster's level
    # Beyond the boundary, 16 pixels clear of it: the second phase's run.
    line, _ = scoring.segment_lines(
        offsets.ravel(), errors, shape, window, np.array([56])
    )
    assert abs(line[0] - 3.0) < 0.1


def test_a_wide_cluster_with_normal_pixels_beyond_is_no_run():
    # Ten shifted pixels near a row's start, seven normal ones before them:
    # the best split cuts the row after the cluster, and the run before it
    # holds half the window, but two levels.
    rng = np.random.default_rng(10)
    shape = (1, 1, 64)
    offsets = rng.normal(0.0, 0.1, shape)
    offsets[0, 0, 7:17] += 1.7
    errors = np.full(offsets.size, 0.1)
    window = scoring.run_window(64)
    line, _ = scoring.segment_lines(
        offsets.ravel(), errors, shape, window, np.arange(7, 11)
    )
    assert not np.any(np.abs(line - 1.7) < 1.0)


def test_a_cluster_at_a_rows_end_is_measured_against_the_line():
    # A cluster fills the short side of the pixels near a row's end, and the
    # two sides disagree as beside a drift step or a phase region; but a
    # drift step moves every later row, and a phase region is as tall as a
    # side is long, a cluster neither.
    rng = np.random.default_rng(5)
    shape = (1, 40, 64)
    offsets = rng.normal(0.0, 0.1, shape)
    latent = rng.normal(0.0, 1.0, (*shape, 2))
    offsets[0, 4:7, :5] += 2.0  # a cluster touching the rows' start
    offsets[0, 9, 3:] += 2.0  # a drift step early in row 9 ...
    offsets[0, 10:] += 2.0  # ... which every later row keeps
    offsets[0, 14:, 56:] += 1.5  # a phase region at the rows' end
    latent[0, 14:, 56:, 0] += 20.0
    errors = np.full(offsets.size, 0.1)
    window = scoring.run_window(64)
    latent = latent.reshape(-1, 2)
    refs, _, step, mixed = scoring.offset_references(
        offsets.ravel(), errors, shape, window
    )
    candidates = scoring.latent_candidates(latent, shape, window)
    choice = scoring.candidate_choice(latent, candidates, step, shape, mixed)
    choice = choice.reshape(shape[1:])
    assert (choice[4:7, :5] == 0).all()  # the cluster: the line
    assert (choice[9, :3] < 0).all()  # before the drift step: the most lenient
    # The phase region: its own side, or the line through its own run of the
    # row (never the line across the boundary).
    region = choice[16:38, 56:]
    own_line = (step.reshape(shape[1:])[16:38, 56:] == 3) & (region == 0)
    assert ((region != 0) | own_line).all()
    line = refs[0].reshape(shape[1:])[16:38, 56:]
    assert np.all(np.abs(line[own_line] - 3.5) < 0.3)  # drift step + region


def test_a_cluster_filling_a_rows_end_does_not_pull_the_line():
    # Eight shifted pixels fill the ends of four rows: a quarter of the
    # window of the pixels near the end, all at one end. The line through
    # the whole window leans towards them; the line through the window's
    # longer run, beyond the cluster's edge, measures them and the normal
    # pixels beside them at the normal level.
    rng = np.random.default_rng(13)
    shape = (1, 40, 64)
    offsets = rng.normal(0.0, 0.45, shape)
    offsets[0, 4:8, 56:] += 2.0
    errors = np.full(offsets.size, 0.45)
    refs, _, step, _ = scoring.offset_references(
        offsets.ravel(), errors, shape, scoring.run_window(64)
    )
    line = refs[0].reshape(shape[1:])[4:8, 48:]
    measured = step.reshape(shape[1:])[4:8, 48:] == 0  # by the line
    assert measured[:, 8:].sum() >= 24
    assert np.all(np.abs(line[:, 8:][measured[:, 8:]]) < 0.5)  # the cluster
    assert np.mean(np.abs(line[:, :8][measured[:, :8]])) < 0.3  # beside it


def test_a_field_curving_towards_a_rows_end_is_no_cluster_cut_off():
    # A block at the row's end is cut off by a sharp step, and the longer
    # run's line stands for the pixels near it; a field rising gradually
    # over the same pixels is no block: no line.
    rng = np.random.default_rng(14)
    shape = (1, 1, 64)
    noise = rng.normal(0.0, 0.05, shape)
    errors = np.full(64, 0.05)
    window = scoring.run_window(64)
    pixels = np.arange(52, 64)
    block = noise.copy()
    block[0, 0, 56:] += 2.0
    line, _ = scoring.longer_run_lines(block.ravel(), errors, shape, window, pixels)
    assert np.all(np.abs(line) < 0.1)
    curved = noise + np.clip(np.arange(64) - 44.0, 0, None)[None, None] ** 2 / 180
    line, _ = scoring.longer_run_lines(curved.ravel(), errors, shape, window, pixels)
    assert np.isnan(line).all()


def test_a_cluster_at_a_rows_end_under_row_jitter_is_measured_against_the_line():
    # With row-to-row drift jitter every row's drift jumps, so the rows
    # around cannot show that no drift step happened in a row. The rows
    # just above and below can: a drift step leaves them flat in
    # themselves, a cluster reaches across them at the same columns.
    rng = np.random.default_rng(6)
    shape = (1, 40, 64)
    offsets = rng.normal(0.0, 0.1, shape)
    offsets += rng.normal(0.0, 2.0, (1, 40, 1))  # every row its own drift
    latent = rng.normal(0.0, 1.0, (*shape, 2)).reshape(-1, 2)
    offsets[0, 4:9, 1:6] += 2.0  # a cluster near the rows' start
    offsets[0, 20, 4:] += 2.0  # a drift step early in row 20 ...
    offsets[0, 21:] += 2.0  # ... which every later row keeps
    errors = np.full(offsets.size, 0.1)
    window = scoring.run_window(64)
    _, _, step, mixed = scoring.offset_references(
        offsets.ravel(), errors, shape, window
    )
    candidates = scoring.latent_candidates(latent, shape, window)
    choice = scoring.candidate_choice(latent, candidates, step, shape, mixed)
    choice = choice.reshape(shape[1:])
    assert (choice[5:8, 2:4] == 0).all()  # inside the cluster: the line
    assert (choice[20, :4] < 0).all()  # before the drift step: the most lenient


def test_shift_scores_averaged_over_fits_are_standardised_after_averaging():
    # Two fits' scores share the noise of the data (sd 1) and each adds its
    # own (sd 0.5): each spreads 1.12, their average 1.06. Standardised each
    # and then averaged they would spread 0.95, and their p-values would be
    # conservative; averaged and then standardised, 1.
    rng = np.random.default_rng(7)
    shape = (1, 64, 64)
    folds, _ = block_folds(shape)
    folds = folds.ravel()
    shared = rng.standard_normal(folds.size)
    fits = [
        [{"shift": shared + 0.5 * rng.standard_normal(folds.size)} for _ in (0, 1)]
        for _ in range(2)
    ]
    averaged = [
        {"shift": np.mean([fit[f]["shift"] for fit in fits], axis=0)} for f in (0, 1)
    ]
    z = detector._locally_standardised(averaged, folds, shape, 32)[0]["shift"]
    assert 0.97 < np.std(z[folds == 1]) < 1.03


def test_one_sided_references_are_the_medians_of_each_side():
    rng = np.random.default_rng(2)
    map_shape, window = (2, 5, 9), 3
    values = rng.normal(size=(90, 2))
    values[7, 1] = np.nan  # a value missing: the sides that hold it are NaN
    left, right, n_left, n_right = scoring.one_sided_references(
        values, map_shape, window, keep_short=True
    )
    rows = values.reshape(-1, 9, 2)
    for r, row in enumerate(rows):
        for x in range(9):
            i = r * 9 + x
            side_left, side_right = row[max(0, x - window) : x], row[x + 1 : x + 4]
            assert n_left[i] == len(side_left) and n_right[i] == len(side_right)
            for side, found in ((side_left, left[i]), (side_right, right[i])):
                expected = np.median(side, axis=0) if len(side) else np.full(2, np.nan)
                np.testing.assert_array_equal(found, expected)
    assert np.isnan(right[6, 1]) and np.isfinite(right[6, 0])


def test_row_trends_follow_drift_but_not_a_boundary():
    x = np.arange(30)
    rows = np.stack([0.01 * x + r for r in (0.0, 0.5, -0.3)])
    rows[1, 20:] += 2.0  # a phase boundary crosses row 1
    trend = scoring.row_trends(rows.ravel(), (1, 3, 30)).reshape(3, 30)
    np.testing.assert_allclose(trend[0], rows[0], atol=1e-9)
    np.testing.assert_allclose(trend[1, :20], rows[1, :20], atol=0.05)


def test_pearson_and_deviance_of_perfect_reconstruction():
    counts = torch.tensor([[1.0, 5.0, 9.0, 2.0]])
    scores = scoring.aligned_statistics(
        counts, counts, torch.zeros_like(counts), np.ones(1)
    )
    assert scores["pearson"][0] == pytest.approx(0.0, abs=1e-6)
    assert scores["deviance"][0] == pytest.approx(0.0, abs=1e-5)


def test_fdr_threshold_flags_strong_signals_only():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=990), np.full(10, 1e-9)])
    scores = -np.log10(p)
    threshold = thresholds.fdr_threshold(scores, p, 0.05)
    flagged = scores > threshold
    assert flagged[-10:].all() and flagged[:990].sum() <= 3
    none = thresholds.fdr_threshold(scores[:990], p[:990], 0.01)
    assert (scores[:990] > none).sum() <= 1


def test_two_sided_null_is_uniform_and_floored_at_the_noise_model():
    rng = np.random.default_rng(2)
    values = rng.standard_normal(5000)
    p = nulls.null_p_values(values, "two-sided", calibration=rng.standard_normal(2000))
    assert 0.008 < (p < 0.01).mean() < 0.013
    # A calibration sample that happens to be narrow cannot make p smaller
    # than the theoretical unit-variance null.
    narrow = nulls.null_p_values(values, "two-sided", calibration=0.3 * values)
    theory = nulls.null_p_values(values, "two-sided")
    assert np.all(narrow >= theory - 1e-12)
    # A wider calibration (misfit) widens the null.
    wide = nulls.null_p_values(values, "two-sided", calibration=3 * values)
    assert (wide < 0.01).mean() < 1e-3


def test_leave_one_out_nulls_leave_each_value_out_of_its_own_null():
    rng = np.random.default_rng(3)
    values = np.append(rng.standard_normal(29), 8.0)
    for kind in ("two-sided", "maximum"):
        p = nulls.null_p_values(
            values, kind, calibration=values, left_out=np.arange(values.size)
        )
        alone = [
            nulls.null_p_values(values[i : i + 1], kind, np.delete(values, i))[0]
            for i in range(values.size)
        ]
        np.testing.assert_allclose(p, alone)
        with_itself = nulls.null_p_values(values, kind, calibration=values)
        assert p[-1] != with_itself[-1]


def test_small_maps_pool_both_models_calibration_pixels_less_the_pixel():
    # A 6 x 10 map: each model scores 30 pixels. Each pixel's null is the
    # 59 out-of-fold scores of both models but its own, not 29 of one.
    map_shape = (1, 6, 10)
    folds, halves = block_folds(map_shape)
    train = np.ones(folds.size, dtype=bool)
    sets = detector._calibration_sets(folds, halves, train)
    rng = np.random.default_rng(5)
    per_model = [
        {name: rng.standard_normal(folds.size) for name in scoring.COMBINED_SCORES}
        for _ in (0, 1)
    ]
    per_model[1]["shift"][np.flatnonzero(folds == 0)[0]] = 4.5
    p_values, _ = detector._p_values(per_model, folds, halves, sets, {})
    scored_by = 1 - folds
    values = np.array([per_model[f]["shift"][i] for i, f in enumerate(scored_by)])
    pooled = np.concatenate([values[sets[0]], values[sets[1]]])
    assert pooled.size == folds.size
    own = np.concatenate([sets[0], sets[1]])
    for i in range(folds.size):
        alone = nulls.null_p_values(
            values[i : i + 1], "two-sided", np.delete(pooled, np.flatnonzero(own == i))
        )[0]
        np.testing.assert_allclose(p_values["shift"][i], alone)
    # More calibration pixels, a lighter tail: the shifted pixel's p-value
    # is smaller than with its model's 29 alone.
    i = np.flatnonzero(folds == 0)[0]
    one_model = nulls.null_p_values(
        values[i : i + 1], "two-sided", np.delete(values[sets[1]], 0)
    )[0]
    assert p_values["shift"][i] < one_model


def test_small_calibration_sets_give_a_t_prediction_near_the_noise_model():
    # 29 standard normal calibration values: a t with about 20 degrees of
    # freedom (the biweight's): about half the p-value the MAD's 10 give.
    rng = np.random.default_rng(4)
    calibration = rng.standard_normal(29)
    p = nulls.null_p_values(np.array([5.0]), "two-sided", calibration=calibration)
    assert 1e-5 < p[0] < 4.5e-4
    # Over many draws of a calibration set twice as wide as the noise model
    # (a model misfit): the prediction is uniform, not anti-conservative.
    hits = [
        nulls.null_p_values(
            2 * rng.standard_normal(200),
            "two-sided",
            calibration=2 * rng.standard_normal(29),
        )
        < 0.01
        for _ in range(200)
    ]
    assert 0.006 < np.mean(hits) < 0.013


def test_local_standardisation_uses_only_the_scored_pixels():
    rng = np.random.default_rng(5)
    shape = (1, 24, 24)
    scored = rng.random(shape).ravel() < 0.5
    z = np.where(scored, 3.0, 0.3) * rng.standard_normal(scored.size)
    mad = lambda v: 1.4826 * np.median(np.abs(v - np.median(v)))  # noqa: E731
    mixed = scoring.locally_standardised(z, shape, 8)
    only = scoring.locally_standardised(z, shape, 8, scored=scored)
    assert mad(mixed[scored]) > 1.3
    assert 0.85 < mad(only[scored]) < 1.15


def test_local_spread_of_a_small_map_is_measured_on_enough_pixels():
    # A 6 x 10 map: a square of half-width 2 round a corner pixel holds six
    # scored pixels, its own shifted one among them, and a MAD of six values
    # spread wide by chance would take most of its departure away.
    shape = (1, 6, 10)
    rows, cols = np.indices(shape[1:])
    scored = ((rows + cols) % 2 == 0).ravel()
    z = 0.3 * np.sin(np.arange(60.0))
    corner = (rows >= 3) & (cols >= 6)
    z[corner.ravel()] = np.where((cols[corner] % 4) < 2, 1.5, -1.5)
    anomalous = 5 * 10 + 9
    assert scored[anomalous]
    z[anomalous] = 4.0
    out = scoring.locally_standardised(z, shape, 2, scored=scored)
    assert out[anomalous] > 3.5
    assert np.all(np.abs(np.delete(out, anomalous)) < 2.0)


def test_combination_is_bonferroni_with_equal_weights():
    p = {"a": np.array([0.01, 0.5]), "b": np.array([0.2, 0.001]), "c": np.ones(2)}
    np.testing.assert_allclose(nulls.combine_p_values(p), [0.03, 0.003])


def test_distance_null_has_a_heavier_tail_than_its_calibration():
    rng = np.random.default_rng(3)
    calibration = rng.chisquare(4, 2000)
    p = nulls.null_p_values(rng.chisquare(4, 20000), "distance", calibration)
    assert 0.007 < (p < 0.01).mean() < 0.015
    assert (p < 1e-3).mean() < 1.5e-3


@pytest.mark.parametrize(
    "change",
    [
        dict(patch_size=2),
        dict(trim_fraction=0.9),
        dict(hidden_channels=(8, 8)),
        dict(beta=-1.0),
        dict(batch_size=True),
    ],
)
def test_settings_validate(change):
    with pytest.raises(ValueError):
        VAESettings(**change)


def test_settings_round_trip():
    s = VAESettings(latent_dim=2, hidden_channels=(4, 8, 8))
    assert VAESettings.from_dict(s.to_dict()) == s


def test_local_score_finds_a_narrow_peak_the_deviance_dilutes():
    rng = np.random.default_rng(3)
    expected = torch.full((300, 320), 100.0)
    counts = torch.tensor(rng.poisson(100.0, (300, 320)), dtype=torch.float32)
    bump = 40.0 * np.exp(-0.5 * ((np.arange(320) - 150) / 2.0) ** 2)
    counts[:30] += torch.tensor(rng.poisson(bump, size=(30, 320)), dtype=torch.float32)
    scores = scoring.aligned_statistics(
        counts, expected, torch.zeros_like(expected), np.ones(1)
    )
    p_local = nulls.null_p_values(scores["local"], "maximum", scores["local"][30:])
    assert np.median(p_local[:30]) < 1e-4
    assert np.median(p_local[30:]) > 0.2


def test_correlated_noise_does_not_inflate_the_local_score():
    rng = np.random.default_rng(4)
    correlation = np.array([1.0, 0.6, 0.2])
    noise = nulls.correlated_normals(rng, 4000, 256, correlation)
    lag1 = np.mean(noise[:, 1:] * noise[:, :-1])
    assert lag1 == pytest.approx(0.6, abs=0.03)
    residual = torch.tensor(noise, dtype=torch.float32)
    local = scoring._largest_smoothed(residual, correlation).numpy()
    naive = scoring._largest_smoothed(residual, np.ones(1)).numpy()
    assert np.median(local) < np.median(naive)
    theory = scoring._largest_smoothed(
        torch.tensor(rng.standard_normal((4000, 256)), dtype=torch.float32), np.ones(1)
    ).numpy()
    assert np.median(local) == pytest.approx(np.median(theory), rel=0.05)


def test_maximum_null_is_calibrated():
    rng = np.random.default_rng(4)
    values = np.abs(rng.standard_normal((20000, 200))).max(axis=1)
    p = nulls.null_p_values(values, "maximum", calibration=values[:5000])
    assert 0.007 < (p < 0.01).mean() < 0.014
    assert (p < 1e-3).mean() < 2.5e-3


def test_maximum_null_follows_the_tail_of_excess_noise_at_few_counts():
    # Maxima of standardised Poisson-gamma counts (3 per channel, variance 4
    # times the mean): skewed, so their tail is heavier than a Gaussian's
    # Gumbel, and heavier than the bulk of the calibration suggests.
    rng = np.random.default_rng(6)

    def maxima(n):
        rate = rng.gamma(1.0, 3.0, size=(n, 256))
        return np.abs(rng.poisson(rate) - 3.0).max(axis=1) / np.sqrt(12.0)

    theory = np.abs(rng.standard_normal((3000, 256))).max(axis=1)
    p = nulls.null_p_values(
        maxima(20000), "maximum", calibration=maxima(3000), theory=theory
    )
    assert (p < 1e-2).mean() < 0.012
    assert (p < 1e-3).mean() < 1.5e-3


def test_expected_f1_threshold_adapts_and_falls_back():
    rng = np.random.default_rng(5)
    null = rng.uniform(size=4000)
    strong = np.concatenate([null, np.full(80, 1e-12)])
    scores = -np.log10(strong)
    flagged = scores > thresholds.expected_f1_threshold(scores, strong, 0.05)
    assert flagged[-80:].all() and flagged[:4000].sum() <= 2
    # Weak signals: more lenient than Benjamini-Hochberg at 5 %.
    weak = np.concatenate([null, 10 ** -rng.uniform(2, 5, size=200)])
    scores = -np.log10(weak)
    f1_cut = thresholds.expected_f1_threshold(scores, weak, 0.05)
    assert f1_cut < thresholds.fdr_threshold(scores, weak, 0.05)
    # No signal: the fallback flags (almost) nothing.
    scores = -np.log10(null)
    assert (scores > thresholds.expected_f1_threshold(scores, null, 0.05)).sum() <= 1


def test_expected_f1_threshold_bound_on_the_flags():
    # Many weak anomalies: the expected F1 is highest with more flags than
    # Benjamini-Hochberg at MAX_FDR allows; the bound holds them there, and
    # max_fdr=1 lifts it.
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(size=4000), 10 ** -rng.uniform(0.5, 3, 300)])
    scores = -np.log10(p)
    k = np.arange(1, p.size + 1)
    passed = np.nonzero(np.sort(p) <= thresholds.MAX_FDR * k / p.size)[0]
    bounded = scores > thresholds.expected_f1_threshold(scores, p, 0.05)
    unbounded = scores > thresholds.expected_f1_threshold(scores, p, 0.05, max_fdr=1.0)
    assert bounded.sum() <= passed[-1] + 1
    assert unbounded.sum() > 2 * bounded.sum()


def test_expected_f1_threshold_is_steadier_than_the_ranked_p_values_argmax():
    # The same map scored by different fits: every p-value moves a little
    # (0.15 in log10). The cutoff from the fitted mixture moves the number of
    # flags less than the argmax of the ranked p-values' expected F1 (the
    # rule it replaced), and finds the anomalies as well.
    def ranked_argmax(p):
        p = np.sort(p)
        n, k = p.size, np.arange(1, p.size + 1)
        n_anomalous = max(
            thresholds.beta_uniform_count(p), thresholds.excess_discoveries(p)
        )
        f1 = 2.0 * np.maximum(k - n * p, 0.0) / (k + n_anomalous)
        passed = np.nonzero(p <= thresholds.MAX_FDR * k / n)[0]
        return min(int(np.argmax(f1)) + 1, passed[-1] + 1)

    spread_fitted, spread_ranked, f1_fitted, f1_ranked = [], [], [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        anomalous = 10.0 ** -rng.uniform(2, 8, size=80)
        base = np.concatenate([rng.uniform(size=4000), anomalous])
        fitted, ranked = [], []
        for _ in range(8):
            p = np.minimum(base * 10.0 ** rng.normal(0.0, 0.15, base.size), 1.0)
            scores = -np.log10(p)
            flagged = scores > thresholds.expected_f1_threshold(scores, p, 0.05)
            fitted.append(flagged.sum())
            f1_fitted.append(2 * flagged[4000:].sum() / (flagged.sum() + 80))
            k = ranked_argmax(p)
            top = np.argsort(p)[:k]
            ranked.append(k)
            f1_ranked.append(2 * np.count_nonzero(top >= 4000) / (k + 80))
        spread_fitted.append(np.std(fitted))
        spread_ranked.append(np.std(ranked))
    assert np.mean(spread_fitted) < 0.6 * np.mean(spread_ranked)
    assert np.mean(f1_fitted) > np.mean(f1_ranked) - 0.01


def test_beta_uniform_count_counts_weak_anomalies_the_excess_misses():
    counts, lower_bounds = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        # 80 weak anomalies: 40 % of their p-values above 0.05.
        p = np.concatenate([rng.uniform(size=4000), rng.beta(0.1, 1.0, size=80)])
        counts.append(thresholds.beta_uniform_count(p))
        lower_bounds.append(thresholds.excess_discoveries(p))
    assert 64 < np.mean(counts) < 96
    assert np.mean(lower_bounds) < 48
    # A few strong anomalies: they are counted, not extrapolated from.
    rng = np.random.default_rng(0)
    strong = np.concatenate([rng.uniform(size=4000), np.full(20, 1e-9)])
    assert 20 <= thresholds.beta_uniform_count(strong) < 35
    assert thresholds.beta_uniform_count(rng.uniform(size=4000)) < 15


def test_encoder_input_binned_for_long_spectra_while_output_keeps_every_channel():
    from hyperspy_vae.cube import SpectrumCube, input_binning

    assert input_binning(320, 384) == 1 and input_binning(1312, 384) == 4
    rng = np.random.default_rng(0)
    counts = rng.poisson(20.0, (1, 6, 5, 1310)).astype(np.float32)
    cube = SpectrumCube(counts, 3, input_binning(1310, 384))
    assert cube.n_input_channels == 328
    patches = cube.patches(np.array([0, 29]))
    assert patches.shape == (2, 3, 3, 328)
    # The corner patch repeats the edge pixels; bins are means of 4 channels.
    expected = np.sqrt(counts[0, 0, 0, :4].mean() * cube.scale[0, 0, 0])
    assert patches[0, 0, 0, 0] == pytest.approx(expected, rel=1e-3)  # float16
    model = CVAE3D(1310, 2, 3, (4, 8, 8), n_input_channels=328)
    logits, _, _ = model(torch.from_numpy(patches))
    assert logits.shape == (2, 1310)


def test_local_score_filters_match_scipy_gaussian_filters():
    from scipy import ndimage

    x = np.random.default_rng(1).standard_normal((20, 150))
    expected = np.max(
        [
            np.abs(ndimage.gaussian_filter1d(x, w, axis=-1, mode="constant")).max(-1)
            / np.sqrt(np.sum(scoring._gaussian(w) ** 2))
            for w in scoring.LOCAL_WIDTHS
        ],
        axis=0,
    )
    got = scoring._largest_smoothed(torch.from_numpy(x).float(), np.ones(1)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_bin_energy_sums_channels_and_expand_spreads_them_back():
    from hyperspy_vae.cube import bin_energy, expand_energy

    counts = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    binned = bin_energy(counts, 4)
    np.testing.assert_array_equal(binned[0], [6, 22, 17])  # last bin: 2 channels
    assert bin_energy(counts, 1) is counts
    expanded = expand_energy(binned, 4, 10)
    assert expanded.shape == (2, 10)
    np.testing.assert_allclose(expanded.sum(axis=-1), counts.sum(axis=-1))
    np.testing.assert_allclose(expanded[0, 8:], [8.5, 8.5])


@pytest.mark.parametrize("shape", [(1, 64, 64), (1, 1, 100), (2, 6, 10)])
def test_folds_split_every_region_and_each_fold_in_halves(shape):
    folds, halves = block_folds(shape)
    assert set(np.unique(folds)) == {0, 1}
    for f in (0, 1):
        assert set(np.unique(halves[folds == f])) == {0, 1}
    # Each quarter of the map holds both folds.
    grid = folds.reshape(shape)
    rows, cols = shape[1], shape[2]
    for r in (slice(0, max(rows // 2, 1)), slice(rows // 2, rows)):
        for c in (slice(0, cols // 2), slice(cols // 2, cols)):
            assert set(np.unique(grid[:, r, c])) == {0, 1}

"""Issue 11 design study: a bank of local deformations against the neighbours' reconstruction.

What separates ``vae_anomalies()`` from the limit on the kinds of
``benchmarks/kinds.py``, measured by replacing one step at a time (best-
threshold F1 each, so thresholds do not enter):

1. ``vae``: the detector's own combined score;
2. the reference: each pixel's expected counts decoded from the *median
   latent point of its neighbours* (a :data:`RING` x :data:`RING` window less
   a :data:`GUARD` x :data:`GUARD` guard, wider than a cluster) and moved to
   the median energy offset of its row neighbours (the row's drift), scaled
   to the pixel's counts, under the model of the first fit that did not
   learn from the pixel. The pixel's own latent point and offset would take
   up part of any change (its encoder sees it);
3. the deformations, each a family of templates standardised by the
   reference's noise, the reference's own direction (its scale) projected
   out, and the largest ``|z|`` over the family kept: ``peak`` (Gaussian
   peaks of 1, 2 and 4 channels everywhere: a new feature), ``amplitude``
   (the reference times Gaussian windows of 3, 6 and 12 channels: a changed
   intensity, such as a white-line ratio), ``shift`` (its derivative times
   those windows: one edge moved) and ``broadening`` (its second derivative
   times them); ``bank``: the largest over every family;
4. ``oracle``: the one template of the true change, against the same
   reference: what the reference costs, apart from not knowing the change
   (the gap from ``oracle`` to ``bank``);
5. ``direction_1``, ``direction_2``: the squared projections of each
   pixel's residual (from the neighbours' reconstruction, its scale taken
   out) on the leading one or two eigenvectors of all the residuals'
   second moments: a change many pixels share, learned without labels.

And ``absorbed``: the median, over the anomalous pixels, of the fraction of
their true change that the detector's own reconstruction
(``get_vae_model()``, each pixel's own latent point and offset) carries.

Run ``python benchmarks/deformation_bank.py --seeds 0 1`` (tuning seeds of
``kinds.py``; about 10 minutes a seed on two cores); results in
``benchmarks/results/deformation_bank*.{json,md}``.
"""

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

import hyperspy.api as hs
import numpy as np
import torch
from kinds import KINDS, LAYOUTS, TUNING_SEEDS, best_f1, make_map, point_fields

from hyperspy_vae import detector
from hyperspy_vae.folds import block_folds
from hyperspy_vae.nn.alignment import shift_logits

RESULTS = Path(__file__).parent / "results"
#: Latent points of the reference: a window of this many pixels a side ...
RING = 11
#: ... less the pixels this close to the pixel (a cluster fills them).
GUARD = 5
#: Row neighbours on each side whose median offset the reference takes.
ROW_WINDOW = 8
PEAK_WIDTHS = (1.0, 2.0, 4.0)
WINDOW_WIDTHS = (3.0, 6.0, 12.0)
FAMILIES = ("peak", "amplitude", "shift", "broadening")
#: Leading residual directions tried.
DIRECTIONS = (1, 2)


@contextmanager
def first_pair_recorded():
    """Record the first fit's models, cube and first passes (offsets, latent points)."""
    recorded = {}
    original = detector._score_pair

    def recording(models, cube, *args, **kwargs):
        out = original(models, cube, *args, **kwargs)
        if "firsts" not in recorded:
            recorded.update(models=models, cube=cube, firsts=out[1])
        return out

    detector._score_pair = recording
    try:
        yield recorded
    finally:
        detector._score_pair = original


def row_median(values, n_columns, window=ROW_WINDOW):
    """Median of each pixel's ``window`` row neighbours on each side (not itself)."""
    rows = values.reshape(-1, n_columns)
    padded = np.pad(rows, ((0, 0), (window, window)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, 2 * window + 1, axis=1
    ).copy()
    windows[..., window] = np.nan
    return np.nanmedian(windows, axis=-1).ravel()


def ring_median(values, map_shape, ring=RING, guard=GUARD):
    """Median of each pixel's ``ring`` x ``ring`` window less its guard, per column."""
    rows, cols = map_shape
    image = values.reshape(rows, cols, -1)
    r, g = ring // 2, guard // 2
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, (ring, ring), axis=(0, 1)
    ).copy()
    windows[..., r - g : r + g + 1, r - g : r + g + 1] = np.nan
    flat = windows.reshape(*windows.shape[:3], -1)
    return np.nanmedian(flat, axis=-1).reshape(rows * cols, -1)


def gaussian_templates(n_channels, widths):
    """Unit-height Gaussians of each width, centred every half width."""
    x = np.arange(n_channels)
    return np.array(
        [
            np.exp(-0.5 * ((x - c) / w) ** 2)
            for w in widths
            for c in np.arange(0, n_channels, max(1.0, 0.5 * w))
        ]
    )


def template_z(residual, basis, weights, templates):
    """``z`` of each template ``weights * template`` in the residual.

    ``residual`` is standardised and orthogonal to ``basis`` (``(n, C, k)``,
    orthonormal columns); the templates' parts along the basis are taken out
    of their norms.
    """
    numerator = (residual * weights) @ templates.T
    norm = (weights * weights) @ (templates * templates).T
    for j in range(basis.shape[2]):
        norm -= ((basis[:, :, j] * weights) @ templates.T) ** 2
    return numerator / np.sqrt(np.maximum(norm, 1e-12))


def deformation_z(counts, expected, oracle):
    """Largest ``|z|`` per family, over the bank, and of the oracle template.

    Also returns the standardised residuals, their scale taken out.
    """
    n_channels = counts.shape[1]
    root = np.sqrt(np.maximum(expected, 1e-6))
    residual = (counts - expected) / root
    basis = (root / np.linalg.norm(root, axis=1, keepdims=True))[:, :, None]
    residual = (
        residual - basis[:, :, 0] * np.sum(residual * basis[:, :, 0], axis=1)[:, None]
    )
    slope = np.gradient(expected, axis=1)
    curvature = np.gradient(slope, axis=1)
    peaks = gaussian_templates(n_channels, PEAK_WIDTHS)
    windows = gaussian_templates(n_channels, WINDOW_WIDTHS)
    z = {
        "peak": template_z(residual, basis, 1 / root, peaks),
        "amplitude": template_z(residual, basis, root, windows),
        "shift": template_z(residual, basis, slope / root, windows),
        "broadening": template_z(residual, basis, curvature / root, windows),
    }
    out = {name: np.abs(values).max(axis=1) for name, values in z.items()}
    out["bank"] = np.max([out[name] for name in FAMILIES], axis=0)
    out["oracle"] = np.abs(template_z(residual, basis, 1 / root, oracle[None]))[:, 0]
    return out, residual


def direction_scores(residuals):
    """Squared projections on the leading eigenvectors of the residuals' second moments."""
    _, vectors = np.linalg.eigh(residuals.T @ residuals / len(residuals))
    leading = vectors[:, ::-1]
    return {
        f"direction_{k}": np.sum((residuals @ leading[:, :k]) ** 2, axis=1)
        for k in DIRECTIONS
    }


def absorbed_fraction(s, truth):
    """Median share of the anomalous pixels' true change in their own reconstruction."""
    model = np.asarray(s.get_vae_model().data, dtype=np.float64)
    anomalous = truth.anomalous
    normal = truth.expected_normal[anomalous]
    change = truth.expected_anomalous[anomalous] - normal
    weight = 1.0 / np.maximum(normal, 1.0)
    taken = np.sum((model[anomalous] - normal) * change * weight, axis=-1)
    return float(np.median(taken / np.sum(change * change * weight, axis=-1)))


def point_row(kind, strength, layout, fraction, dose, seed):
    """The step-by-step figures of one map."""
    s, truth = make_map(kind, strength, layout, fraction, dose, seed)
    with first_pair_recorded() as recorded:
        amap = s.vae_anomalies(random_state=0, print_info=False)
    cube, models, firsts = recorded["cube"], recorded["models"], recorded["firsts"]
    y = truth.anomalous.ravel()
    counts = np.asarray(cube.counts, dtype=np.float64).reshape(-1, cube.n_channels)
    map_shape = cube.counts.shape[1:3]
    folds, _ = block_folds(cube.counts.shape[:3])
    change = (truth.expected_anomalous - truth.expected_normal).reshape(y.size, -1)
    oracle = change[np.argmax(np.abs(change).sum(axis=1))]
    if oracle.size != cube.n_channels:  # binned: the oracle binned alike
        energy_bin = getattr(cube, "energy_bin", 1)
        oracle = oracle[: oracle.size // energy_bin * energy_bin]
        oracle = oracle.reshape(cube.n_channels, -1).sum(axis=1)
    statistics = {}
    residuals = np.zeros_like(counts)
    for f, model in enumerate(models):
        latent = ring_median(firsts[f]["latent_mean"].astype(np.float64), map_shape)
        offset = row_median(firsts[f]["offset"], map_shape[1])
        scored = np.flatnonzero(folds == 1 - f)
        with torch.no_grad():
            logits = model.decode(torch.from_numpy(latent[scored].astype(np.float32)))
            logits = shift_logits(
                logits.float(), torch.from_numpy(offset[scored].astype(np.float32))
            )
            shape = torch.softmax(logits, dim=-1).double().numpy()
        expected = shape * counts[scored].sum(axis=1, keepdims=True)
        values, residuals[scored] = deformation_z(counts[scored], expected, oracle)
        for name, value in values.items():
            statistics.setdefault(name, np.zeros(y.size))[scored] = value
    statistics.update(direction_scores(residuals))
    row = dict(
        point_fields(kind, strength, layout, fraction, dose, seed),
        limit=best_f1(truth.likelihood_ratio(s.data), y),
        vae=best_f1(amap.data, y),
        absorbed=absorbed_fraction(s, truth),
        **{name: best_f1(values, y) for name, values in statistics.items()},
    )
    print(json.dumps(row), flush=True)
    return row


def write_markdown(rows, path, command):
    """Means over layouts and seeds per kind and strength."""
    seeds = sorted({r["seed"] for r in rows})
    columns = (
        "limit",
        "vae",
        *FAMILIES,
        "bank",
        "oracle",
        *(f"direction_{k}" for k in DIRECTIONS),
        "absorbed",
    )
    lines = [
        "# A bank of local deformations against the neighbours' reconstruction "
        "(issue 11 design study)",
        "",
        f"Seeds {', '.join(map(str, seeds))} (tuning); 64 x 64 maps, 5 % "
        "anomalous, dose 1, both layouts averaged. Best-threshold F1 of: the "
        "limit; `vae_anomalies()`; each family of templates and the whole bank "
        "against the neighbours' reconstruction; the true change's own "
        "template against it (oracle); the leading one or two directions of "
        "the residuals; and the median share of the anomalous pixels' true "
        "change that the detector's own reconstruction carries (absorbed). "
        "See the module docstring.",
        "",
        "| kind | strength | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for kind in KINDS:
        for strength in KINDS[kind]["strengths"]:
            group = [
                r
                for r in rows
                if r["kind"] == kind and np.isclose(r["strength"], strength)
            ]
            if group:
                means = [np.mean([r[c] for r in group]) for c in columns]
                lines.append(
                    f"| {kind} | {strength:.3g} | "
                    + " | ".join(f"{m:.2f}" for m in means)
                    + " |"
                )
    lines += ["", f"Command: `{command}`", ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    parser.add_argument("--name", default="deformation_bank")
    args = parser.parse_args(argv)
    hs.preferences.General.show_progressbar = False
    rows = [
        point_row(kind, strength, layout, 0.05, 1.0, seed)
        for kind in args.kinds
        for strength in KINDS[kind]["strengths"]
        for layout in LAYOUTS
        for seed in args.seeds
    ]
    RESULTS.mkdir(exist_ok=True)
    command = "python benchmarks/deformation_bank.py " + " ".join(argv or [])
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    write_markdown(rows, RESULTS / f"{args.name}.md", command.strip())
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

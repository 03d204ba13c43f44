"""Issue 3 benchmark: F1 against edge shift, VAE vs PCA vs robust PCA vs the limit.

On ``hyperspy_vae.data.fe_l23_spectrum_image`` (0.25 eV per channel) for a grid
of shifts, anomalous fractions, layouts, doses and seeds, compares:

* ``vae``: ``s.vae_anomalies()`` with defaults (no labels);
* ``vae_ref``: ``vae_anomalies`` trained on a clean reference region
  (``navigation_mask`` excludes everything else);
* ``pca3``, ``pca4``, ``pca5``: ``s.pca_anomalies(k)``;
* ``rpca``: HyperSpy's ``decomposition(algorithm="RPCA", return_info=True)``,
  the per-pixel norm of the sparse part as the score, thresholded by the same
  null and false-discovery rule;
* ``limit``: the per-pixel Poisson log-likelihood ratio between the known
  normal and anomalous expected spectra (Neyman-Pearson: no detector beats
  it per pixel), at its best threshold.

Reports F1 at the automatic threshold, the best-threshold F1, average
precision, misclassified pixels at the automatic threshold and wall time,
as a markdown table and a PNG plot under ``benchmarks/results/``. Rows with
``anomaly`` = ``peak`` or ``missing_edge`` check non-shift anomalies.

Run: ``python benchmarks/f1_vs_shift.py`` (the grid) or ``--quick`` (minutes).
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import hyperspy.api as hs
import numpy as np

import hyperspy_vae
from hyperspy_vae import nulls, thresholds
from hyperspy_vae.demo import f1_score

RESULTS = Path(__file__).parent / "results"
METHODS = ("limit", "vae", "vae_ref", "pca3", "pca4", "pca5", "rpca")


def best_f1(scores, truth):
    """Best F1 over all thresholds."""
    order = np.argsort(-np.ravel(scores), kind="stable")
    hits = np.ravel(truth)[order]
    if not hits.any():
        return float("nan")
    tp = np.cumsum(hits)
    return float(np.max(2 * tp / (np.arange(1, hits.size + 1) + hits.sum())))


def average_precision(scores, truth):
    """Average precision (area under the precision-recall curve, step-wise)."""
    order = np.argsort(-np.ravel(scores), kind="stable")
    hits = np.ravel(truth)[order]
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision[hits].mean())


def reference_mask(truth):
    """Everything outside a clean reference block (top quarter), True = excluded."""
    rows = truth.shape[0]
    mask = np.ones(truth.shape, dtype=bool)
    mask[: max(rows // 4, 4)] = False
    mask |= truth  # the user knows the reference region is clean
    return mask


def rpca_scores(s, k=3, lambda1=1.0):
    """Sparse-part energy per pixel from HyperSpy's RPCA, and its -log10 p.

    The counts are variance-stabilised first (Anscombe: unit noise), so that
    ``lambda1 = 1`` soft-thresholds the sparse part at the noise level;
    HyperSpy's Poisson normalisation with the default ``lambda1`` leaves the
    sparse part empty on these data.
    """
    work = hs.signals.Signal1D(
        2.0 * np.sqrt(np.clip(s.data, 0, None).astype(np.float64) + 0.375),
        axes=s.axes_manager._get_axes_dicts(),
    )
    _, sparse = work.decomposition(
        algorithm="RPCA",
        output_dimension=k,
        lambda1=lambda1,
        return_info=True,
        print_info=False,
    )
    n_pixels = int(np.prod(s.data.shape[:-1]))
    sparse = np.asarray(sparse)
    if sparse.shape[0] != n_pixels:
        sparse = sparse.T
    raw = np.sum(sparse**2, axis=1)
    p = nulls.null_p_values(raw, "distance", calibration=raw)
    return -np.log10(p), p


def evaluate(method, s, truth, seed):
    """Scores, automatic flags and wall time of one method."""
    start = time.perf_counter()
    if method == "limit":
        scores = truth.likelihood_ratio(s.data)
        flags = None
    elif method in ("vae", "vae_ref"):
        mask = reference_mask(truth.anomalous).T if method == "vae_ref" else None
        amap = s.vae_anomalies(
            random_state=seed, navigation_mask=mask, print_info=False
        )
        scores, flags = amap.data, amap.data > amap.threshold
    elif method.startswith("pca"):
        amap = s.pca_anomalies(int(method[3:]), print_info=False)
        scores, flags = amap.data, amap.data > amap.threshold
    elif method == "rpca":
        scores, p = rpca_scores(s)
        threshold = thresholds.fdr_threshold(scores, p, 0.05)
        scores = scores.reshape(truth.anomalous.shape)
        flags = scores > threshold
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - start
    y = truth.anomalous
    row = {
        "best_f1": best_f1(scores, y),
        "ap": average_precision(scores, y),
        "seconds": seconds,
    }
    if flags is not None:
        row["f1"] = f1_score(flags, y)
        row["misclassified"] = int(np.sum(flags != y))
        row["flagged"] = int(flags.sum())
    return row


def grid(args):
    """The configurations to run."""
    configs = [
        dict(anomaly="shift", shift=shift, fraction=f, layout=lay, dose=d, seed=seed)
        for shift, f, lay, d, seed in itertools.product(
            args.shifts, args.fractions, args.layouts, args.doses, args.seeds
        )
    ]
    for kind in args.other_anomalies:
        configs += [
            dict(
                anomaly=kind, shift=0.0, fraction=0.02, layout=lay, dose=1.0, seed=seed
            )
            for lay, seed in itertools.product(args.layouts, args.seeds)
        ]
    return configs


def run(args):
    hs.preferences.General.show_progressbar = False
    rows = []
    for config in grid(args):
        s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
            (args.size, args.size),
            shift=config["shift"] if config["anomaly"] == "shift" else 1.0,
            fraction=config["fraction"],
            layout=config["layout"],
            dose=config["dose"],
            anomaly=config["anomaly"],
            random_state=config["seed"],
        )
        for method in args.methods:
            row = dict(
                config, method=method, **evaluate(method, s, truth, config["seed"])
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summarise(rows):
    """Mean over seeds per configuration and method."""
    keys = ("anomaly", "shift", "fraction", "layout", "dose", "method")
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    table = []
    for key, members in groups.items():
        entry = dict(zip(keys, key, strict=True))
        for field in ("f1", "best_f1", "ap", "misclassified", "seconds"):
            values = [m[field] for m in members if field in m]
            entry[field] = float(np.mean(values)) if values else float("nan")
        entry["n_seeds"] = len(members)
        table.append(entry)
    return table


def write_markdown(table, path, command):
    configs = sorted(
        {
            (t["anomaly"], t["fraction"], t["layout"], t["dose"], t["shift"])
            for t in table
        }
    )
    methods = [m for m in METHODS if any(t["method"] == m for t in table)]
    by_key = {
        (
            t["anomaly"],
            t["fraction"],
            t["layout"],
            t["dose"],
            t["shift"],
            t["method"],
        ): t
        for t in table
    }
    header = "| anomaly | fraction | layout | dose | shift (eV) | " + " | ".join(
        f"{m} F1 (best, AP)" if m != "limit" else "limit best F1" for m in methods
    )
    lines = [
        "# F1 against edge shift (issue 3)",
        "",
        "F1 at the automatic threshold (no labels), then best-threshold F1 and average "
        "precision in brackets; mean over seeds. `limit`: the per-pixel likelihood "
        "ratio with every nuisance parameter known, at its best threshold.",
        "",
        header + " |",
        "|" + "---|" * (5 + len(methods)),
    ]
    for config in configs:
        cells = []
        for m in methods:
            t = by_key.get((*config, m))
            if t is None:
                cells.append("")
            elif m == "limit":
                cells.append(f"{t['best_f1']:.3f}")
            else:
                cells.append(f"**{t['f1']:.3f}** ({t['best_f1']:.2f}, {t['ap']:.2f})")
        anomaly, fraction, layout, dose, shift = config
        shift_text = f"{shift:g}" if anomaly == "shift" else "-"
        lines.append(
            f"| {anomaly} | {fraction:.1%} | {layout} | {dose:g} | {shift_text} | "
            + " | ".join(cells)
            + " |"
        )
    seconds = {
        m: np.mean([t["seconds"] for t in table if t["method"] == m]) for m in methods
    }
    lines += [
        "",
        "Mean wall time per map (s): "
        + ", ".join(f"{m} {v:.1f}" for m, v in seconds.items()),
        "",
        f"Command: `{command}`",
    ]
    path.write_text("\n".join(lines) + "\n")


def plot(table, path):
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    shift_rows = [t for t in table if t["anomaly"] == "shift"]
    panels = sorted({(t["fraction"], t["layout"], t["dose"]) for t in shift_rows})
    if not panels:
        return
    n_cols = min(3, len(panels))
    n_rows = int(np.ceil(len(panels) / n_cols))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(4.3 * n_cols, 3.3 * n_rows),
        squeeze=False,
        layout="constrained",
    )
    for ax, (fraction, layout, dose) in zip(axes.flat, panels, strict=False):
        for i, method in enumerate(METHODS):
            points = sorted(
                (t["shift"], t["best_f1"] if method == "limit" else t["f1"])
                for t in shift_rows
                if t["method"] == method
                and (t["fraction"], t["layout"], t["dose"]) == (fraction, layout, dose)
            )
            if not points:
                continue
            x, y = zip(*points, strict=True)
            style = (
                dict(color="k", ls="--", lw=2)
                if method == "limit"
                else dict(color=f"C{i}", marker="o", ms=3)
            )
            ax.plot(x, y, label=method, **style)
        ax.set_xscale("log")
        shifts = sorted({t["shift"] for t in shift_rows})
        ax.set_xticks(shifts, [f"{v:g}" for v in shifts])
        ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Edge shift (eV)")
        ax.set_ylabel("F1 (automatic threshold)")
        ax.set_title(f"{fraction:.1%} {layout}, dose {dose:g}", fontsize="medium")
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize="small")
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--shifts", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1, 2, 3]
    )
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[0.005, 0.02, 0.1]
    )
    parser.add_argument("--layouts", nargs="+", default=["random", "clusters"])
    parser.add_argument("--doses", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--other-anomalies", nargs="*", default=["peak", "missing_edge"]
    )
    parser.add_argument("--name", default=None, help="output file stem")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=[],
        help="JSON results of earlier runs to include (their rows for methods "
        "not run now)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.shifts, args.fractions = 32, [0.5, 2.0], [0.05]
        args.layouts, args.doses, args.seeds = ["random"], [1.0], [0]
        args.methods, args.other_anomalies = ["limit", "vae", "pca3"], ["peak"]
    name = args.name or ("f1_vs_shift_quick" if args.quick else "f1_vs_shift")
    RESULTS.mkdir(exist_ok=True)
    rows = run(args)
    for path in args.merge:
        rows += [
            r for r in json.loads(path.read_text()) if r["method"] not in args.methods
        ]
    table = summarise(rows)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
    command = "python benchmarks/f1_vs_shift.py " + " ".join(argv or [])
    write_markdown(table, RESULTS / f"{name}.md", command.strip())
    plot(table, RESULTS / f"{name}.png")
    print((RESULTS / f"{name}.md").read_text())
    return table


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

"""Issue 2 benchmark: F1 and wall time of ``s.vae_anomalies()`` with defaults.

On ``fe_l23_spectrum_image((64, 64), shift=1.0, fraction=0.02)`` over three
seeds, beside ``pca_anomalies(3)``. Writes ``benchmarks/results/core_f1.md``.

Run: ``python benchmarks/core_f1.py``
"""

import argparse
import os
import platform
import time
from pathlib import Path

import hyperspy.api as hs
import numpy as np
import torch

import hyperspy_vae
from hyperspy_vae.demo import f1_score

RESULTS = Path(__file__).parent / "results"


def run(seeds):
    hs.preferences.General.show_progressbar = False
    rows = []
    for seed in seeds:
        s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
            (64, 64), shift=1.0, fraction=0.02, random_state=seed
        )
        start = time.perf_counter()
        amap = s.vae_anomalies(random_state=seed, print_info=False)
        vae_seconds = time.perf_counter() - start
        start = time.perf_counter()
        pca = s.pca_anomalies(output_dimension=3, print_info=False)
        pca_seconds = time.perf_counter() - start
        row = dict(
            seed=seed,
            n_anomalous=int(truth.anomalous.sum()),
            vae_f1=f1_score(amap.get_mask().data, truth.anomalous),
            vae_flagged=amap.n_anomalous,
            vae_seconds=vae_seconds,
            pca_f1=f1_score(pca.get_mask().data, truth.anomalous),
            pca_seconds=pca_seconds,
        )
        print(row, flush=True)
        rows.append(row)
    return rows


def write(rows, path):
    lines = [
        "# Core benchmark (issue 2)",
        "",
        "`fe_l23_spectrum_image((64, 64), shift=1.0, fraction=0.02)` (clusters, dose 1, "
        "320 channels), `s.vae_anomalies()` with default settings and automatic "
        "threshold (no labels), beside `s.pca_anomalies(3)` scored the same way.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU "
        f"cores, torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "",
        "| seed | anomalous | VAE F1 | VAE flagged | VAE time (s) | PCA-3 F1 | PCA time (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['n_anomalous']} | {r['vae_f1']:.3f} | "
            f"{r['vae_flagged']} | {r['vae_seconds']:.1f} | {r['pca_f1']:.3f} | "
            f"{r['pca_seconds']:.1f} |"
        )
    lines += [
        "",
        f"Mean VAE F1 {np.mean([r['vae_f1'] for r in rows]):.3f}, worst "
        f"{min(r['vae_f1'] for r in rows):.3f}; slowest VAE run "
        f"{max(r['vae_seconds'] for r in rows):.1f} s.",
        "",
        "Command: `python benchmarks/core_f1.py`",
    ]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    write(run(args.seeds), RESULTS / "core_f1.md")

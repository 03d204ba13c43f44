"""Issue 3 benchmark: the study's map size, and false alarms on a clean cube.

* A 196 x 196 map (38,416 pixels, the published study's size) with a 1 eV
  edge shift in 2 % of the pixels: misclassified pixels of ``vae_anomalies()``
  at its automatic threshold, no labels (the study reports six, with labels).
* Cubes with no anomaly at all (normal variation only: thickness, Fe content,
  background slope, +-0.05 eV energy drift): false-positive rate at the
  default threshold.

Writes ``benchmarks/results/study_size.md``.

Run: ``python benchmarks/study_size.py``
"""

import argparse
import time
from pathlib import Path

import hyperspy.api as hs
import numpy as np

import hyperspy_vae
from hyperspy_vae.demo import f1_score

RESULTS = Path(__file__).parent / "results"


def run(size, seeds, clean_seeds, dose_values):
    hs.preferences.General.show_progressbar = False
    lines = [
        "# Study-size map and clean cubes (issue 3)",
        "",
        f"## {size} x {size} map, 1 eV shift, 2 % anomalous (clusters), no labels",
        "",
        "| seed | anomalous | flagged | misclassified | F1 | time (s) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for seed in seeds:
        s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
            (size, size), shift=1.0, fraction=0.02, random_state=seed
        )
        start = time.perf_counter()
        amap = s.vae_anomalies(random_state=seed, print_info=False)
        seconds = time.perf_counter() - start
        flags = amap.data > amap.threshold
        row = (
            f"| {seed} | {truth.anomalous.sum()} | {flags.sum()} | "
            f"{np.sum(flags != truth.anomalous)} | "
            f"{f1_score(flags, truth.anomalous):.4f} | {seconds:.1f} |"
        )
        print(row, flush=True)
        lines.append(row)
    lines += [
        "",
        "## No anomalies: false-positive rate at the default threshold",
        "",
        "| seed | dose | pixels | flagged | false-positive rate |",
        "|---:|---:|---:|---:|---:|",
    ]
    for dose in dose_values:
        for seed in clean_seeds:
            s, _ = hyperspy_vae.data.fe_l23_spectrum_image(
                (64, 64), fraction=0.0, dose=dose, random_state=seed
            )
            amap = s.vae_anomalies(random_state=seed, print_info=False)
            flagged = amap.n_anomalous
            row = (
                f"| {seed} | {dose:g} | {amap.data.size} | {flagged} | "
                f"{flagged / amap.data.size:.4%} |"
            )
            print(row, flush=True)
            lines.append(row)
    lines += ["", "Command: `python benchmarks/study_size.py`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=196)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--clean-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--doses", type=float, nargs="+", default=[1.0, 0.25])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    text = run(args.size, args.seeds, args.clean_seeds, args.doses)
    (RESULTS / "study_size.md").write_text(text)
    print(text)

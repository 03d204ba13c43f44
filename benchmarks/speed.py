"""Issue 4 benchmark: wall time and peak memory of ``vae_anomalies`` against PCA.

For each cube size, a synthetic Fe L2,3 spectrum image (1 eV shift, 2 %
anomalous pixels, dispersion chosen so the spectrum spans the same 80 eV
window whatever its length) is written to an ``.hspy`` file. Then, each in a
fresh Python process that loads it (float32) and has hyperspy, exspy,
hyperspy_vae and torch imported beforehand:

* ``s.vae_anomalies()`` with default settings;
* ``s.decomposition(normalize_poissonian_noise=True)``, HyperSpy's default
  PCA (SVD).

Each process reports the wall time of the call, its peak resident memory
(``VmHWM``) and its resident memory before the call. The table gives the
ratio VAE / PCA per size, the F1 of the VAE map at its automatic threshold,
and the exponent of a power-law fit of time against pixels x channels.
Writes ``benchmarks/results/speed.md`` (and ``.json``).

Run: ``python benchmarks/speed.py`` (all sizes, about 15 minutes on 2 cores)
or ``python benchmarks/speed.py --sizes 64x64x320 128x128x320``.
Add ``--device cuda`` on a machine with a GPU (then only the VAE runs on it).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from process_memory import peak_resident_bytes, resident_bytes

RESULTS = Path(__file__).parent / "results"
SIZES = ["64x64x320", "128x128x320", "128x128x1312", "192x192x1312", "256x256x2048"]
#: Energy window of every cube (eV), whatever its number of channels.
WINDOW = 80.0


def _parse(size):
    rows, cols, channels = (int(v) for v in size.split("x"))
    return rows, cols, channels


def make_cube(size, folder):
    """Write the synthetic cube of ``size`` and its truth; return the paths."""
    import hyperspy_vae

    rows, cols, channels = _parse(size)
    path = Path(folder) / f"cube_{size}.hspy"
    truth_path = Path(folder) / f"truth_{size}.npy"
    if not path.exists():
        s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
            (rows, cols),
            shift=1.0,
            fraction=0.02,
            n_channels=channels,
            dispersion=WINDOW / channels,
            random_state=0,
        )
        s.save(path, overwrite=True)
        np.save(truth_path, truth.anomalous)
        del s, truth
    return path, truth_path


def worker(path, truth_path, method, device):
    """Time one call in this (fresh) process; print a JSON line."""
    import hyperspy.api as hs
    import torch  # noqa: F401  (imported before timing, as in a session)

    import hyperspy_vae
    from hyperspy_vae.demo import f1_score

    hs.preferences.General.show_progressbar = False
    s = hs.load(path)
    truth = np.load(truth_path)
    before = resident_bytes()
    start = time.perf_counter()
    f1 = None
    if method == "vae":
        amap = s.vae_anomalies(random_state=0, device=device, print_info=False)
        seconds = time.perf_counter() - start
        f1 = f1_score(amap.data > amap.threshold, truth)
        steps = [fit["step"][-1] for fit in s.vae_results.history["fits"]]
    else:
        s.decomposition(normalize_poissonian_noise=True, print_info=False)
        seconds = time.perf_counter() - start
        steps = None
    peak = peak_resident_bytes()
    model_flops = None
    if method == "vae" and device.startswith("cuda"):
        model_flops = _model_flops(s.vae_results, int(np.prod(truth.shape)), steps)
    print(
        json.dumps(
            dict(
                seconds=seconds,
                peak_bytes=peak,
                before_bytes=before,
                f1=f1,
                steps=steps,
                model_flops=model_flops,
                cube_bytes=int(np.prod(s.data.shape)) * 4,
                hyperspy_vae=hyperspy_vae.__version__,
            )
        )
    )


def _model_flops(results, n_pixels, steps):
    """Approximate floating-point operations of the network in one run.

    Training steps (forward and backward of a batch) plus the inference
    passes: every pixel encoded twice and reconstructed once, the first
    fit's pixels reconstructed once more and two samples of 4096 pixels for
    the residual statistics (encoder-only passes counted as full ones).
    """
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hyperspy_vae.nn.losses import multinomial_nll

    model = copy.deepcopy(results.model).cpu().train()
    settings = results.settings
    k = settings.patch_size
    patches = torch.rand(settings.batch_size, k, k, model.n_input_channels)
    counts = torch.rand(settings.batch_size, model.n_channels)
    with FlopCounterMode(display=False) as counter:
        logits, _, _ = model(patches)
        multinomial_nll(logits, counts).mean().backward()
    step_flops = counter.get_total_flops()
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(patches[:1], sample=False)
    pixel_flops = counter.get_total_flops()
    n_inferred = 2 * n_pixels + min(n_pixels, settings.max_train_pixels) + 2 * 4096
    return float(sum(steps) * step_flops + n_inferred * pixel_flops)


def measure(path, truth_path, method, device):
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(path), str(truth_path), method]
        + ["--device", device],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=SIZES)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-pca", action="store_true", help="time the VAE only")
    parser.add_argument("--name", default="speed", help="output file stem")
    parser.add_argument("--cache", default=None, help="folder for the cubes")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.device)
        return

    import torch

    folder = args.cache or tempfile.mkdtemp(prefix="hyperspy_vae_speed_")
    rows = []
    for size in args.sizes:
        path, truth_path = make_cube(size, folder)
        row = dict(size=size, vae=measure(path, truth_path, "vae", args.device))
        if not args.no_pca:
            row["pca"] = measure(path, truth_path, "pca", "cpu")
        rows.append(row)
        print(size, json.dumps(row), flush=True)

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    gib = 2**30
    lines = [
        "# Speed and memory (issue 4)",
        "",
        "`vae_anomalies()` (defaults) against `decomposition(normalize_poissonian_"
        "noise=True)` on synthetic Fe L2,3 cubes (1 eV shift, 2 % anomalous, "
        f"{WINDOW:g} eV window), each call in a fresh process on a loaded float32 "
        "cube. Peak: the process's peak resident memory (imports and the loaded "
        "cube included); limit: 2 x cube + 1 GiB.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch "
        f"{torch.__version__}, device {args.device}.",
        "",
        "| size | cube (GiB) | VAE (s) | PCA (s) | VAE / PCA | VAE peak (GiB) | "
        "limit (GiB) | PCA peak (GiB) | VAE F1 | steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        vae, pca = row["vae"], row.get("pca")
        cube = vae["cube_bytes"]
        ratio = f"{vae['seconds'] / pca['seconds']:.2f}" if pca else "-"
        lines.append(
            f"| {row['size']} | {cube / gib:.2f} | {vae['seconds']:.1f} | "
            f"{pca['seconds'] if pca else float('nan'):.1f} | {ratio} | "
            f"{vae['peak_bytes'] / gib:.2f} | {(2 * cube + gib) / gib:.2f} | "
            f"{pca['peak_bytes'] / gib if pca else float('nan'):.2f} | "
            f"{vae['f1']:.3f} | {vae['steps']} |"
        )
    gpu_rows = [r for r in rows if r["vae"].get("model_flops")]
    if gpu_rows:
        lines += [
            "",
            "Network arithmetic on the GPU (training in bf16 autocast, inference "
            "in fp32), against the H200's measured bf16 dense peak of about "
            "790 TFLOP/s:",
            "",
            "| size | network FLOP | achieved TFLOP/s | fraction of bf16 peak |",
            "|---|---:|---:|---:|",
        ]
        for row in gpu_rows:
            flops, seconds = row["vae"]["model_flops"], row["vae"]["seconds"]
            lines.append(
                f"| {row['size']} | {flops:.3g} | {flops / seconds / 1e12:.3f} | "
                f"{flops / seconds / 790e12:.2e} |"
            )
    if len(rows) >= 2:
        work = [np.prod(_parse(r["size"])) for r in rows]
        for method in ("vae", "pca"):
            if all(method in r for r in rows):
                seconds = [r[method]["seconds"] for r in rows]
                exponent = np.polyfit(np.log(work), np.log(seconds), 1)[0]
                lines.append("")
                lines.append(
                    f"Fitted exponent of {method.upper()} time against pixels x "
                    f"channels: {exponent:.2f}"
                )
    lines += ["", f"Command: `python benchmarks/speed.py {' '.join(argv or [])}`"]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])

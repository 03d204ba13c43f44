"""Issue 4 benchmark: peak memory of ``vae_anomalies`` on a lazy cube.

Writes a 512 x 512 x 1024 float32 synthetic Fe L2,3 cube (1 GiB) to a
``.zspy`` file in chunks of 32 x 64 x 1024, tile by tile so that the cube is
never whole in memory (four 128-row tiles of the same periodic fields, so
they join without seams). Then, in a fresh process, it loads the file with
``hs.load(..., lazy=True)``, runs ``s.vae_anomalies()`` with defaults and
computes the map, and reports the wall time, the process's peak resident
memory (``VmHWM``) and its resident memory before the call (imports and the
lazy signal). The target: the call adds less than half the cube's size.
Writes ``benchmarks/results/lazy.md``.

Run: ``python benchmarks/lazy.py`` (about 10 minutes on 2 cores).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from process_memory import peak_resident_bytes, resident_bytes

RESULTS = Path(__file__).parent / "results"
TILE_ROWS = 128


def make_cube(path, rows, cols, channels):
    """Write the cube tile by tile to ``path`` (.zspy) and its truth."""
    import dask
    import dask.array as da
    import hyperspy.api as hs

    import hyperspy_vae

    def tile():
        s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
            (TILE_ROWS, cols),
            shift=1.0,
            fraction=0.02,
            n_channels=channels,
            dispersion=80.0 / channels,
            random_state=0,
        )
        return s.data, truth.anomalous

    data, anomalous = tile()
    n_tiles = rows // TILE_ROWS
    tiles = [da.from_array(data, chunks=(32, 64, channels))] * n_tiles
    lazy = hs.signals.Signal1D(da.concatenate(tiles, axis=0)).as_lazy()
    lazy.set_signal_type("EELS")
    axis = lazy.axes_manager.signal_axes[0]
    axis.scale, axis.offset, axis.units = 80.0 / channels, 670.0, "eV"
    with dask.config.set(scheduler="threads"):
        lazy.save(path, chunks=(32, 64, channels), overwrite=True)
    np.save(path.with_suffix(".npy"), np.concatenate([anomalous] * n_tiles))
    del data, tiles, lazy


def worker(path):
    import hyperspy.api as hs
    import torch  # noqa: F401  (imported before measuring, as in a session)

    import hyperspy_vae  # noqa: F401
    from hyperspy_vae.demo import f1_score

    hs.preferences.General.show_progressbar = False
    s = hs.load(path, lazy=True)
    before = resident_bytes()
    start = time.perf_counter()
    amap = s.vae_anomalies(random_state=0, print_info=False)
    scores = amap.data.compute()
    seconds = time.perf_counter() - start
    truth = np.load(Path(path).with_suffix(".npy"))
    print(
        json.dumps(
            dict(
                seconds=seconds,
                before_bytes=before,
                peak_bytes=peak_resident_bytes(),
                cube_bytes=int(np.prod(s.data.shape)) * 4,
                lazy_map=bool(amap._lazy),
                f1=f1_score(scores > amap.threshold, truth),
            )
        )
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 1024])
    parser.add_argument("--cache", default=None, help="folder for the cube")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return
    rows, cols, channels = args.shape
    folder = Path(args.cache or tempfile.mkdtemp(prefix="hyperspy_vae_lazy_"))
    path = folder / f"cube_{rows}x{cols}x{channels}.zspy"
    if not path.exists():
        make_cube(path, rows, cols, channels)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    gib = 2**30
    added = result["peak_bytes"] - result["before_bytes"]
    lines = [
        "# Lazy cube: memory of vae_anomalies (issue 4)",
        "",
        f"`hs.load(..., lazy=True)` of a {rows} x {cols} x {channels} float32 "
        f"`.zspy` cube (chunks 32 x 64 x {channels}), `s.vae_anomalies()` with "
        "defaults, map computed; fresh process, local threaded scheduler.",
        "",
        "| cube (GiB) | time (s) | RSS before (GiB) | peak RSS (GiB) | "
        "added by the call (GiB) | target: < half the cube (GiB) | lazy map | F1 |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
        f"| {result['cube_bytes'] / gib:.2f} | {result['seconds']:.1f} | "
        f"{result['before_bytes'] / gib:.2f} | {result['peak_bytes'] / gib:.2f} | "
        f"{added / gib:.2f} | {result['cube_bytes'] / 2 / gib:.2f} | "
        f"{result['lazy_map']} | {result['f1']:.3f} |",
        "",
        "Command: `" + " ".join(["python benchmarks/lazy.py", *(argv or [])]) + "`",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lazy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Demo on built-in synthetic data: anomaly map and VAE-vs-PCA comparison.

Run ``python -m hyperspy_vae.demo --out demo_output``.
"""

import argparse
import time
from pathlib import Path

import numpy as np

__all__ = ["f1_score", "run_demo", "main"]


def f1_score(flags, truth):
    """F1 score of boolean ``flags`` against boolean ``truth``.

    Returns
    -------
    float
    """
    flags, truth = np.asarray(flags, bool), np.asarray(truth, bool)
    denominator = flags.sum() + truth.sum()
    return float(2 * np.sum(flags & truth) / denominator) if denominator else 1.0


def run_demo(out="demo_output", random_state=0, shift=1.0, fraction=0.02):
    """Make a synthetic Fe L2,3 map, run the VAE and PCA, write the results.

    Parameters
    ----------
    out : str or pathlib.Path, default "demo_output"
        Folder for ``anomaly_map.hspy``, ``vae_vs_pca.png`` and
        ``vae_results.png``.
    random_state : int, default 0
        Seed of the data and of the VAE.
    shift : float, default 1.0
        Edge shift of the anomalous pixels in eV.
    fraction : float, default 0.02
        Fraction of anomalous pixels.

    Returns
    -------
    dict
        F1 of the VAE and of PCA (3 components), and the VAE's wall time.
    """
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    from . import data
    from .plot import compare

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s, truth = data.fe_l23_spectrum_image(
        (64, 64), shift=shift, fraction=fraction, random_state=random_state
    )
    start = time.perf_counter()
    amap = s.vae_anomalies(random_state=random_state)
    seconds = time.perf_counter() - start
    pca = s.pca_anomalies(output_dimension=3)
    amap.save(out / "anomaly_map.hspy", overwrite=True)
    result = {
        "vae_f1": f1_score(amap.get_mask().data, truth.anomalous),
        "pca3_f1": f1_score(pca.get_mask().data, truth.anomalous),
        "vae_seconds": seconds,
    }
    fig = compare(
        [amap, pca],
        truth=truth.anomalous,
        titles=[
            f"VAE (F1 {result['vae_f1']:.3f})",
            f"PCA, 3 (F1 {result['pca3_f1']:.3f})",
        ],
    )
    fig.suptitle(f"Fe L2,3 edge shifted by {shift} eV in {fraction:.0%} of pixels")
    fig.savefig(out / "vae_vs_pca.png", dpi=100)
    s.plot_vae_results().savefig(out / "vae_results.png", dpi=90)
    plt.close("all")
    print(
        f"VAE: F1 {result['vae_f1']:.3f} in {seconds:.1f} s | "
        f"PCA (3 components): F1 {result['pca3_f1']:.3f} | written to {out}/"
    )
    return result


def main(argv=None):
    """Command-line entry of the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    run_demo(args.out, args.random_state)


if __name__ == "__main__":
    main()

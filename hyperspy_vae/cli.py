"""The ``hyperspy-vae`` command, for batch scripts without a GUI.

``hyperspy-vae detect INPUT... --out DIR`` writes, for each input file that
RosettaSciIO reads (dm3, dm4, hspy, zspy, emd, ...), the anomaly map
(``<name>_anomaly_map.hspy``), a figure (``<name>_anomalies.png``) and a
JSON summary (``<name>_summary.json``), and prints one line per file. An
unreadable input is reported and skipped; the exit status is then 1.
``hyperspy-vae demo`` runs the synthetic demo.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "main_exit", "detect_file"]


def _pca_components(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--compare-pca takes comma-separated integers, not {text!r}"
        ) from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("--compare-pca needs positive integers")
    return values


def _parser():
    parser = argparse.ArgumentParser(
        prog="hyperspy-vae",
        description="Spectral anomaly detection in EELS spectrum images.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    detect = commands.add_parser(
        "detect", help="find anomalous pixels in spectrum-image files"
    )
    detect.add_argument("inputs", nargs="+", type=Path, help="files to analyse")
    detect.add_argument(
        "--signal-range",
        nargs=2,
        type=float,
        metavar=("START", "END"),
        help="energy window to analyse, in the axis units (eV)",
    )
    detect.add_argument(
        "--reference-mask",
        type=Path,
        help="a .npy boolean array, True on a clean reference region to train "
        "on (navigation_shape order, as HyperSpy's masks)",
    )
    detect.add_argument(
        "--threshold",
        default="f1",
        help="threshold rule: f1 (default), fdr, otsu or a number",
    )
    detect.add_argument("--fdr", type=float, default=0.05, help="false-discovery rate")
    detect.add_argument(
        "--compare-pca",
        type=_pca_components,
        default=[],
        help="also write PCA anomaly maps with these numbers of components, e.g. 3,4,5",
    )
    detect.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    detect.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="upper bound of training steps (default: the library's)",
    )
    detect.add_argument("--random-state", type=int, default=0)
    detect.add_argument("--out", type=Path, default=Path("."), help="output folder")
    detect.add_argument(
        "--overwrite", action="store_true", help="replace existing output files"
    )
    demo = commands.add_parser("demo", help="run the demo on synthetic data")
    demo.add_argument("--out", type=Path, default=Path("demo_output"))
    return parser


def _threshold(text):
    try:
        return float(text)
    except ValueError:
        return text


def detect_file(path, args):
    """Run the detection on one file and write its outputs.

    Parameters
    ----------
    path : pathlib.Path
        Input file.
    args : argparse.Namespace
        The ``detect`` command's options.

    Returns
    -------
    dict
        The summary written to JSON.
    """
    import hyperspy.api as hs
    import matplotlib.pyplot as plt

    from .plot import compare

    stem = args.out / path.stem
    outputs = {
        "map": stem.with_name(f"{path.stem}_anomaly_map.hspy"),
        "figure": stem.with_name(f"{path.stem}_anomalies.png"),
        "summary": stem.with_name(f"{path.stem}_summary.json"),
    }
    for k in args.compare_pca:
        outputs[f"pca{k}"] = stem.with_name(f"{path.stem}_pca{k}_anomaly_map.hspy")
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"output exists ({', '.join(existing)}); pass --overwrite to replace it"
        )
    signal = hs.load(path)
    if isinstance(signal, list):
        raise ValueError(f"{path} holds {len(signal)} signals; give one per file")
    navigation_mask = None
    if args.reference_mask is not None:
        reference = np.load(args.reference_mask, allow_pickle=False)
        navigation_mask = ~reference.astype(bool)
    amap = signal.vae_anomalies(
        navigation_mask=navigation_mask,
        signal_range=args.signal_range,
        threshold=_threshold(args.threshold),
        fdr=args.fdr,
        device=args.device,
        random_state=args.random_state,
        print_info=False,
        show_progressbar=False,
        **({} if args.max_steps is None else {"max_steps": args.max_steps}),
    )
    maps = [amap]
    for k in args.compare_pca:
        pca = signal.pca_anomalies(
            k,
            navigation_mask=navigation_mask,
            signal_range=args.signal_range,
            threshold=_threshold(args.threshold),
            fdr=args.fdr,
            print_info=False,
        )
        pca.save(outputs[f"pca{k}"], overwrite=args.overwrite)
        maps.append(pca)
    amap.save(outputs["map"], overwrite=args.overwrite)
    fig = compare(maps, titles=["VAE"] + [f"PCA, {k}" for k in args.compare_pca])
    fig.savefig(outputs["figure"], dpi=100)
    plt.close(fig)
    summary = {
        "input": str(path),
        "pixels": int(amap.data.size),
        "anomalous": amap.n_anomalous,
        "threshold": amap.threshold,
        "threshold_method": amap.metadata.Anomaly.threshold_method,
        "pca_anomalous": {
            str(k): m.n_anomalous
            for k, m in zip(args.compare_pca, maps[1:], strict=True)
        },
        "outputs": {k: str(v) for k, v in outputs.items()},
        "settings": signal.vae_results.settings.to_dict(),
        "random_state": signal.vae_results.random_state,
    }
    outputs["summary"].write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    """Entry point of the ``hyperspy-vae`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(args.out)
        return 0
    from hyperspy.defaults_parser import preferences
    from hyperspy.external.progressbar import progressbar

    stems = [path.stem for path in args.inputs]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        print(
            f"hyperspy-vae: inputs share the names {duplicates}, so their outputs "
            "would collide; run them into different --out folders.",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in progressbar(
        args.inputs, desc="Files", disable=not preferences.General.show_progressbar
    ):
        try:
            summary = detect_file(path, args)
        except Exception as err:  # report, go on with the other files
            failures += 1
            print(f"{path}: FAILED: {err}", file=sys.stderr)
            continue
        print(
            f"{path}: {summary['anomalous']} anomalous of {summary['pixels']} pixels "
            f"(threshold {summary['threshold']:.2f}, {summary['threshold_method']})"
        )
    return 1 if failures else 0


def main_exit():
    """Console-script wrapper: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()

"""Issue 11 benchmark: every kind of chemical change, against the limit and the baselines.

A frozen grid of synthetic Fe L2,3 spectrum images (``hyperspy_vae.data``,
64 x 64, 0.25 eV per channel): for each kind of anomaly in :data:`KINDS`
(an edge shift, metallic iron's pre-peak, a lowered L3/L2 ratio, broadened
white lines, a fluoride's F K edge, part of the Fe edge missing, and one
edge's shift among two), two strengths, both layouts (clusters, single
pixels), fractions 0.5 % and 5 % and doses 1 and 0.25. Per map:

* the limit: best-threshold F1 of the per-pixel likelihood ratio with every
  nuisance known (:meth:`~hyperspy_vae.data.SyntheticTruth.likelihood_ratio`,
  under the same model as the data);
* ``vae_anomalies()`` (defaults, detector seed 0): F1 at its automatic
  threshold and at the best one;
* ``pca_anomalies(k)`` for k = 3, 4, 5: the same, its scores calibrated as
  the VAE's;
* HyperSpy's robust PCA (``decomposition(algorithm="RPCA")``, 3 components,
  Poisson-normalised): each pixel's chi-square from its reconstruction;
* RX (Reed-Xiaoli), the hyperspectral standard: the Mahalanobis distance of
  each pixel's 10 leading Poisson-normalised PCA scores from a robust
  (minimum covariance determinant, scikit-learn) estimate of the whole
  map's, and its local form: from the mean and covariance of a
  :data:`LOCAL_OUTER` x :data:`LOCAL_OUTER` window less a
  :data:`LOCAL_GUARD` x :data:`LOCAL_GUARD` guard around the pixel.

The baselines have no calibrated threshold: their best-threshold F1 is
what they could reach with labels. The grid was fixed before any tuning;
seeds :data:`TUNING_SEEDS` are for tuning, :data:`HELD_OUT_SEEDS` for
reporting only.

Run ``python benchmarks/kinds.py --seeds 0 1`` (about an hour per seed on
two cores); ``--kinds`` picks kinds, ``--merge a.json b.json --name n``
puts runs split over processes together. Results go to
``benchmarks/results/kinds*.{json,md}`` and one figure per kind
(``kinds*_<kind>.png``: F1 against strength, one line per method, the limit
dashed). Needs scikit-learn (``pip install scikit-learn``) for RX.
"""

import argparse
import json
import time
from pathlib import Path

import hyperspy.api as hs
import numpy as np
from realistic import best_f1
from scipy import ndimage

import hyperspy_vae
from hyperspy_vae.demo import f1_score

RESULTS = Path(__file__).parent / "results"
TUNING_SEEDS = (0, 1)
HELD_OUT_SEEDS = tuple(range(2000, 2010))
FRACTIONS = (0.005, 0.05)
DOSES = (1.0, 0.25)
LAYOUTS = ("clusters", "random")
PCA_DIMENSIONS = (3, 4, 5)
#: Leading Poisson-normalised PCA scores RX works on.
RX_COMPONENTS = 10
#: Local RX: the window (pixels a side) whose mean and covariance a pixel is
#: compared with, less the guard around it (which a cluster may fill).
LOCAL_OUTER = 15
LOCAL_GUARD = 5

_TWO_EDGES = dict(edges=("O_K", "Fe_L23"), offset=500.0, n_channels=1024)

#: The frozen grid: per kind, the generator's ``anomaly``, its two strengths
#: (``shift`` in eV for the shifts, else ``strength``) and extra arguments.
#: Strengths bracket where the limit climbs from about 0.7 to 1 at dose 1.
KINDS = {
    "shift": dict(anomaly="shift", strengths=(0.25, 0.5)),
    "pre_peak": dict(anomaly="pre_peak", strengths=(0.2, 0.4)),
    "l3_l2_ratio": dict(anomaly="l3_l2_ratio", strengths=(1 / 1.4, 1 / 1.8)),
    "broadening": dict(anomaly="broadening", strengths=(1.2, 1.4)),
    "contaminant_edge": dict(anomaly="contaminant_edge", strengths=(0.05, 0.1)),
    "missing_edge": dict(anomaly="missing_edge", strengths=(0.1, 1.0)),
    "shift_one_of_two_edges": dict(
        anomaly="shift", strengths=(0.25, 0.5), extra=_TWO_EDGES
    ),
}
METHODS = ("vae", "pca3", "pca4", "pca5", "rpca", "rx", "local_rx")


def make_map(kind, strength, layout, fraction, dose, seed):
    """The spectrum image and truth of one grid point."""
    spec = KINDS[kind]
    size = (
        dict(shift=strength)
        if spec["anomaly"] == "shift"
        else dict(strength=strength, shift=0.0)
    )
    return hyperspy_vae.data.fe_l23_spectrum_image(
        (64, 64),
        fraction=fraction,
        layout=layout,
        dose=dose,
        anomaly=spec["anomaly"],
        random_state=seed,
        **size,
        **spec.get("extra", {}),
    )


def point_fields(kind, strength, layout, fraction, dose, seed):
    """A row's grid point: what names the map."""
    return dict(
        kind=kind,
        strength=float(strength),
        layout=layout,
        fraction=fraction,
        dose=dose,
        seed=seed,
    )


def _poisson_normalised_scores(s, n_components):
    """Leading scores of HyperSpy's Poisson-normalised PCA (a copy of ``s``)."""
    c = s.deepcopy()
    c.decomposition(normalize_poissonian_noise=True, print_info=False)
    loadings = np.asarray(c.learning_results.loadings)[:, :n_components]
    return loadings.reshape(*s.data.shape[:-1], n_components)


def rx_scores(scores):
    """Global RX: robust Mahalanobis distance of each pixel's scores."""
    from sklearn.covariance import MinCovDet

    flat = scores.reshape(-1, scores.shape[-1])
    fitted = MinCovDet(random_state=0).fit(flat)
    return fitted.mahalanobis(flat).reshape(scores.shape[:-1])


def local_rx_scores(scores, outer=LOCAL_OUTER, guard=LOCAL_GUARD):
    """Local RX: Mahalanobis distance from the window's mean and covariance.

    The window is ``outer`` x ``outer`` pixels centred on the pixel, less the
    ``guard`` x ``guard`` pixels around it; mirrored at the map's edges.
    """
    k = scores.shape[-1]

    def ring_sum(values):
        big = ndimage.uniform_filter(values, size=outer, mode="reflect") * outer**2
        small = ndimage.uniform_filter(values, size=guard, mode="reflect") * guard**2
        return big - small

    n = outer**2 - guard**2
    x = scores.astype(np.float64)
    mean = np.stack([ring_sum(x[..., i]) for i in range(k)], axis=-1) / n
    second = np.empty((*x.shape[:-1], k, k))
    for i in range(k):
        for j in range(i, k):
            second[..., i, j] = second[..., j, i] = ring_sum(x[..., i] * x[..., j]) / n
    covariance = second - mean[..., :, None] * mean[..., None, :]
    covariance += (
        1e-9 * np.trace(covariance, axis1=-2, axis2=-1)[..., None, None] * (np.eye(k))
    )
    d = (x - mean)[..., None]
    return (d[..., 0, :] * np.linalg.solve(covariance, d)[..., 0]).sum(-1)


def rpca_scores(s, dimension=3):
    """Chi-square of each pixel from HyperSpy's robust PCA reconstruction."""
    c = s.deepcopy()
    c.decomposition(
        algorithm="RPCA",
        output_dimension=dimension,
        normalize_poissonian_noise=True,
        print_info=False,
    )
    model = np.asarray(c.get_decomposition_model(dimension).data, dtype=np.float64)
    y = np.asarray(s.data, dtype=np.float64)
    return np.sum((y - model) ** 2 / np.maximum(model, 1.0), axis=-1)


def point_rows(kind, strength, layout, fraction, dose, seed):
    """Every method's F1 on one grid point; one row."""
    s, truth = make_map(kind, strength, layout, fraction, dose, seed)
    y = truth.anomalous
    row = dict(
        point_fields(kind, strength, layout, fraction, dose, seed),
        n_anomalous=int(y.sum()),
        limit=best_f1(truth.likelihood_ratio(s.data), y),
    )
    start = time.perf_counter()
    amap = s.vae_anomalies(random_state=0, print_info=False)
    row["vae_seconds"] = time.perf_counter() - start
    scores = np.asarray(amap.data, dtype=np.float64)
    row["vae_f1"] = f1_score(scores > amap.threshold, y)
    row["vae_best_f1"] = best_f1(scores, y)
    for k in PCA_DIMENSIONS:
        pmap = s.pca_anomalies(k, print_info=False)
        p = np.asarray(pmap.data, dtype=np.float64)
        row[f"pca{k}_f1"] = f1_score(p > pmap.threshold, y)
        row[f"pca{k}_best_f1"] = best_f1(p, y)
    row["rpca_best_f1"] = best_f1(rpca_scores(s), y)
    leading = _poisson_normalised_scores(s, RX_COMPONENTS)
    row["rx_best_f1"] = best_f1(rx_scores(leading), y)
    row["local_rx_best_f1"] = best_f1(local_rx_scores(leading), y)
    print(json.dumps(row), flush=True)
    return row


def grid(kinds):
    """Every grid point of ``kinds``: (kind, strength, layout, fraction, dose)."""
    for kind in kinds:
        for strength in KINDS[kind]["strengths"]:
            for dose in DOSES:
                for fraction in FRACTIONS:
                    for layout in LAYOUTS:
                        yield kind, strength, layout, fraction, dose


def _mean(rows, key):
    values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def _strength_label(kind, strength):
    if KINDS[kind]["anomaly"] == "shift":
        return f"{strength:g} eV"
    if kind == "l3_l2_ratio":
        return f"1/{1 / strength:.2g}"
    return f"{strength:g}"


def write_markdown(rows, path, command):
    """One line per kind, strength, dose and fraction (layouts and seeds averaged)."""
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        "# Every kind of chemical change (issue 11)",
        "",
        f"Seeds {', '.join(map(str, seeds))}; 64 x 64 Fe L2,3 maps, 0.25 eV per "
        "channel; each line the mean over both layouts (clusters, single "
        "pixels) and the seeds. Limit: best-threshold F1 of the per-pixel "
        "likelihood ratio with every nuisance known. VAE and PCA-k: F1 at "
        "their automatic threshold (best threshold in brackets); robust PCA, "
        "RX and local RX: best-threshold F1 (no calibrated threshold). "
        "Defaults, no labels.",
        "",
        "| kind | strength | dose | fraction | limit | VAE | limit - VAE | "
        "PCA-3 | PCA-4 | PCA-5 | robust PCA | RX | local RX | best baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        for strength in KINDS[kind]["strengths"]:
            for dose in DOSES:
                for fraction in FRACTIONS:
                    group = [
                        r
                        for r in rows
                        if r["kind"] == kind
                        and np.isclose(r["strength"], strength)
                        and r["dose"] == dose
                        and r["fraction"] == fraction
                    ]
                    if not group:
                        continue
                    m = {
                        key: _mean(group, key)
                        for key, value in group[0].items()
                        if isinstance(value, (int, float))
                    }
                    baselines = [
                        m.get(f"{b}_best_f1", np.nan)
                        for b in ("pca3", "pca4", "pca5", "rpca", "rx", "local_rx")
                    ]
                    pca = [
                        f"{m[f'pca{k}_f1']:.2f} ({m[f'pca{k}_best_f1']:.2f})"
                        for k in PCA_DIMENSIONS
                    ]
                    lines.append(
                        f"| {kind} | {_strength_label(kind, strength)} | {dose:g} | "
                        f"{fraction:.1%} | {m['limit']:.2f} | **{m['vae_f1']:.2f}** "
                        f"({m['vae_best_f1']:.2f}) | {m['limit'] - m['vae_f1']:.2f} | "
                        + " | ".join(pca)
                        + f" | {m['rpca_best_f1']:.2f} | {m['rx_best_f1']:.2f} | "
                        f"{m['local_rx_best_f1']:.2f} | {np.nanmax(baselines):.2f} |"
                    )
    lines += ["", f"Command: `{command}`", ""]
    path.write_text("\n".join(lines))


def plot_kinds(rows, stem):
    """Per kind, F1 against strength: one line per method, the limit dashed."""
    import matplotlib.pyplot as plt

    styles = {
        "vae_f1": ("VAE (automatic)", "C3"),
        "vae_best_f1": ("VAE (best)", "C1"),
        "pca3_best_f1": ("PCA-3 (best)", "C0"),
        "pca5_best_f1": ("PCA-5 (best)", "C9"),
        "rpca_best_f1": ("robust PCA (best)", "C4"),
        "rx_best_f1": ("RX (best)", "C2"),
        "local_rx_best_f1": ("local RX (best)", "C8"),
    }
    paths = []
    for kind in KINDS:
        members = [r for r in rows if r["kind"] == kind]
        if not members:
            continue
        fig, axes = plt.subplots(
            len(DOSES),
            len(FRACTIONS),
            figsize=(9, 7),
            sharex=True,
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        strengths = KINDS[kind]["strengths"]
        for i, dose in enumerate(DOSES):
            for j, fraction in enumerate(FRACTIONS):
                ax = axes[i, j]
                group = [
                    r
                    for r in members
                    if r["dose"] == dose and r["fraction"] == fraction
                ]
                x = np.arange(len(strengths))

                def at(key, group=group, strengths=strengths):
                    return [
                        _mean([r for r in group if np.isclose(r["strength"], st)], key)
                        for st in strengths
                    ]

                ax.plot(x, at("limit"), "k--", label="limit")
                for key, (label, colour) in styles.items():
                    ax.plot(x, at(key), "o-", color=colour, label=label)
                ax.set_xticks(x, [_strength_label(kind, st) for st in strengths])
                ax.set_title(f"dose {dose:g}, {fraction:.1%} anomalous")
                ax.set_ylim(-0.02, 1.02)
                if j == 0:
                    ax.set_ylabel("F1")
        axes[-1, -1].legend(fontsize=7, loc="lower right")
        fig.suptitle(f"{kind}: F1 against strength")
        path = Path(f"{stem}_{kind}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def write_results(rows, name, command):
    """The JSON rows, the markdown table and the figures."""
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / name
    Path(f"{stem}.json").write_text(json.dumps(rows, indent=1))
    write_markdown(rows, Path(f"{stem}.md"), command)
    plot_kinds(rows, stem)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    parser.add_argument("--name", default="kinds", help="output file stem")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="write the table and figures of these runs instead of running",
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/kinds.py " + " ".join(argv or [])
    if args.merge:
        rows = [
            row for path in args.merge for row in json.loads(Path(path).read_text())
        ]
        write_results(rows, args.name, command.strip())
        return rows
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}")
    hs.preferences.General.show_progressbar = False
    rows = [
        point_rows(*point, seed) for point in grid(args.kinds) for seed in args.seeds
    ]
    write_results(rows, args.name, command.strip())
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

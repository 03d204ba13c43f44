"""Where the F1 goes between the limit and the detector (issue 10).

For maps of the realistic family (``benchmarks/realistic.py``) with 0.5 eV
shifts, the best-threshold F1 of a chain of rankings, each knowing one thing
less than the one before:

1. ``limit``: the likelihood ratio of the shift with every nuisance known;
2. ``true_template``: each pixel's energy offset fitted against its own true
   normal spectrum (the Gauss-Newton fit the detector uses), ranked by its
   size over its Fisher error: the shift's information in the offset alone,
   the reference known;
3. ``true_template_row``: the same offsets against the Theil-Sen line
   through their row neighbours (the detector's reference line), over the
   error of both: what estimating the reference from the neighbours costs;
4. ``model_offsets``: the detector's offsets (first fit) against the true
   drift, less each phase's median, over the same Fisher error: what the
   learned reconstruction costs the offsets;
5. ``shift_test``: the detector's shift p-values alone (references, the
   candidate choice, standardisation, several fits);
6. ``combined``: the anomaly score (the shift test with the one-edge shift
   and local peak tests, weighted Bonferroni): what testing for other kinds
   of change costs a shift;
7. ``automatic``: F1 at the automatic threshold (the calibration's cost).

The differences say which part of the pipeline holds a case back.
"""

import argparse
import json
from pathlib import Path

import hyperspy.api as hs
import numpy as np
import realistic
import torch

from hyperspy_vae import scoring
from hyperspy_vae.cube import bin_energy
from hyperspy_vae.nn.alignment import fit_offsets

RESULTS = Path(__file__).parent / "results"

#: The 64 x 64 cases whose F1 was more than 0.10 below the limit on held-out
#: seeds (``realistic_heldout.md``, stop 34); the slow ``combined_sample``
#: and the small maps (one or two anomalous pixels) are left to their own runs.
FAILING = (
    "dose_0.1_read_5",
    "excess_noise_4",
    "excess_noise_20_dose_5",
    "plural_scattering",
    "dispersion_1eV",
    "second_phase_40pc",
    "dose_0.1",
)

#: The chain of rankings, from the most to the least known.
STAGES = (
    "limit",
    "true_template",
    "true_template_row",
    "model_offsets",
    "shift_test",
    "combined",
    "automatic",
)


def _effective(values, results):
    """Readings (or their expectation) as the detector's effective counts."""
    flat = np.asarray(values, dtype=np.float64)[..., results.channel_mask]
    binned = bin_energy(flat.reshape(-1, flat.shape[-1]), results.energy_bin)
    return results.noise.effective_counts(binned).astype(np.float64)


def true_template_offsets(s, truth, results):
    """Each pixel's offset against its own true normal spectrum, and its error.

    Both in channels; the error is the Fisher one, ``1 / sqrt(sum t**2 / m)``
    for the expected effective counts ``m`` and their derivative ``t``.
    """
    counts = _effective(s.data, results)
    template = _effective(truth.expected_normal, results)
    offset, expected, tangent = fit_offsets(
        torch.from_numpy(np.log(np.maximum(template, 1e-12))),
        torch.from_numpy(counts),
        torch.zeros(len(counts), dtype=torch.float64),
        n_iter=8,
    )
    information = (tangent**2 / expected.clamp_min(1e-12)).sum(-1)
    return offset.numpy(), 1.0 / np.sqrt(information.numpy())


def _against_row_line(offset, error, map_shape):
    """Offsets less the detector's reference line through their row neighbours,
    over the error of both."""
    window = scoring.run_window(map_shape[-1])
    line, line_error, _ = scoring._row_lines(
        offset, error, (1, *map_shape[-2:]), window
    )
    known = np.isfinite(line)
    line = np.where(known, line, np.median(offset))
    line_error = np.where(known, line_error, 0.0)
    return (offset - line) / np.sqrt(error**2 + line_error**2)


def _less_phase_medians(values, anomalous, phase):
    """Values less the median of the normal pixels of their phase."""
    out = np.array(values, dtype=np.float64)
    for level in np.unique(phase):
        part = phase == level
        out[part] -= np.median(out[part & ~anomalous])
    return out


def gap_row(case, seed):
    """Every stage's best-threshold F1 on one anomalous map."""
    s, truth = realistic.make_map(case, seed, True)
    y = np.ravel(truth.anomalous)
    map_shape = truth.anomalous.shape if truth.anomalous.ndim == 2 else (1, y.size)
    amap = s.vae_anomalies(random_state=0, print_info=False)
    results = s.vae_results
    score = np.ravel(np.asarray(amap.data, dtype=np.float64))
    flags = score > amap.threshold
    own, error = true_template_offsets(s, truth, results)
    channel = s.axes_manager.signal_axes[0].scale * results.energy_bin
    drift = np.ravel(truth.drift) / channel
    phase = np.zeros(y.size, int) if truth.phase is None else np.ravel(truth.phase)
    offsets = np.ravel(results.offset)
    # The sign convention of the offsets against the drift: whichever leaves
    # the normal pixels closer together.
    against = [
        _less_phase_medians(offsets - sign * drift, y, phase) for sign in (1, -1)
    ]
    spread = [np.median(np.abs(a[~y])) for a in against]
    model = against[int(np.argmin(spread))]
    row = dict(
        case=case,
        seed=seed,
        limit=realistic.best_f1(truth.likelihood_ratio(s.data), y),
        true_template=realistic.best_f1(np.abs(own - np.median(own[~y])) / error, y),
        true_template_row=realistic.best_f1(
            np.abs(_against_row_line(own, error, map_shape)), y
        ),
        model_offsets=realistic.best_f1(np.abs(model) / error, y),
        shift_test=realistic.best_f1(-np.log10(np.ravel(results.p_values["shift"])), y),
        combined=realistic.best_f1(score, y),
        automatic=realistic.f1_score(flags, y),
        true_template_spread=float(
            1.4826 * np.median(np.abs(own[~y] - np.median(own[~y])))
        ),
        model_offsets_spread=float(1.4826 * np.median(np.abs(model[~y]))),
    )
    print(json.dumps(row), flush=True)
    return row


def write_markdown(rows, path, command):
    """Means over seeds per case, and the stage-to-stage losses."""
    cases = list(dict.fromkeys(row["case"] for row in rows))
    seeds = sorted({row["seed"] for row in rows})
    head = (
        "| case | "
        + " | ".join(STAGES)
        + " | offset spread: true template, model (channels) |"
    )
    lines = [
        "# Where the F1 goes between the limit and the detector (issue 10)",
        "",
        f"Seeds {', '.join(map(str, seeds))}; maps with 0.5 eV shifts in 2 % of the "
        "pixels; best-threshold F1 of each stage (means over seeds), `automatic` at "
        "the detector's threshold. See the docstring of `benchmarks/gap.py` for "
        "what each stage knows.",
        "",
        head,
        "|" + "---|" * (len(STAGES) + 2),
    ]
    for case in cases:
        mine = [row for row in rows if row["case"] == case]
        means = [np.mean([row[stage] for row in mine]) for stage in STAGES]
        spreads = [
            np.mean([row[key] for row in mine])
            for key in ("true_template_spread", "model_offsets_spread")
        ]
        lines.append(
            f"| {case} | "
            + " | ".join(f"{value:.3f}" for value in means)
            + f" | {spreads[0]:.3f}, {spreads[1]:.3f} |"
        )
    lines += ["", f"Command: `{command}`", ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(FAILING))
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(realistic.TUNING_SEEDS)
    )
    parser.add_argument("--name", default="gap")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON")
    args = parser.parse_args(argv)
    command = "python benchmarks/gap.py " + " ".join(argv or [])
    if args.merge:
        rows = [
            row for path in args.merge for row in json.loads(Path(path).read_text())
        ]
    else:
        unknown = set(args.cases) - set(realistic.CASES)
        if unknown:
            parser.error(f"unknown cases {sorted(unknown)}")
        hs.preferences.General.show_progressbar = False
        rows = [gap_row(case, seed) for case in args.cases for seed in args.seeds]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows))
    write_markdown(rows, RESULTS / f"{args.name}.md", command.strip())
    print((RESULTS / f"{args.name}.md").read_text())
    return rows


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])

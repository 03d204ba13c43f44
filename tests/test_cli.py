import json

import numpy as np

from hyperspy_vae.cli import main
from hyperspy_vae.data import fe_l23_spectrum_image

from .conftest import SMALL


def test_detect_writes_outputs_and_reports_bad_files(tmp_path, capsys):
    s, truth = fe_l23_spectrum_image(
        (16, 16), shift=2.0, fraction=0.05, random_state=0, **SMALL
    )
    good = tmp_path / "map.hspy"
    s.save(good)
    bad = tmp_path / "broken.hspy"
    bad.write_text("not a spectrum image")
    out = tmp_path / "out"
    fast = ["--max-steps", "60"]
    status = main(
        ["detect", str(bad), str(good), "--out", str(out), "--compare-pca", "3", *fast]
    )
    assert status == 1
    captured = capsys.readouterr()
    assert "broken.hspy: FAILED" in captured.err
    assert "map.hspy:" in captured.out and "anomalous of 256 pixels" in captured.out
    for name in (
        "map_anomaly_map.hspy",
        "map_anomalies.png",
        "map_summary.json",
        "map_pca3_anomaly_map.hspy",
    ):
        assert (out / name).exists()
    summary = json.loads((out / "map_summary.json").read_text())
    assert summary["pixels"] == 256 and summary["anomalous"] >= 1

    # No overwriting without --overwrite; with it, the file is replaced.
    before = (out / "map_summary.json").stat().st_mtime_ns
    assert main(["detect", str(good), "--out", str(out), *fast]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "map_summary.json").stat().st_mtime_ns == before
    assert main(["detect", str(good), "--out", str(out), "--overwrite", *fast]) == 0


def test_reference_mask_file(tmp_path):
    s, _ = fe_l23_spectrum_image((16, 16), random_state=1, **SMALL)
    s.save(tmp_path / "map.hspy")
    reference = np.zeros((16, 16), dtype=bool)
    reference[:, :8] = True
    np.save(tmp_path / "reference.npy", reference)
    status = main(
        [
            "detect",
            str(tmp_path / "map.hspy"),
            "--out",
            str(tmp_path),
            "--reference-mask",
            str(tmp_path / "reference.npy"),
            "--threshold",
            "fdr",
            "--max-steps",
            "60",
        ]
    )
    assert status == 0
    summary = json.loads((tmp_path / "map_summary.json").read_text())
    assert summary["threshold_method"] == "fdr"

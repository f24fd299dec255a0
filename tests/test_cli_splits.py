"""`spcl_nnunet splits`: folds for a raw dataset that has meta_labels.json (run through the real CLI)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from nnunet_helpers import command, nnunet_env

from spcl_nnunet.data.splits import load_fold_table
from spcl_nnunet.synthetic import generate_synthetic_dataset


def _run(args: list[str], raw: Path) -> subprocess.CompletedProcess:
    env = nnunet_env(raw, raw.parent / "pre", raw.parent / "res")
    return subprocess.run([command("spcl_nnunet"), "splits", *args], env=env, capture_output=True, text=True)


def test_splits_command_writes_patient_level_folds(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    folder = generate_synthetic_dataset(raw, 971, n_patients=5, n_val_patients=1, n_test_patients=1,
                                        image_size=(32, 32), slices=(4, 5))
    (folder / "spcl_folds.json").unlink()
    (folder / "splits_final.json").unlink()
    result = _run(["-d", "971", "--val-groups", "2", "--labeled", "1", "2", "--repeats", "2", "--seed", "3"], raw)
    assert result.returncode == 0, result.stderr
    table = load_fold_table(folder)
    assert [(f.num_labeled, f.split) for f in table.folds] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    patients = {c.split("_")[0] for c in table.val}
    assert len(patients) == 2 and len(table.val) == 4  # both phases of each validation patient
    assert not {c.split("_")[0] for c in table.train_pool} & patients
    assert len(table.test) == 2  # the test patient's two scans in imagesTs
    splits = json.loads((folder / "splits_final.json").read_text())
    assert splits[3]["train"] == table.folds[3].labeled and splits[0]["val"] == table.val
    assert "fold | labeled scans" in result.stdout

    again = _run(["-d", "971", "--val-groups", "2"], raw)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert _run(["-d", "971", "--val-groups", "2", "--overwrite", "--seed", "4"], raw).returncode == 0


def test_splits_command_needs_meta_labels(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    folder = generate_synthetic_dataset(raw, 972, n_patients=4, n_val_patients=1, n_test_patients=1,
                                        image_size=(32, 32), slices=(4, 5))
    for name in ("meta_labels.json", "spcl_folds.json", "splits_final.json"):
        (folder / name).unlink()
    result = _run(["-d", "972", "--val-groups", "1"], raw)
    assert result.returncode == 2 and "meta_labels.json" in result.stderr
    assert not (folder / "spcl_folds.json").exists()

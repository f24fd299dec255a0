"""`spcl_nnunet convert` refuses an option that belongs to another dataset, before reading anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from nnunet_helpers import command, nnunet_env


@pytest.mark.parametrize("dataset, flag, owner", [
    ("acdc", "--no-clip", "spleen"),
    ("spleen", "--with-unlabeled", "promise12"),
    ("hippocampus", "--include-official-test", "acdc"),
    ("promise12", "--unknown-labels-as-background", "mmwhs"),
])
def test_option_of_another_converter_is_refused(tmp_path: Path, dataset: str, flag: str, owner: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    result = subprocess.run([command("spcl_nnunet"), "convert", dataset, "-i", str(tmp_path), "-d", "5", flag],
                            env=nnunet_env(raw, tmp_path / "pre", tmp_path / "res"), capture_output=True, text=True)
    assert result.returncode == 2
    assert f"applies to '{owner}' only" in result.stderr
    assert list(raw.iterdir()) == []

"""spcl_nnunet export-teacher: the teacher's weights as nnU-Net's network_weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spcl_nnunet.cli import main
from spcl_nnunet.networks.export import export_teacher, teacher_checkpoint_name


def _checkpoint(path: Path, with_teacher: bool = True, teacher_keys: tuple[str, ...] = ("a", "b")) -> Path:
    state = {"network_weights": {"a": torch.zeros(2), "b": torch.ones(3)}, "trainer_name": "SomeTrainer",
             "init_args": {"fold": 0}}
    if with_teacher:
        state["teacher_state"] = {"weights": {k: torch.full((2,), 7.0) for k in teacher_keys}, "steps": 5,
                                  "decay": 0.999}
    torch.save(state, path)
    return path


def test_export_replaces_network_weights_only(tmp_path: Path) -> None:
    source = _checkpoint(tmp_path / "checkpoint_final.pth")
    target = export_teacher(source)
    assert target == tmp_path / "checkpoint_final_teacher.pth" == teacher_checkpoint_name(source)
    state = torch.load(target, weights_only=False)
    assert all(torch.equal(v, torch.full((2,), 7.0)) for v in state["network_weights"].values())
    assert state["init_args"] == {"fold": 0} and state["teacher_state"]["steps"] == 5
    assert state["exported_network"] == "teacher"
    assert torch.equal(torch.load(source, weights_only=False)["network_weights"]["b"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_final.pth", "checkpoint_final_teacher.pth"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_teacher(source)
    export_teacher(source, overwrite=True)


def test_export_refuses_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        export_teacher(tmp_path / "missing.pth")
    plain = _checkpoint(tmp_path / "plain.pth", with_teacher=False)
    with pytest.raises(ValueError, match="SomeTrainer"):
        export_teacher(plain)
    other = _checkpoint(tmp_path / "other.pth", teacher_keys=("a", "c"))
    with pytest.raises(ValueError, match="do not match"):
        export_teacher(other)
    torch.save({"weights": 1}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="not an nnU-Net checkpoint"):
        export_teacher(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="overwrite its source"):
        export_teacher(other, tmp_path / "other.pth")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pth", "other.pth", "plain.pth"]


def test_cli_reports_errors_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plain = _checkpoint(tmp_path / "plain.pth", with_teacher=False)
    assert main(["export-teacher", str(plain)]) == 2
    assert "teacher_state" in capsys.readouterr().err
    source = _checkpoint(tmp_path / "checkpoint_best.pth")
    assert main(["export-teacher", str(source), "-o", str(tmp_path / "t.pth")]) == 0
    assert (tmp_path / "t.pth").is_file()

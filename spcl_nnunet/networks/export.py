"""Export the Mean Teacher of a semi-supervised checkpoint as an nnU-Net checkpoint.

nnU-Net's inference loads ``network_weights``, which hold the student. ``export_teacher`` writes
a copy of the checkpoint whose ``network_weights`` are the teacher's (all other keys kept), next
to it by default, so that ``nnUNetv2_predict ... -chk checkpoint_final_teacher.pth`` predicts with
the teacher.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_teacher", "teacher_checkpoint_name"]


def teacher_checkpoint_name(checkpoint: str | os.PathLike[str]) -> Path:
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}_teacher{path.suffix}")


def export_teacher(checkpoint: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
                   overwrite: bool = False) -> Path:
    source = Path(checkpoint)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {source} does not exist")
    target = Path(output) if output is not None else teacher_checkpoint_name(source)
    if target.resolve() == source.resolve():
        raise ValueError(f"the teacher checkpoint would overwrite its source {source}")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    state = torch.load(source, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "network_weights" not in state:
        raise ValueError(f"{source} is not an nnU-Net checkpoint (no 'network_weights')")
    if "teacher_state" not in state:
        raise ValueError(f"{source} has no Mean Teacher ('teacher_state'): it was written by trainer "
                         f"{state.get('trainer_name')!r}; export-teacher needs a checkpoint of MeanTeacherTrainer "
                         f"or SPConMeanTeacherTrainer (or their variants)")
    teacher = state["teacher_state"]["weights"]
    if set(teacher) != set(state["network_weights"]):
        diff = sorted(set(teacher) ^ set(state["network_weights"]))
        raise ValueError(f"{source}: the teacher's weights do not match the network's keys ({diff[:5]} ...)")
    state["network_weights"] = teacher
    state["exported_network"] = "teacher"
    tmp = target.with_name(target.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, target)
    return target

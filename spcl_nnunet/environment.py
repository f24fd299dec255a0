"""The environment nnU-Net needs to find spcl-nnunet's trainers and the data folders."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def trainers_dir() -> Path:
    """The repository's ``trainers/`` folder (the package must be installed from a checkout, editable)."""
    folder = Path(__file__).resolve().parent.parent / "trainers"
    if not (folder / "spcon_pretraining.py").is_file():
        raise FileNotFoundError(f"trainers folder not found at {folder}: install spcl-nnunet from a checkout with "
                                f"'pip install -e .' so that nnUNet_extTrainer can point at its trainers/ folder")
    return folder


def required_environment(root: str | os.PathLike[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """Variables to set: ``nnUNet_extTrainer`` (our trainers folder prepended to any existing
    list) and each nnU-Net data folder that is unset (under ``root``)."""
    environ = dict(os.environ if environ is None else environ)
    out: dict[str, str] = {}
    ours = str(trainers_dir())
    existing = [p for p in environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if ours not in existing:
        out["nnUNet_extTrainer"] = os.pathsep.join([ours, *existing])
    root = Path(root).resolve()
    for name in NNUNET_FOLDERS:
        if not environ.get(name):
            out[name] = str(root / name)
    return out


def export_lines(variables: dict[str, str]) -> list[str]:
    return [f"export {k}={shlex.quote(v)}" for k, v in variables.items()]

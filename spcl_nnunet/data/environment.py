"""The environment nnU-Net needs to find spcl-nnunet's trainers and the data folders."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def trainers_dir() -> Path:
    """The folder of trainer modules that ``nnUNet_extTrainer`` must list: ``spcl_nnunet/trainers``
    inside an installed wheel, else the checkout's ``trainers/`` (an editable install)."""
    package = Path(__file__).resolve().parents[1]   # spcl_nnunet/ (this file is spcl_nnunet/data/environment.py)
    candidates = (package / "trainers", package.parent / "trainers")
    for folder in candidates:
        if (folder / "spcon_pretraining.py").is_file():
            return folder
    raise FileNotFoundError(f"spcl-nnunet's trainer modules were not found in {' or '.join(map(str, candidates))}: "
                            f"reinstall spcl-nnunet ('pip install spcl-nnunet-*.whl', 'pip install git+URL', or "
                            f"'pip install -e .' in a checkout)")


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

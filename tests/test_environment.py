"""Tests of ``spcl_nnunet env`` (run as the installed command) and ``spcl_nnunet.data.environment``."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from nnunet_helpers import command
from spcl_nnunet.data.environment import NNUNET_FOLDERS, required_environment, trainers_dir

TRAINERS = str(trainers_dir())


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}


def _spcl_env(env: dict[str, str], cwd: Path, *args: str) -> dict[str, str]:
    """Run ``spcl_nnunet env`` and parse its ``export NAME=value`` lines."""
    proc = subprocess.run([command("spcl_nnunet"), "env", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    exports = {}
    for line in proc.stdout.splitlines():
        if line.startswith("#"):
            continue
        words = shlex.split(line)
        assert words[0] == "export" and len(words) == 2, line
        name, value = words[1].split("=", 1)
        exports[name] = value
    return exports


def test_trainers_dir_is_the_repository_folder() -> None:
    folder = trainers_dir()
    assert folder.name == "trainers"
    assert (folder / "spcon_pretraining.py").is_file() and (folder / "spcon_finetuning.py").is_file()


def test_env_exports_trainers_and_unset_folders(tmp_path: Path) -> None:
    exports = _spcl_env(_base_env(), tmp_path, "--root", str(tmp_path / "data"))
    assert exports["nnUNet_extTrainer"] == TRAINERS
    for name in NNUNET_FOLDERS:
        assert exports[name] == str((tmp_path / "data" / name).resolve())
    assert set(exports) == {"nnUNet_extTrainer", *NNUNET_FOLDERS}


def test_env_default_root_is_relative_to_the_working_folder(tmp_path: Path) -> None:
    exports = _spcl_env(_base_env(), tmp_path)
    assert exports["nnUNet_raw"] == str((tmp_path / "nnUNet_data" / "nnUNet_raw").resolve())


def test_env_keeps_folders_that_are_set(tmp_path: Path) -> None:
    env = _base_env() | {"nnUNet_raw": "/data/raw", "nnUNet_results": "/data/results"}
    exports = _spcl_env(env, tmp_path, "--root", str(tmp_path))
    assert set(exports) == {"nnUNet_extTrainer", "nnUNet_preprocessed"}
    assert exports["nnUNet_preprocessed"] == str(tmp_path.resolve() / "nnUNet_preprocessed")


def test_env_empty_folder_variable_counts_as_unset(tmp_path: Path) -> None:
    env = _base_env() | {"nnUNet_raw": ""}
    assert "nnUNet_raw" in _spcl_env(env, tmp_path, "--root", str(tmp_path))


def test_env_prepends_to_existing_trainer_list(tmp_path: Path) -> None:
    existing = os.pathsep.join(["/opt/other_trainers", "/srv/more trainers"])
    env = _base_env() | {"nnUNet_extTrainer": existing}
    exports = _spcl_env(env, tmp_path, "--root", str(tmp_path))
    assert exports["nnUNet_extTrainer"].split(os.pathsep) == [TRAINERS, "/opt/other_trainers", "/srv/more trainers"]


def test_env_nothing_to_set(tmp_path: Path) -> None:
    env = _base_env() | {name: f"/data/{name}" for name in NNUNET_FOLDERS} | {
        "nnUNet_extTrainer": os.pathsep.join(["/opt/x", TRAINERS])}
    proc = subprocess.run([command("spcl_nnunet"), "env"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "export" not in proc.stdout
    assert proc.stdout.startswith("# nothing to set")


def test_env_output_evaluates_in_a_shell(tmp_path: Path) -> None:
    """``eval "$(spcl_nnunet env)"`` as the README says, with a path that needs quoting."""
    root = tmp_path / "my data"
    env = _base_env() | {"nnUNet_extTrainer": "/opt/other"}
    script = (f'eval "$({shlex.quote(command("spcl_nnunet"))} env --root {shlex.quote(str(root))})" && '
              f'printf "%s\\n" "$nnUNet_extTrainer" "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"')
    proc = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == os.pathsep.join([TRAINERS, "/opt/other"])
    assert lines[1:] == [str(root.resolve() / name) for name in NNUNET_FOLDERS]


@pytest.mark.parametrize("existing", ["", os.pathsep, f"/a{os.pathsep}{os.pathsep}/b"])
def test_required_environment_ignores_empty_list_entries(existing: str, tmp_path: Path) -> None:
    out = required_environment(tmp_path, {"nnUNet_extTrainer": existing})
    entries = out["nnUNet_extTrainer"].split(os.pathsep)
    assert entries[0] == TRAINERS and "" not in entries

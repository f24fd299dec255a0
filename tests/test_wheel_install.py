"""A wheel install (not editable) ships the trainers, and nnU-Net finds them through ``spcl_nnunet env``.

The wheel is built from a copy of the checkout's sources (the checkout stays clean), installed with
``pip install --target`` into a fresh folder that comes first on ``PYTHONPATH``, and run from there:
its ``spcl_nnunet env`` must point ``nnUNet_extTrainer`` at the installed ``spcl_nnunet/trainers`` and
nnU-Net's own trainer lookup must import ``SPConPretrainTrainer`` from that folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "spcl_nnunet", "trainers")

pytestmark = pytest.mark.e2e


def _run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(src, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"),
          str(source)])
    wheels = list((work / "dist").glob("spcl_nnunet-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    for module in ("spcon_pretraining.py", "spcon_finetuning.py", "spcon_semisupervised.py"):
        assert f"spcl_nnunet/trainers/{module}" in names, f"{module} missing from the wheel: {names}"
    target = work / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(target),
          str(wheels[0])])
    return target


def _env(target: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


def test_wheel_env_points_at_installed_trainers_and_nnunet_finds_them(installed: Path, tmp_path: Path) -> None:
    script = installed / "bin" / "spcl_nnunet"
    assert script.is_file(), "the wheel installs no spcl_nnunet command"
    out = _run([sys.executable, str(script), "env", "--root", str(tmp_path / "data")], env=_env(installed),
               cwd=tmp_path)
    exports = dict(shlex.split(line)[1].split("=", 1) for line in out.splitlines() if line.startswith("export "))
    trainers = Path(exports["nnUNet_extTrainer"].split(os.pathsep)[0])
    assert trainers == (installed / "spcl_nnunet" / "trainers").resolve()

    probe = ("import inspect, spcl_nnunet\n"
             "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
             "cls = find('SPConPretrainTrainer')\n"
             "print('PACKAGE', spcl_nnunet.__file__)\n"
             "print('TRAINER', inspect.getfile(cls))\n")
    out = _run([sys.executable, "-c", probe], env=_env(installed, **exports), cwd=tmp_path)
    found = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("PACKAGE ", "TRAINER ")))
    assert Path(found["PACKAGE"]).resolve().is_relative_to(installed.resolve()), found
    # the class nnU-Net returns is defined by the installed package, reached from its trainers folder
    assert Path(found["TRAINER"]).resolve().is_relative_to(installed.resolve()), found

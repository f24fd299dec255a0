"""Helpers for tests that run the real nnU-Net commands (no mocks) on tiny generated datasets."""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spcl_nnunet.data.environment import trainers_dir

VENV_BIN = Path(sys.executable).parent


def command(name: str) -> str:
    """Absolute path of a console script of the test's virtual environment."""
    path = VENV_BIN / name
    assert path.is_file(), f"{name} is not installed in {VENV_BIN}"
    return str(path)


# nnU-Net's background data-augmentation workers, one (nnunet_env makes batches in the training process)
BACKGROUND_WORKERS = {"nnUNet_n_proc_DA": "1"}


def nnunet_env(raw: str | os.PathLike[str] | None, preprocessed: str | os.PathLike[str],
               results: str | os.PathLike[str], extra_trainer_dirs: Sequence[str | os.PathLike[str]] = (),
               **extra: str) -> dict[str, str]:
    """Environment of an nnU-Net command: our data folders (``raw=None``: nnUNet_raw unset),
    our trainers (plus ``extra_trainer_dirs`` in front), one process for everything, CPU, no
    training schedule (``SPCL_SCHEDULE``) unless ``extra`` sets one.

    Batches are made in the training process (``nnUNet_n_proc_DA=0``, nnU-Net's
    ``SingleThreadedAugmenter``): a smoke training of 12 steps otherwise starts background workers
    that prefetch 6 batches each for training and validation, half of them never used, and costs
    1.3 to 2.5 s more (measured, 2 cores). The README block's run (``test_own_dataset.py``: the
    trainers by hand and through the experiment) passes ``BACKGROUND_WORKERS``: our loaders in
    nnU-Net's workers, as a user runs them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_") and k != "SPCL_SCHEDULE"}
    env.update({
        "nnUNet_preprocessed": str(preprocessed),
        "nnUNet_results": str(results),
        "nnUNet_extTrainer": os.pathsep.join([*(str(p) for p in extra_trainer_dirs), str(trainers_dir())]),
        "nnUNet_n_proc_DA": "0",
        "nnUNet_def_n_proc": "1",
        "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
        "MPLBACKEND": "agg",
    })
    if raw is not None:
        env["nnUNet_raw"] = str(raw)
    env.update(extra)
    return env


def smoke_schedule_file(path: Path, **finetune: object) -> Path:
    """A JSON schedule (for ``SPCL_SCHEDULE``) at ``path``: the built-in ``smoke`` schedule with
    ``finetune`` overrides (also applied by the semi-supervised trainers), named after the file."""
    import json

    from spcl_nnunet.training.schedules import SCHEDULES

    smoke = SCHEDULES["smoke"].to_json()
    path.write_text(json.dumps({**smoke, "name": path.stem, "finetune": {**smoke["finetune"], **finetune}}))
    return path


def run(args: Sequence[str], env: Mapping[str, str], timeout: float = 600, cwd: str | os.PathLike[str] | None = None,
        fork: bool = True) -> subprocess.CompletedProcess:
    """Run a command with stdout and stderr merged into ``.stdout``.

    A console script of this virtual environment (``nnUNetv2_train``, ``nnUNetv2_predict``,
    ``spcl_nnunet``, ...) runs, unless ``fork=False``, in a forked copy of this process: its
    entry point from the package metadata (what the script calls) with ``args`` as ``sys.argv``,
    ``env`` as the environment and its own process group, without the ~10 s of imports of a new
    interpreter. Anything else runs as a subprocess."""
    args = [str(a) for a in args]
    entry = console_script_entry(args[0]) if fork else None
    if entry is None:
        return subprocess.run(args, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, cwd=cwd)
    return run_forked(entry, args, env, timeout, cwd)


@contextlib.contextmanager
def seeded_commands(seed: int) -> Iterator[None]:
    """Forked commands (``run``) started inside draw from seeded generators: torch's (the network's
    initialisation), numpy's and Python's (nnU-Net's sampling and augmentation, made in the training
    process under ``nnunet_env``). This process's generators are restored afterwards."""
    import numpy as np
    import torch

    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def console_script_entry(path: str):
    """The function behind a console script of this virtual environment (None: not one)."""
    from importlib.metadata import entry_points

    if Path(path).parent != VENV_BIN:
        return None
    found = [e for e in entry_points(group="console_scripts") if e.name == Path(path).name]
    return found[0] if found else None


def run_forked(entry, args: list[str], env: Mapping[str, str], timeout: float,
               cwd: str | os.PathLike[str] | None) -> subprocess.CompletedProcess:
    """``entry`` (a console-script entry point) in a forked child; exit code as Python's: the
    ``SystemExit`` code, 1 after an uncaught exception. The child's process group is killed
    afterwards (worker processes a crashed command leaves behind)."""
    import tempfile
    import time

    import torch

    # a fork after a multi-threaded OpenMP region hangs the child's first parallel operation
    assert torch.get_num_threads() == 1, "forked commands need one torch thread in the test process (conftest)"
    function = entry.load()          # imported here once, inherited by every later fork
    with tempfile.TemporaryFile() as output:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:                                  # the child: never returns
            code = 1
            try:
                os.setsid()
                os.dup2(output.fileno(), 1)
                os.dup2(output.fileno(), 2)
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                os.environ.clear()
                os.environ.update(env)
                if cwd is not None:
                    os.chdir(cwd)
                _forget_trainer_modules(env)
                sys.argv = list(args)
                try:
                    result = function()
                    code = result if isinstance(result, int) else 0 if result is None else 1
                except SystemExit as stop:
                    code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
                    if not isinstance(stop.code, (int, type(None))):
                        print(stop.code, file=sys.stderr)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
                import multiprocessing.util

                multiprocessing.util._exit_function()    # what interpreter exit does: stop daemonic workers
            finally:
                os._exit(code)
        deadline = time.monotonic() + timeout
        try:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.killpg(pid, 9)
                    os.waitpid(pid, 0)
                    output.seek(0)
                    raise subprocess.TimeoutExpired(args, timeout, output=output.read().decode(errors="replace"))
                time.sleep(0.05)
        finally:
            try:
                os.killpg(pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        output.seek(0)
        text = output.read().decode(errors="replace")
    return subprocess.CompletedProcess(args, os.waitstatus_to_exitcode(status), stdout=text)


def _forget_trainer_modules(env: Mapping[str, str]) -> None:
    """Drop modules imported from ``nnUNet_extTrainer`` folders (nnU-Net imports them by bare name:
    a test's trainer module of the same name in another folder must be imported afresh)."""
    folders = [Path(p).resolve() for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and any(Path(file).resolve().parent == folder for folder in folders):
            del sys.modules[name]


def tail(proc: subprocess.CompletedProcess, chars: int = 6000) -> str:
    return f"exit code {proc.returncode}; output tail:\n{proc.stdout[-chars:]}"


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, tail(proc)
    return proc


def plan_and_preprocess(dataset_id: int | str, env: Mapping[str, str], *extra: str) -> subprocess.CompletedProcess:
    """``nnUNetv2_plan_and_preprocess -d ID -c 2d -np 1 -npfp 1 [extra]``. nnU-Net's planner sets
    torch's thread count to ``nnUNet_n_proc_DA``, which must be >= 1 there."""
    return check(run([command("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "2d",
                      "-np", "1", "-npfp", "1", *extra], {**env, **BACKGROUND_WORKERS}))


TINY_ID = 990


@dataclass(frozen=True)
class TinyDataset:
    """nnU-Net folders of the session's tiny synthetic dataset.

    ``pre`` has the SP-Con sidecars installed (``spcl_nnunet prepare``); ``pre_unprepared``
    is a copy of the preprocessed dataset taken right after ``nnUNetv2_plan_and_preprocess``,
    i.e. without ``meta_labels.json`` and ``spcl_folds.json``.
    """

    root: Path
    raw: Path
    pre: Path
    pre_unprepared: Path
    name: str

    @property
    def raw_dataset(self) -> Path:
        return self.raw / self.name

    @property
    def pre_dataset(self) -> Path:
        return self.pre / self.name

    def env(self, results: str | os.PathLike[str], **kwargs) -> dict[str, str]:
        return nnunet_env(self.raw, self.pre, results, **kwargs)


def train_command(dataset_id: int | str, fold: int | str, trainer: str, *extra: str) -> list[str]:
    """``nnUNetv2_train DATASET 2d FOLD -tr TRAINER -device cpu ...``"""
    return [command("nnUNetv2_train"), str(dataset_id), "2d", str(fold), "-tr", trainer, "-device", "cpu", *extra]


def fold_dir(results: Path, name: str, trainer: str, fold: int = 0) -> Path:
    return results / name / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"


def epochs_in(output: str) -> list[int]:
    """Epoch numbers the trainer announced (``<timestamp>: Epoch N``)."""
    return [int(e) for e in re.findall(r": Epoch (\d+)\s*$", output, flags=re.M)]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def progress_png_size(panels: int) -> tuple[int, int]:
    """The size of a trainer's progress.png with ``panels`` extra panels below nnU-Net's three
    plots: 14 x 5.5 inches a plot (``SPConLocalLogger``) at matplotlib's 100 dpi."""
    return 1400, 550 * (3 + panels)


def pretraining_pool(output: str) -> tuple[list[str], list[str]]:
    """What a contrastive pre-training logged of its data: (its ``pre-training pool: ...`` lines,
    its ``contrastive loader: ...`` lines: the training pool's loader, then the validation scans'),
    without the timestamps."""
    pool = re.findall(r": (pre-training pool: .*?)\s*$", output, flags=re.M)
    loaders = re.findall(r": (contrastive loader: .*?)\s*$", output, flags=re.M)
    return pool, loaders


def loader_line(scans: int, slices: int, per_partition: list[int], batch_scans: int = 2) -> str:
    """The ``contrastive loader: ...`` line a pre-training logs for a pool of ``scans`` scans and
    ``slices`` slices, ``per_partition`` slices in each partition (one slice of each per scan in a batch)."""
    return (f"contrastive loader: {scans} scans, {slices} slices, slices per partition {per_partition}, "
            f"{batch_scans} scans x {len(per_partition)} slices x 2 views per batch")


def smoke_pretraining(dataset_id: int, results: Path, dataset_name: str, env: Mapping[str, str]
                      ) -> tuple[list[str], list[str], subprocess.CompletedProcess]:
    """``nnUNetv2_train ID 2d 0 -tr SPConPretrainTrainer`` under the smoke schedule: its checkpoint is
    checked (``check_pretraining_checkpoint``, 4 epochs); returns its pool lines, its loader lines
    (``pretraining_pool``) and the process."""
    proc = check(run([command("nnUNetv2_train"), str(dataset_id), "2d", "0", "-tr", "SPConPretrainTrainer",
                      "-device", "cpu"], {**env, "SPCL_SCHEDULE": "smoke"}))
    check_pretraining_checkpoint(Path(results) / dataset_name / "SPConPretrainTrainer__nnUNetPlans__2d" / "fold_0",
                                 epochs=4)
    return (*pretraining_pool(proc.stdout), proc)


def check_pretraining_checkpoint(fold: Path, epochs: int) -> dict:
    """A finished pre-training's checkpoint_final.pth: ``epochs`` epochs, each with a finite,
    positive unweighted contrastive loss (train and validation); returns it."""
    import numpy as np

    ckpt = load_checkpoint(fold / "checkpoint_final.pth")
    assert ckpt["current_epoch"] == epochs and "projector_state" in ckpt, fold
    log = ckpt["logging"]
    for key in ("unweighted_loss_train", "unweighted_loss_val", "train_losses"):
        assert len(log[key]) == epochs and all(np.isfinite(v) for v in log[key]), (key, log[key])
    assert all(v > 0 for v in log["unweighted_loss_train"] + log["unweighted_loss_val"]), log
    return ckpt


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, loaded with ``weights_only=True``: it must hold only tensors, plain types and
    the numpy float scalars of nnU-Net's own logger (no class of this package, nor any other
    object), so checkpoints survive moves of the library's modules."""
    import numpy as np
    import torch

    numpy_scalars = [np._core.multiarray.scalar, np.dtype,
                     *(type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int64))]
    with torch.serialization.safe_globals(numpy_scalars):
        return torch.load(path, map_location="cpu", weights_only=True)


def set_nnunet_env(monkeypatch, env: Mapping[str, str]) -> None:
    """In-process nnU-Net (paths are read from os.environ when used)."""
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer"):
        if key in env:
            monkeypatch.setenv(key, env[key])
        else:
            monkeypatch.delenv(key, raising=False)


def in_process_trainer(name: str, fold: int = 0):
    """The trainer nnUNetv2_train would build, on the CPU (needs ``set_nnunet_env`` first)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    return get_trainer_from_args(str(TINY_ID), "2d", fold, name, device=torch.device("cpu"))


CRASH_MARKER_ENV = "SPCL_TEST_CRASH_MARKER"


def write_crash_once_trainer(folder: Path, name: str, base_module: str, base: str, methods: str = "",
                             **attributes) -> Path:
    """A trainer module (for ``nnUNet_extTrainer``) whose class ``name`` subclasses ``base`` and
    stops the process with exit code 3 after epoch 1, once: as a crash would. The marker file
    named by ``SPCL_TEST_CRASH_MARKER`` records that it happened. ``attributes`` become class
    attributes (``checkpoint_interval_s`` 0 unless given: ``checkpoint_latest.pth`` after every
    ``checkpoint_every``-th epoch of these seconds-long runs); ``methods``, source indented as a class
    body, is added to the class."""
    attributes = {"checkpoint_interval_s": 0.0, **attributes}
    body = "".join(f"    {key} = {value!r}\n" for key, value in attributes.items()) + methods
    source = (f'"""Test trainer: stops the process once, after epoch 1."""\nimport os\n\n'
              f"from {base_module} import {base}\n\n\n"
              f"class {name}({base}):\n{body}\n"
              "    def on_epoch_end(self):\n"
              "        super().on_epoch_end()\n"
              f"        marker = os.environ[{CRASH_MARKER_ENV!r}]\n"
              "        if self.current_epoch == 2 and not os.path.exists(marker):\n"
              "            open(marker, 'w').close()\n"
              "            raise SystemExit(3)\n")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"spcl_test_{name.lower()}.py"
    path.write_text(source)
    return path

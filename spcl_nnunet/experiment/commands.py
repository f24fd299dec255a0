"""nnU-Net's own commands as subprocesses of an experiment, and nnU-Net's evaluation.

Each step is a subprocess of nnU-Net's CLI (``nnUNetv2_plan_and_preprocess``, ``nnUNetv2_train``,
``nnUNetv2_predict``, ``nnUNetv2_evaluate_folder``), its output appended to a log file, so that
every result lands in nnU-Net's usual folders; evaluation is nnU-Net's (3D Dice per class on whole
scans). The evaluation runs as a command too: nnU-Net's ``compute_metrics_on_folder`` scores in a
``multiprocessing`` pool, and a pool whose worker is killed (Ctrl-C or a kill of the experiment's
process group reaches workers the experiment started itself) waits for its result forever.

Every command starts in its own session, so its process group holds it and the processes it
starts (nnU-Net's data-augmentation workers): stopping a command signals that group
(``os.killpg``). Signals sent to the experiment's own process group (Ctrl-C in a terminal) reach
the experiment only, which stops its commands this way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from spcl_nnunet.data.environment import NNUNET_FOLDERS, required_environment
from spcl_nnunet.training.schedules import Schedule

# OpenMP settings a CPU job gets when several share the cores (a value the user set is kept)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def data_folder(name: str, workdir: Path, environ: dict[str, str] | None = None) -> Path:
    """The nnU-Net data folder ``name`` (``nnUNet_raw``, ...): as set in the environment, else
    ``workdir/name``."""
    return Path((os.environ if environ is None else environ).get(name) or workdir / name)


def nnunet_environment(workdir: Path, device: str, folders: tuple[str, ...] = NNUNET_FOLDERS) -> dict[str, str]:
    """os.environ plus what nnU-Net needs: the data ``folders`` (under ``workdir`` when unset,
    created), our trainers on ``nnUNet_extTrainer``, and CPU-friendly worker counts on the CPU."""
    env = dict(os.environ)
    needed = required_environment(workdir, env)
    env.update({name: value for name, value in needed.items() if name not in NNUNET_FOLDERS or name in folders})
    for name in folders:
        Path(env[name]).mkdir(parents=True, exist_ok=True)
    if device == "cpu":
        env.setdefault("nnUNet_n_proc_DA", "2")
        env.setdefault("nnUNet_def_n_proc", "1")
        env.setdefault("nnUNet_compile", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def usable_cores() -> list[int]:
    """The cores this process may run on (its CPU affinity, e.g. from ``taskset``)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def core_shares(jobs: int, cores: list[int] | None = None) -> list[set[int]]:
    """``cores`` (default: the usable ones) split into ``jobs`` shares of nearly equal size, one per
    job; with more jobs than cores, one core per job, the cores taken in turn."""
    cores = usable_cores() if cores is None else sorted(cores)
    if jobs >= len(cores):
        return [{cores[i % len(cores)]} for i in range(jobs)]
    bounds = [round(i * len(cores) / jobs) for i in range(jobs + 1)]
    return [set(cores[bounds[i]:bounds[i + 1]]) for i in range(jobs)]


def bind_thread(cores: set[int]) -> bool:
    """Bind the calling thread to ``cores``: the processes it starts from then on inherit the
    binding (Linux; elsewhere nothing happens and False is returned)."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, cores)       # 0: the calling thread
    return True


def cpu_share_environment(env: dict[str, str], jobs: int, cores: int | None = None) -> dict[str, str]:
    """``env`` for one of ``jobs`` CPU jobs that run at once on ``cores`` cores (default: the usable
    ones): OpenMP's default thread count is the job's share, and idle OpenMP threads sleep
    (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning on the cores of the others. With one job
    nothing changes; variables the user set are kept.

    ``nnUNetv2_train -device cpu`` and ``nnUNetv2_predict`` call
    ``torch.set_num_threads(multiprocessing.cpu_count())`` themselves, which overrides
    ``OMP_NUM_THREADS``, so the runner also binds each job to its share of the cores
    (``core_shares``, ``bind_thread``). ``OMP_THREAD_LIMIT`` would bound torch's threads instead,
    but a small convolutional training loop under ``OMP_THREAD_LIMIT=1`` after
    ``torch.set_num_threads(2)`` hung (torch 2.14.1, 2 cores), so it is not used."""
    if jobs <= 1:
        return dict(env)
    share = max(1, (len(usable_cores()) if cores is None else cores) // jobs)
    out = dict(env)
    for name in THREAD_VARIABLES:
        out.setdefault(name, str(share))
    out.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return out


def resolve_device(device: str) -> str:
    """``auto``: CUDA when torch sees a device, else the CPU; ``cuda`` must exist."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    return device


_RUNNING: set[subprocess.Popen] = set()
_RUNNING_LOCK = threading.Lock()


def terminate_running_commands(sig: int = signal.SIGTERM) -> None:
    """``sig`` to the process group of every command ``run_command`` is running (the command and
    the processes it started), so that a caller can stop cleanly."""
    with _RUNNING_LOCK:
        running = [proc for proc in _RUNNING if proc.poll() is None]
    for proc in running:
        _signal_group(proc, sig)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)          # the command leads its own session: its group id is its pid
    except ProcessLookupError:
        pass


def run_command(cmd: list[str], env: dict[str, str], log_file: Path | None = None) -> float:
    """Run ``cmd`` in its own session, its output appended after the command line to ``log_file``
    (discarded without one); raise on failure; returns the seconds it took. Interrupted while it
    waits (Ctrl-C, or a signal handler that raises), it stops the command's process group first."""
    start = time.time()
    with open(log_file or os.devnull, "a") as sink:
        sink.write(f"$ {' '.join(cmd)}\n")
        sink.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        with _RUNNING_LOCK:
            _RUNNING.add(proc)
        try:
            code = proc.wait()
        except BaseException:
            _signal_group(proc, signal.SIGTERM)
            proc.wait()
            raise
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(proc)
    if code != 0:
        raise RuntimeError(f"command failed with exit code {code}: {' '.join(cmd)}"
                           + (f" (output in {log_file})" if log_file else ""))
    return time.time() - start


def is_pretrainer(trainer: str) -> bool:
    """Contrastive pre-training trainers have no segmentation head: no final validation."""
    return "PretrainTrainer" in trainer


def validates_after_training(trainer: str, schedule: Schedule | None) -> bool:
    """Whether nnU-Net's final validation follows the training of ``trainer`` (of this package)
    under ``schedule``: not for pre-trainers, nor where ``final_validation`` (class attribute or
    schedule override) is False."""
    if is_pretrainer(trainer):
        return False
    from spcl_nnunet.experiment.methods import trainer_class
    from spcl_nnunet.training.schedules import schedule_overrides

    cls = trainer_class(trainer)
    applied = schedule_overrides(cls, schedule)[0] if schedule is not None else {}
    return bool(applied.get("final_validation", cls.final_validation))


def train_command(dataset_id: int, fold: int, trainer: str, device: str, state: str,
                  pretrained: Path | None = None) -> list[str]:
    """``nnUNetv2_train`` for a training in ``state`` (``files.training_state``): resumed with
    ``--c`` (nnU-Net refuses ``-pretrained_weights`` with it: the weights are in the checkpoint),
    only validated with ``--val``, or started (from ``pretrained`` when given)."""
    cmd = ["nnUNetv2_train", str(dataset_id), "2d", str(fold), "-tr", trainer, "-device", device]
    if state == "interrupted":
        return cmd + ["--c"]
    if state == "validate":
        return cmd + ["--val"]
    if state == "new":
        return cmd + (["-pretrained_weights", str(pretrained)] if pretrained is not None else [])
    raise ValueError(f"no training command for a training in state {state!r}")


def predict_command(images: Path, output: Path, dataset_id: int, fold: int, trainer: str, device: str) -> list[str]:
    """``nnUNetv2_predict`` of ``images`` into ``output``. On a GPU one preprocessing and one export
    worker overlap with the network; on the CPU they would share its cores, so nnU-Net's sequential
    mode runs (``-npp 0 -nps 0``: no worker processes, each of which costs a new interpreter)."""
    workers = "0" if device == "cpu" else "1"
    return ["nnUNetv2_predict", "-i", str(images), "-o", str(output), "-d", str(dataset_id), "-c", "2d",
            "-f", str(fold), "-tr", trainer, "-device", device, "-npp", workers, "-nps", workers,
            "--disable_progress_bar"]


def foreground_labels(dataset_json: dict) -> dict[int, str]:
    """``{label value: name}`` of the foreground classes in a dataset.json."""
    return {int(v): k for k, v in dataset_json["labels"].items() if int(v) != 0}


def evaluate_command(labels_folder: Path, predictions: Path) -> list[str]:
    """``nnUNetv2_evaluate_folder`` of ``predictions`` (an ``nnUNetv2_predict`` output folder: its
    ``dataset.json`` and ``plans.json`` name the labels and the reader) against every case of
    ``labels_folder`` (each must be predicted); writes ``predictions/summary.json``."""
    return ["nnUNetv2_evaluate_folder", str(labels_folder), str(predictions), "-djfile",
            str(predictions / "dataset.json"), "-pfile", str(predictions / "plans.json"), "-np", "1"]

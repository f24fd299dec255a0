"""The experiment package's pieces without a training: the plan, the commands' environment and
process groups, the working folder's files, progress, records and the demo's table and note."""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from spcl_nnunet.experiment.commands import (bind_thread, core_shares, cpu_share_environment, nnunet_environment,
                                             run_command, terminate_running_commands)
from spcl_nnunet.experiment.files import (checkpoint_stamp, link_test_set, replace_folder, training_folder,
                                          write_json)
from spcl_nnunet.experiment.progress import Progress, clock
from spcl_nnunet.experiment.records import current_record, save_record
from spcl_nnunet.experiment.results import dice_table
from spcl_nnunet.experiment.runner import interrupted_exit_code


# ------------------------------------------------------------------------------ plan
@pytest.fixture
def raw_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A tiny synthetic raw dataset (no nnU-Net preprocessing: a plan does not need it); its id."""
    from spcl_nnunet.synthetic import generate_synthetic_dataset

    generate_synthetic_dataset(tmp_path / "raw", 951, n_patients=6, n_val_patients=1, n_test_patients=1,
                               image_size=(32, 32), slices=(6, 8), labeled_counts=(1, 2), repeats=1)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    monkeypatch.chdir(tmp_path)
    return 951


def _config(dataset_id: int, **options):
    from spcl_nnunet.experiment.methods import get_methods
    from spcl_nnunet.experiment.plan import ExperimentConfig
    from spcl_nnunet.training.schedules import SCHEDULES

    return ExperimentConfig(dataset_id=dataset_id, methods=get_methods(["baseline", "spcon"]),
                            schedule=SCHEDULES["smoke"], workdir=Path("work"), device="cpu", **options)


def test_make_plan_returns_a_new_config_and_writes_nothing(raw_dataset: int, tmp_path: Path) -> None:
    from spcl_nnunet.experiment.plan import make_plan

    config = _config(raw_dataset)
    before = copy.deepcopy(config)
    plan = make_plan(config)
    assert config == before and config.evaluate is None and config.workdir == Path("work")
    assert plan.config is not config
    assert plan.config.workdir == tmp_path / "work" and plan.config.evaluate == "test"
    assert plan.pretrainers == ["SPConPretrainTrainer"] and len(plan.runs) == 2 * len(plan.folds)
    assert not (tmp_path / "work").exists() and not (tmp_path / "pre").exists()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.jobs = 2                                               # type: ignore[misc]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two usable cores")
def test_runner_gives_each_job_thread_its_own_cores(raw_dataset: int) -> None:
    from spcl_nnunet.experiment.plan import make_plan
    from spcl_nnunet.experiment.runner import Runner

    runner = Runner(make_plan(_config(raw_dataset, jobs=2)), out=io.StringIO())
    seen: list[tuple[frozenset, frozenset]] = []

    def job() -> None:
        runner.take_cores()
        first = frozenset(os.sched_getaffinity(0))
        runner.take_cores()                                            # a thread keeps its share
        seen.append((first, frozenset(os.sched_getaffinity(0))))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(map(sorted, (first for first, _ in seen))) == sorted(map(sorted, core_shares(2)))
    assert all(first == again for first, again in seen)
    one_job = Runner(make_plan(_config(raw_dataset, jobs=1)), out=io.StringIO())
    assert one_job.core_shares is None


# ------------------------------------------------------------------------------ commands
def test_nnunet_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spcl_nnunet.data.environment import trainers_dir

    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("nnUNet_extTrainer", "/elsewhere")
    env = nnunet_environment(tmp_path, "cpu", folders=("nnUNet_raw", "nnUNet_preprocessed"))
    assert env["nnUNet_raw"] == str(tmp_path / "nnUNet_raw") and (tmp_path / "nnUNet_raw").is_dir()
    assert env["nnUNet_preprocessed"] == str(tmp_path / "nnUNet_preprocessed")
    assert "nnUNet_results" not in env                               # set per step by the runner
    assert env["nnUNet_extTrainer"] == os.pathsep.join([str(trainers_dir()), "/elsewhere"])
    assert env["nnUNet_compile"] == "false"


def test_cpu_share_environment() -> None:
    base = {"PATH": "/bin"}
    assert cpu_share_environment(base, jobs=1, cores=2) == base           # one job: as nnU-Net sets it
    shared = cpu_share_environment(base, jobs=2, cores=2)
    assert shared == {"PATH": "/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    assert cpu_share_environment(base, jobs=2, cores=8)["OMP_NUM_THREADS"] == "4"
    assert cpu_share_environment(base, jobs=3, cores=8)["OMP_NUM_THREADS"] == "2"
    assert cpu_share_environment(base, jobs=4, cores=2)["OMP_NUM_THREADS"] == "1"
    mine = cpu_share_environment({"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "2"}, jobs=2, cores=2)
    assert mine["OMP_WAIT_POLICY"] == "ACTIVE" and mine["OMP_NUM_THREADS"] == "2"        # the user's values stay


def test_core_shares() -> None:
    assert core_shares(2, [0, 1]) == [{0}, {1}]
    assert core_shares(3, [0, 1]) == [{0}, {1}, {0}]                       # more jobs than cores: in turn
    assert core_shares(2, [4, 5, 6, 7]) == [{4, 5}, {6, 7}]                # a taskset mask is respected
    assert core_shares(3, list(range(8))) == [{0, 1, 2}, {3, 4}, {5, 6, 7}]
    assert core_shares(1, [0, 1]) == [{0, 1}]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two usable cores")
def test_commands_of_a_job_thread_keep_to_its_cores(tmp_path: Path) -> None:
    """nnU-Net's CPU commands call torch.set_num_threads(cpu_count()) themselves; the job's binding,
    inherited from the thread that starts them, keeps their threads on the job's cores."""
    share = core_shares(2)[1]
    seen: dict[str, str] = {}

    def job() -> None:
        assert bind_thread(share)
        out = tmp_path / "affinity.txt"
        run_command([sys.executable, "-c", f"import os; open({str(out)!r}, 'w').write(repr(sorted("
                     f"os.sched_getaffinity(0))))"], dict(os.environ))
        seen["child"] = out.read_text()

    before = os.sched_getaffinity(0)
    thread = threading.Thread(target=job)
    thread.start()
    thread.join(timeout=60)
    assert seen["child"] == repr(sorted(share))
    assert os.sched_getaffinity(0) == before                               # only the job thread is bound


def _grandchild_command(pid_file: Path) -> list[str]:
    """A shell that starts a grandchild and waits for it (as nnU-Net waits for its workers)."""
    return ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]


def _gone(pid: int, timeout: float = 10.0) -> bool:
    """The process has ended (a zombie waiting for its reaper counts as ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.05)
    return False


def _wait_for(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not (path.is_file() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.02)
    return int(path.read_text())


def test_terminating_stops_the_commands_process_group(tmp_path: Path) -> None:
    pid_file, log = tmp_path / "pid", tmp_path / "command.log"
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_command(_grandchild_command(pid_file), dict(os.environ), log)
        except BaseException as err:           # noqa: BLE001 - handed to the test thread
            errors.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    grandchild = _wait_for(pid_file)
    assert os.getsid(grandchild) != os.getsid(0)                      # the command runs in its own session
    terminate_running_commands()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1 and "exit code -15" in str(errors[0]) and str(log) in str(errors[0])
    assert _gone(grandchild)
    assert log.read_text().startswith("$ sh -c sleep 60")


def test_interrupted_command_stops_its_process_group(tmp_path: Path) -> None:
    """Ctrl-C (or SIGTERM through the runner's handler) while the main thread waits for a command."""
    pid_file = tmp_path / "pid"

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("SIGALRM")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        threading.Thread(target=lambda: signal.setitimer(signal.ITIMER_REAL, 0.01) if _wait_for(pid_file) else None
                         ).start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run_command(_grandchild_command(pid_file), dict(os.environ))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 30                 # stopped, not waited for (the grandchild sleeps 60 s)
    assert _gone(int(pid_file.read_text()))


def test_interrupted_exit_code() -> None:
    assert interrupted_exit_code(KeyboardInterrupt()) == 130              # Ctrl-C
    assert interrupted_exit_code(KeyboardInterrupt("SIGTERM")) == 143
    assert interrupted_exit_code(KeyboardInterrupt("SIGHUP")) == 129


# ------------------------------------------------------------------------------ files and records
def test_test_set_links_and_folder_replacement(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    dataset_json = {"file_ending": ".nii.gz", "channel_names": {"0": "a", "1": "b"}}
    for case in ("p1", "p2"):
        for name in (f"imagesTs/{case}_0000.nii.gz", f"imagesTs/{case}_0001.nii.gz", f"labelsTs/{case}.nii.gz"):
            (raw / name).parent.mkdir(parents=True, exist_ok=True)
            (raw / name).write_text(name)
    target = tmp_path / "work" / "test_set"
    target.parent.mkdir()
    link_test_set(target, raw, dataset_json, ["p1"])
    assert sorted(p.name for p in (target / "imagesTs").iterdir()) == ["p1_0000.nii.gz", "p1_0001.nii.gz"]
    assert (target / "labelsTs" / "p1.nii.gz").read_text() == "labelsTs/p1.nii.gz"
    link_test_set(target, raw, dataset_json, ["p2"])                       # replaced whole
    assert sorted(p.name for p in (target / "labelsTs").iterdir()) == ["p2.nii.gz"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["test_set"]   # no temporary folder left
    new = tmp_path / "work" / ".new"
    new.mkdir()
    (new / "x").write_text("new")
    replace_folder(new, target)
    assert [p.name for p in target.iterdir()] == ["x"] and not new.exists()


def test_record_is_current_while_it_names_the_checkpoint(tmp_path: Path) -> None:
    out = training_folder(tmp_path / "results" / "Dataset001_X", "SPConBaselineTrainer", 2)
    assert out == tmp_path / "results" / "Dataset001_X" / "SPConBaselineTrainer__nnUNetPlans__2d" / "fold_2"
    out.mkdir(parents=True)
    checkpoint = out / "checkpoint_final.pth"
    checkpoint.write_bytes(b"1234")
    stamp = checkpoint_stamp(checkpoint)
    assert stamp == {"path": str(checkpoint), "size": 4, "mtime_ns": checkpoint.stat().st_mtime_ns}
    folder = tmp_path / "test_predictions"
    folder.mkdir()
    assert current_record(folder, stamp) is None                         # no run.json yet
    save_record(folder, {"checkpoint": stamp, "mean_dice": 0.5})
    assert current_record(folder, stamp) == {"checkpoint": stamp, "mean_dice": 0.5}
    assert current_record(folder, stamp, "summary.json") is None          # nnU-Net's summary is missing
    write_json(folder / "summary.json", {})
    assert current_record(folder, stamp, "summary.json") is not None
    checkpoint.write_bytes(b"123456")                                      # a new checkpoint: evaluate again
    assert current_record(folder, checkpoint_stamp(checkpoint)) is None


# ------------------------------------------------------------------------------ progress
def test_progress_lines_and_eta() -> None:
    assert clock(3725) == "1:02:05" and clock(59.6) == "0:01:00"
    lines: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    progress = Progress(total=4, jobs=2, out=Sink())
    assert progress.eta() == "ETA ?"
    assert progress.finished(60, worked=True) == (1, "ETA 0:01:30")        # 60 s x 3 runs left / 2 jobs
    assert progress.finished(5, worked=False) == (2, "ETA 0:01:00")        # a reused run says nothing of the rest
    assert progress.finished(120, worked=True) == (3, "ETA 0:00:45")       # mean 90 s x 1 / 2
    assert progress.finished(1, worked=False) == (4, "done")
    progress.line("hello")
    assert lines == ["[0:00:00] hello\n"]


# ------------------------------------------------------------------------------ the demo's table and note
def test_demo_table_and_note() -> None:
    from spcl_nnunet.experiment.demo import spread_note

    records = [{"label": "baseline (scratch)", "dice": {"RV": 0.5, "MYO": 0.25, "LV": 0.75}, "mean_dice": 0.5},
               {"label": "SP-Con (pre-train)", "dice": {"RV": 0.125, "MYO": 0.5, "LV": 1.0}, "mean_dice": 0.5416666}]
    assert dice_table(records).splitlines() == ["| method | RV | MYO | LV | mean |", "|---|---|---|---|---|",
                                                "| baseline (scratch) | 50.00 | 25.00 | 75.00 | 50.00 |",
                                                "| SP-Con (pre-train) | 12.50 | 50.00 | 100.00 | 54.17 |"]
    note = spread_note(0.0416666)
    # the demo schedule: pre-training 5 x 25, fine-tuning 15 x 20 iterations
    assert note.startswith("SP-Con - baseline: +4.2 Dice points in this run.")
    assert "(125 pre-training + 300 fine-tuning iterations on the CPU)" in note

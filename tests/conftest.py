"""Shared fixtures: one tiny synthetic dataset planned and preprocessed by nnU-Net per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

# nnU-Net reads these at import time in this process (in-process trainers, evaluation): one
# process, batches made in the training process, as in the commands the tests start (nnunet_env)
os.environ.setdefault("nnUNet_def_n_proc", "1")
os.environ.setdefault("nnUNet_n_proc_DA", "0")
# pytest-xdist (the README's `-n 2`): one torch thread per process, this one and the nnU-Net commands
# it starts as subprocesses (they inherit the variable). Two 2-thread processes on 2 cores make every
# parallel operation wait for a time slice, many times slower than one thread each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
# nnU-Net's training sets as many torch threads as cores whatever OMP_NUM_THREADS says; with two
# workers, idle OpenMP threads that sleep instead of spinning leave the cores to the other process
# (two 2-thread processes on 2 cores: 2.4x faster each, measured). Read once, when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# and with or without xdist, this process never runs a multi-threaded OpenMP region: the nnU-Net
# commands run in forked copies of it (nnunet_helpers.run), and a fork after one hangs the child
import torch  # noqa: E402

torch.set_num_threads(1)

from nnunet_helpers import TINY_ID, TinyDataset, nnunet_env, plan_and_preprocess  # noqa: E402


# the longest files first, longest to shortest (measured with `--durations=0`, 2 cores): with
# `-n 2 --dist loadfile` each worker starts on one of the two longest, and the shorter files fill in
# behind, so that both workers end at about the same time. Collected last, the 4.5-min README run
# would start late and run alone at the end.
LONGEST_FILES_FIRST = ("test_own_dataset.py", "test_experiment.py", "test_own_dataset_inputs.py",
                       "test_compared_e2e.py", "test_trainers_e2e.py", "test_semisupervised_e2e.py",
                       "test_convert_msd.py", "test_convert_promise12.py", "test_synthetic.py",
                       "test_convert_acdc.py", "test_convert_mmwhs.py", "test_trainer_registry.py",
                       "test_mixed_precision.py", "test_ddp_trainer.py", "test_slices.py")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist reorders files by their number of tests (`--loadscope-reorder`, its default), which
    # would undo the order below: keep the collection order
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FILES_FIRST.index(name) if name in LONGEST_FILES_FIRST else len(LONGEST_FILES_FIRST)
    items.sort(key=rank)   # stable: the order within a file is kept


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> TinyDataset:
    """Planned and preprocessed once per test session: under pytest-xdist the first worker builds
    it in the run's shared temporary folder (under a file lock), the others reuse it. Tests only
    read it (a test that changes a dataset copies it first)."""
    if worker_id == "master":                      # no xdist
        return _build_tiny_dataset(tmp_path_factory.mktemp("tiny_nnunet"))
    shared = tmp_path_factory.getbasetemp().parent / "tiny_nnunet"
    with FileLock(str(shared) + ".lock"):
        if not (shared / "built").is_file():
            if shared.exists():                    # a worker that died while building it
                shutil.rmtree(shared)
            _build_tiny_dataset(shared)
            (shared / "built").write_text("complete\n")
    return _tiny_dataset_at(shared)


def _tiny_dataset_at(root: Path) -> TinyDataset:
    name = next(p.name for p in (root / "raw").iterdir() if p.is_dir())
    return TinyDataset(root=root, raw=root / "raw", pre=root / "preprocessed",
                       pre_unprepared=root / "preprocessed_unprepared", name=name)


def _build_tiny_dataset(root: Path) -> TinyDataset:
    from spcl_nnunet.data.sidecars import install_sidecars
    from spcl_nnunet.synthetic import generate_synthetic_dataset

    raw, pre, results = root / "raw", root / "preprocessed", root / "results"
    raw_dataset = generate_synthetic_dataset(raw, TINY_ID, n_patients=6, n_val_patients=1, n_test_patients=1,
                                             image_size=(48, 48), slices=(6, 8), labeled_counts=(1, 2), repeats=1)
    plan_and_preprocess(TINY_ID, nnunet_env(raw, pre, results))
    name = raw_dataset.name
    shutil.copytree(pre / name, root / "preprocessed_unprepared" / name)
    install_sidecars(raw_dataset, pre / name)
    return _tiny_dataset_at(root)

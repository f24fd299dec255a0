"""The trainers under a 2-process process group (gloo, CPU), as ``-num_gpus 2`` runs them.

nnU-Net's own DDP launch needs CUDA (nccl, ``set_device``); here each process joins a gloo group,
builds the trainer through nnU-Net's ``get_trainer_from_args`` and runs nnU-Net's ``on_train_start``
(initialize, DDP wrapping, loaders) and a few real ``train_step`` calls on its own random batches
(docs/multi_gpu.md, *What has been checked*). Two CPU-only adjustments: the device nnU-Net forces to
``cuda:rank`` is set back to the CPU, and DDP gets ``device_ids=None`` (CPU modules take none).

Oracle: the processes start from different random weights and draw different batches, yet after
the steps their networks, projectors and Mean Teacher teachers are identical (DDP's start-up
broadcast and all-reduce, the projector broadcast, the global contrastive batch, the gradients of
parameters outside DDP averaged by hand, the EMA of identical students) and, where the loss is the
global contrastive one, their losses are equal. Negative control: without the hand averaging, the
pre-training's encoders and the projectors outside DDP (SP-Con + Mean Teacher's, the local contrastive
stage's dense one) diverge. The same holds for entropy minimisation and the compared methods: MixUp (its
mixed pass runs outside DDP's forward), the discriminator (which takes its own step), the cluster heads,
and the local contrastive stage (frozen encoder, decoder and dense projector averaged by hand).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from nnunet_helpers import TINY_ID

pytestmark = pytest.mark.e2e
WORLD = 2
STEPS = 3
RELEASE_ENV = "SPCL_TEST_RELEASE_ENCODER"


def _worker(rank: int, store: str, env: dict, out: str, average: bool, trainer_name: str) -> None:
    os.environ.update(env)
    import numpy as np
    import torch.distributed as dist

    np.random.seed(100 + rank)           # different batches and different initial weights per rank
    torch.manual_seed(100 + rank)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer
        from nnunetv2.run.run_training import get_trainer_from_args
        from torch.nn.parallel import DistributedDataParallel

        nnunet_trainer.DDP = lambda module, device_ids=None, **kw: DistributedDataParallel(module, **kw)
        if not average:
            import spcl_nnunet.training.base as base
            import spcl_nnunet.training.compared as compared

            base.average_gradients = compared.average_gradients = lambda params: None
        trainer = get_trainer_from_args(str(TINY_ID), "2d", 0, trainer_name, device=torch.device("cpu"))
        trainer.device, trainer.grad_scaler = torch.device("cpu"), None
        trainer.gamma_start = trainer.gamma_end = 1000.0    # every pair from the first step (gamma 2 admits none)
        trainer.on_train_start()
        trainer.on_train_epoch_start()
        start = {k: v.clone() for k, v in trainer.unwrapped_network().state_dict().items()}
        batches = [next(trainer.dataloader_train) for _ in range(STEPS)]
        losses = [float(trainer.train_step(batch)["loss"]) for batch in batches]
        frozen_moved = None
        if env.get(RELEASE_ENV):         # frozen_encoder_epochs = 1: epoch 1 releases the encoder
            encoder = [k for k in start if k.startswith("encoder.")]
            frozen_moved = [k for k in encoder if not torch.equal(trainer.unwrapped_network().state_dict()[k],
                                                                  start[k])]
            trainer.current_epoch = 1
            trainer.on_train_epoch_start()
            batches += [next(trainer.dataloader_train) for _ in range(STEPS)]
            losses += [float(trainer.train_step(batch)["loss"]) for batch in batches[STEPS:]]
        state = {f"network.{k}": v for k, v in trainer.unwrapped_network().state_dict().items()}
        outside = {"projector": getattr(trainer, "projector", None), "discriminator": getattr(trainer, "discriminator", None),
                   "cluster_heads": getattr(trainer, "cluster_heads", None),
                   "dense_projector": getattr(trainer, "dense_projector", None),
                   "teacher": trainer.teacher.module if getattr(trainer, "teacher", None) is not None else None}
        for name, module in outside.items():
            if module is not None:
                state.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        moved = [k for k, v in trainer.unwrapped_network().state_dict().items() if not torch.equal(v, start[k])]
        scans = trainer.scans_per_rank() if hasattr(trainer, "scans_per_rank") else None
        torch.save({"losses": losses, "state": state, "moved": moved, "scans": scans, "frozen_moved": frozen_moved,
                    "keys": [b["keys"] for b in batches]}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path, env: dict, average: bool, trainer: str = "SPConPretrainTrainer") -> list[dict]:
    out = str(tmp_path / "rank")
    # forked, not spawned: the ranks inherit this process's imports (conftest keeps it at one torch
    # thread, so a fork is safe) instead of importing torch and nnU-Net afresh, ~10 s each
    mp.start_processes(_worker, args=(str(tmp_path / "store"), env, out, average, trainer), nprocs=WORLD, join=True,
                       start_method="fork")
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(WORLD)]


def _env(tiny_dataset, tmp_path: Path) -> dict:
    return {**tiny_dataset.env(tmp_path / "results"), "nnUNet_compile": "f", "nnUNet_n_proc_DA": "0",
            "SPCL_SCHEDULE": "smoke"}


def test_pretraining_under_two_processes_keeps_the_ranks_equal(tiny_dataset, tmp_path: Path) -> None:
    ranks = _run(tmp_path, _env(tiny_dataset, tmp_path), average=True)
    assert ranks[0]["scans"] == ranks[1]["scans"] == 1            # smoke: 2 scans per batch over 2 processes
    assert ranks[0]["keys"] != ranks[1]["keys"]                   # each rank drew its own scans
    assert all(loss > 0 for loss in ranks[0]["losses"]) and ranks[0]["moved"]   # the steps did update
    assert ranks[0]["losses"] == ranks[1]["losses"]               # one loss: the global batch's
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), f"{key} differs between the ranks"


def test_without_gradient_averaging_the_ranks_diverge(tiny_dataset, tmp_path: Path) -> None:
    """Negative control: the test above must be able to fail."""
    ranks = _run(tmp_path, _env(tiny_dataset, tmp_path), average=False)
    differing = [k for k, v in ranks[0]["state"].items() if k.startswith("network.encoder")
                 and k.endswith("weight") and not torch.equal(v, ranks[1]["state"][k])]
    assert differing, "the ranks stayed equal without averaging their gradients"


OUTSIDE_DDP = {"MeanTeacherTrainer": ("teacher",), "SPConMeanTeacherTrainer": ("teacher", "projector"),
               "FixMatchTrainer": ("teacher",),
               "EntropyMinTrainer": (), "AdversarialTrainer": ("discriminator",),
               "DiscreteMITrainer": ("cluster_heads",), "MixUpTrainer": (),
               "LocalContrastivePretrainTrainer": ("dense_projector",)}


@pytest.mark.parametrize("trainer", list(OUTSIDE_DDP))
def test_trainers_keep_network_teacher_and_heads_equal(tiny_dataset, tmp_path: Path, trainer: str) -> None:
    ranks = _run(tmp_path, _env(tiny_dataset, tmp_path), average=True, trainer=trainer)
    assert ranks[0]["moved"]      # (fold 0 has one labeled scan: the ranks differ in their unlabeled batches)
    for name in OUTSIDE_DDP[trainer]:
        assert any(k.startswith(f"{name}.") for k in ranks[0]["state"]), name
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), f"{key} differs between the ranks"


@pytest.mark.parametrize("trainer, head", [("SPConMeanTeacherTrainer", "projector"),
                                           ("LocalContrastivePretrainTrainer", "dense_projector")])
def test_projectors_outside_ddp_diverge_without_averaging(tiny_dataset, tmp_path: Path, trainer: str,
                                                          head: str) -> None:
    """Negative control for the projectors, which live outside DDP."""
    ranks = _run(tmp_path, _env(tiny_dataset, tmp_path), average=False, trainer=trainer)
    differing = [k for k, v in ranks[0]["state"].items() if k.startswith(f"{head}.")
                 and not torch.equal(v, ranks[1]["state"][k])]
    assert differing, f"the {head}s stayed equal without averaging their gradients"


def test_encoder_released_after_frozen_epochs_keeps_the_ranks_equal(tiny_dataset, tmp_path: Path) -> None:
    """frozen_encoder_epochs (issue #19's arm b): DDP is built while the encoder needs no gradient;
    releasing it wraps the network again, so that the encoder's gradients are all-reduced too."""
    import json

    from spcl_nnunet.training.schedules import SCHEDULES

    smoke = SCHEDULES["smoke"].to_json()
    schedule = tmp_path / "frozen_one_epoch.json"
    schedule.write_text(json.dumps({**smoke, "name": "frozen", "finetune": {**smoke["finetune"],
                                                                             "frozen_encoder_epochs": 1}}))
    env = {**_env(tiny_dataset, tmp_path), "SPCL_SCHEDULE": str(schedule), RELEASE_ENV: "1"}
    ranks = _run(tmp_path, env, average=True, trainer="SPConFinetuneTrainer")
    assert ranks[0]["frozen_moved"] == [] == ranks[1]["frozen_moved"]      # epoch 0: the encoder as it started
    assert any(k.startswith("encoder.") for k in ranks[0]["moved"])        # epoch 1: it trains
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), f"{key} differs between the ranks"

"""Epoch schedulers of the fine-tuning: the paper's warm-up + cosine, and nnU-Net 2.8's warm-up
for pre-trained weights followed by its poly decay."""

from __future__ import annotations

from nnunetv2.training.lr_scheduler.warmup import Lin_incr_LRScheduler, PolyLRScheduler_offset
from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler

from spcl_nnunet.contrastive.pacing import effective_warmup, warmup_cosine_lr


class WarmupCosineLRScheduler(_LRScheduler):
    """lr rises linearly from ``lr_init`` to ``multiplier * lr_init`` over ``warmup_epochs``,
    then follows a cosine decay to 0 at ``max_epochs`` (supplementary Fig. 5).

    Stepped like nnU-Net's ``PolyLRScheduler``: ``step(current_epoch)`` once per epoch. A group
    with ``lr_factor`` gets that multiple of the schedule's rate.

    With ``restart_epoch`` R > 0 the schedule runs twice, a sawtooth: warm-up and cosine to 0 over
    epochs [0, R), then a fresh warm-up and cosine over [R, max_epochs) (the second training stage
    after a frozen encoder is released)."""

    def __init__(self, optimizer: Optimizer, lr_init: float, multiplier: float, max_epochs: int,
                 warmup_epochs: int = 10, restart_epoch: int = 0):
        self.lr_init, self.multiplier = lr_init, multiplier
        self.max_epochs, self.warmup_epochs, self.restart_epoch = max_epochs, warmup_epochs, restart_epoch
        self.ctr = 0
        super().__init__(optimizer, -1)

    def lr_at(self, epoch: float) -> float:
        if self.restart_epoch <= 0:
            return warmup_cosine_lr(epoch, self.max_epochs, self.lr_init, self.multiplier, self.warmup_epochs)
        if epoch < self.restart_epoch:
            return warmup_cosine_lr(epoch, self.restart_epoch, self.lr_init, self.multiplier, self.warmup_epochs)
        return warmup_cosine_lr(epoch - self.restart_epoch, self.max_epochs - self.restart_epoch, self.lr_init,
                                self.multiplier, self.warmup_epochs)

    def warmup_notes(self) -> list[str]:
        """A line for each stage whose warm-up is shorter than ``warmup_epochs`` because the stage
        is short (``effective_warmup``), for the trainer's log; empty when none is."""
        stages = [("the run", self.max_epochs)] if self.restart_epoch <= 0 else \
            [("the frozen-encoder stage", self.restart_epoch),
             ("the stage after the encoder's release", self.max_epochs - self.restart_epoch)]
        notes = []
        for stage, length in stages:
            warm = effective_warmup(length, self.warmup_epochs)
            if warm != self.warmup_epochs:
                notes.append(f"learning-rate warm-up of {stage} shortened from {self.warmup_epochs} to {warm} "
                             f"epoch(s): {stage} has {length} epoch(s), not more than warmup_epochs")
        return notes

    def step(self, current_step: int | None = None) -> None:  # noqa: D102 (torch API)
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = self.lr_at(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_factor", 1.0)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr


class WarmupPolyLRScheduler(_LRScheduler):
    """nnU-Net 2.8's schedule for pre-trained weights (``nnUNetTrainer_warmup``): the rate rises
    linearly to ``initial_lr`` over ``warmup_epochs`` (its ``Lin_incr_LRScheduler``), then decays
    as ``initial_lr * (1 - (e - W) / (max_epochs - W)) ** 0.9`` (its ``PolyLRScheduler_offset``).
    Both are nnU-Net's own schedulers; this one picks the one of the epoch and applies each
    group's ``lr_factor``. ``warmup_epochs`` 0: poly decay from the first epoch."""

    def __init__(self, optimizer: Optimizer, initial_lr: float, max_epochs: int, warmup_epochs: int):
        if not 0 <= warmup_epochs < max_epochs:
            raise ValueError(f"warm-up of {warmup_epochs} epoch(s) does not fit {max_epochs} epochs")
        self.warmup_epochs = warmup_epochs
        self.warmup = Lin_incr_LRScheduler(optimizer, initial_lr, warmup_epochs) if warmup_epochs else None
        self.decay = PolyLRScheduler_offset(optimizer, initial_lr, max_epochs, warmup_epochs)
        self.ctr = 0
        super().__init__(optimizer, -1)

    def step(self, current_step: int | None = None) -> None:  # noqa: D102 (torch API)
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        (self.warmup if current_step < self.warmup_epochs else self.decay).step(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_factor", 1.0)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr

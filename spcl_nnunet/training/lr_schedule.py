"""The paper's learning-rate schedule as an nnU-Net-style epoch scheduler."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler

from spcl_nnunet.contrastive.pacing import warmup_cosine_lr


class WarmupCosineLRScheduler(_LRScheduler):
    """lr rises linearly from ``lr_init`` to ``multiplier * lr_init`` over ``warmup_epochs``,
    then follows a cosine decay to 0 at ``max_epochs`` (supplementary Fig. 5).

    Stepped like nnU-Net's ``PolyLRScheduler``: ``step(current_epoch)`` once per epoch. A group
    with ``lr_factor`` gets that multiple of the schedule's rate."""

    def __init__(self, optimizer: Optimizer, lr_init: float, multiplier: float, max_epochs: int,
                 warmup_epochs: int = 10):
        self.lr_init, self.multiplier = lr_init, multiplier
        self.max_epochs, self.warmup_epochs = max_epochs, warmup_epochs
        self.ctr = 0
        super().__init__(optimizer, -1)

    def lr_at(self, epoch: float) -> float:
        return warmup_cosine_lr(epoch, self.max_epochs, self.lr_init, self.multiplier, self.warmup_epochs)

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

"""Mean Teacher: the teacher's weights are an exponential moving average of the student's.

After optimizer step t (t = 1, 2, ...), with decay alpha:

    alpha_t = min(1 - 1/t, alpha)          (Tarvainen & Valpola's warm-up: early teachers
    theta'_t = alpha_t theta'_{t-1} + (1 - alpha_t) theta_t     follow the student closely)

Floating-point buffers (e.g. BatchNorm running statistics) are copied from the student, integer
buffers too. The teacher never receives gradients.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ema_decay_at", "MeanTeacher"]


def ema_decay_at(step: int, decay: float) -> float:
    """Decay used for the ``step``-th update (1-based): min(1 - 1/step, decay)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
    if step < 1:
        raise ValueError(f"EMA steps are counted from 1, got {step}")
    return min(1.0 - 1.0 / step, decay)


class MeanTeacher:
    """An EMA copy of a student network (not an ``nn.Module`` itself, so that it never enters
    the student's ``state_dict`` or optimizer)."""

    def __init__(self, student: nn.Module, decay: float = 0.999) -> None:
        ema_decay_at(1, decay)  # validates decay
        self.decay = float(decay)
        self.module = copy.deepcopy(student)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.steps = 0
        self.last_decay = float("nan")

    def copy_from(self, student: nn.Module) -> None:
        """Make the teacher equal to the student (start of training, e.g. after ``-pretrained_weights``)."""
        self.module.load_state_dict(student.state_dict())

    @torch.no_grad()
    def update(self, student: nn.Module) -> float:
        """One EMA step after an optimizer step; returns the decay that was used."""
        self.steps += 1
        alpha = ema_decay_at(self.steps, self.decay)
        teacher_params = dict(self.module.named_parameters())
        for name, p in student.named_parameters():
            t = teacher_params[name]
            t.mul_(alpha).add_(p.detach().to(t.dtype), alpha=1.0 - alpha)
        teacher_buffers = dict(self.module.named_buffers())
        for name, b in student.named_buffers():
            teacher_buffers[name].copy_(b)
        self.last_decay = alpha
        return alpha

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> Any:
        self.module.eval()
        return self.module(x)

    def state_dict(self) -> dict:
        return {"weights": self.module.state_dict(), "steps": self.steps, "decay": self.decay,
                "last_decay": self.last_decay}

    def load_state_dict(self, state: dict) -> None:
        missing = {"weights", "steps", "decay"} - set(state)
        if missing:
            raise ValueError(f"teacher state lacks {sorted(missing)}")
        self.module.load_state_dict(state["weights"])
        self.steps = int(state["steps"])
        self.decay = float(state["decay"])
        self.last_decay = float(state.get("last_decay", float("nan")))

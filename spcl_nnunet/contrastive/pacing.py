"""Schedules: self-paced learning pace gamma, warm-up + cosine learning rate, sigmoid ramp-up."""

from __future__ import annotations

import math

__all__ = ["gamma_at", "effective_warmup", "warmup_cosine_lr", "sigmoid_rampup"]


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def gamma_at(
    epoch: int | float, num_epochs: int, start: float, end: float, p: float = 0.5
) -> float:
    """Learning pace gamma(e) = start + (end - start) * (e / E)^p, e clipped to [0, E].

    ``end = inf`` returns inf at every epoch (gamma = inf is the plain contrastive loss).
    """
    if not num_epochs > 0:
        raise ValueError(f"num_epochs must be > 0, got {num_epochs}")
    if not (start > 0 and math.isfinite(start)):
        raise ValueError(f"start must be a finite number > 0, got {start}")
    if not p > 0:
        raise ValueError(f"p must be > 0, got {p}")
    if not end > 0:
        raise ValueError(f"end must be > 0 (or inf), got {end}")
    if math.isnan(epoch):
        raise ValueError(f"epoch must be a number, got {epoch}")
    if math.isinf(end):
        return math.inf
    t = _clip(float(epoch) / num_epochs, 0.0, 1.0)
    return start + (end - start) * t**p


def effective_warmup(max_epochs: int, warmup_epochs: int) -> int:
    """The warm-up W (epochs) that ``warmup_cosine_lr`` uses: ``warmup_epochs`` when the run is
    longer; else it is shortened to max(1, max_epochs // 5) epochs, and to 0 (no warm-up) when that
    leaves no epoch for the decay (max_epochs == 1)."""
    warm = warmup_epochs if max_epochs > warmup_epochs else max(1, max_epochs // 5)
    return 0 if warm >= max_epochs else warm


def warmup_cosine_lr(
    epoch: int | float,
    max_epochs: int,
    lr_init: float,
    multiplier: float,
    warmup_epochs: int = 10,
) -> float:
    """Learning rate of the paper's schedule at a (possibly fractional) epoch.

    Linear warm-up lr(e) = lr_init + (peak - lr_init) * e / W for e in [0, W], peak =
    multiplier * lr_init, then cosine decay lr(e) = peak * (1 + cos(pi * (e - W) / (M - W))) / 2
    down to 0 at e = M = max_epochs. The epoch is clipped to [0, M].

    If max_epochs <= warmup_epochs, the warm-up is shortened (``effective_warmup``; a caller
    that logs says so when it differs from ``warmup_epochs``).
    """
    if not max_epochs > 0:
        raise ValueError(f"max_epochs must be > 0, got {max_epochs}")
    if not lr_init >= 0:
        raise ValueError(f"lr_init must be >= 0, got {lr_init}")
    if not multiplier > 0:
        raise ValueError(f"multiplier must be > 0, got {multiplier}")
    if not warmup_epochs >= 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if math.isnan(epoch):
        raise ValueError(f"epoch must be a number, got {epoch}")

    warm = effective_warmup(max_epochs, warmup_epochs)
    peak = multiplier * lr_init
    e = _clip(float(epoch), 0.0, float(max_epochs))
    if e < warm:
        return lr_init + (peak - lr_init) * e / warm
    progress = (e - warm) / (max_epochs - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def sigmoid_rampup(epoch: int | float, rampup_epochs: int | float) -> float:
    """Ramp-up weight exp(-5 (1 - t)^2), t = clip(epoch / rampup_epochs, 0, 1).

    Returns 1.0 when rampup_epochs == 0 (no ramp-up).
    """
    if not rampup_epochs >= 0:
        raise ValueError(f"rampup_epochs must be >= 0, got {rampup_epochs}")
    if rampup_epochs == 0:
        return 1.0
    t = _clip(float(epoch) / rampup_epochs, 0.0, 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)

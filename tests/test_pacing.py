"""Tests for spcl_nnunet.contrastive.pacing schedules."""

from __future__ import annotations

import math

import pytest

from spcl_nnunet.contrastive.pacing import gamma_at, sigmoid_rampup, warmup_cosine_lr


def test_gamma_at_endpoints_and_midpoint():
    assert gamma_at(0, 100, 2.0, 50.0) == pytest.approx(2.0)
    assert gamma_at(100, 100, 2.0, 50.0) == pytest.approx(50.0)
    assert gamma_at(50, 100, 2.0, 50.0) == pytest.approx(2.0 + 48.0 * math.sqrt(0.5))
    assert gamma_at(25, 100, 2.0, 50.0, p=1.0) == pytest.approx(14.0)


def test_gamma_at_clips_epoch_and_is_monotone():
    assert gamma_at(-5, 100, 2.0, 50.0) == pytest.approx(2.0)
    assert gamma_at(150, 100, 2.0, 50.0) == pytest.approx(50.0)
    values = [gamma_at(e, 20, 2.0, 50.0) for e in range(21)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_gamma_at_inf_end():
    assert math.isinf(gamma_at(0, 10, 2.0, math.inf))
    assert math.isinf(gamma_at(5, 10, 2.0, math.inf))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_epochs=0, start=2.0, end=50.0), "num_epochs"),
        (dict(num_epochs=10, start=0.0, end=50.0), "start"),
        (dict(num_epochs=10, start=2.0, end=50.0, p=0.0), "p"),
        (dict(num_epochs=10, start=2.0, end=-1.0), "end"),
    ],
)
def test_gamma_at_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gamma_at(1, **kwargs)


def test_warmup_cosine_key_points():
    lr0, mult, max_e = 5e-5, 400.0, 80
    peak = lr0 * mult
    assert warmup_cosine_lr(0, max_e, lr0, mult) == pytest.approx(lr0)
    assert warmup_cosine_lr(5, max_e, lr0, mult) == pytest.approx((lr0 + peak) / 2)
    assert warmup_cosine_lr(10, max_e, lr0, mult) == pytest.approx(peak)
    assert warmup_cosine_lr(45, max_e, lr0, mult) == pytest.approx(peak / 2)
    assert warmup_cosine_lr(max_e, max_e, lr0, mult) == pytest.approx(0.0, abs=1e-15)
    assert warmup_cosine_lr(max_e + 10, max_e, lr0, mult) == pytest.approx(0.0, abs=1e-15)


def test_warmup_cosine_monotone():
    lr0, mult, max_e = 1e-7, 300.0, 75
    warm = [warmup_cosine_lr(e / 4, max_e, lr0, mult) for e in range(0, 41)]
    assert all(a < b for a, b in zip(warm, warm[1:]))
    decay = [warmup_cosine_lr(10 + e / 4, max_e, lr0, mult) for e in range(0, 4 * 65 + 1)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert max(warm + decay) == pytest.approx(lr0 * mult)


def test_warmup_cosine_short_run_scales_warmup():
    # max_epochs=5 <= warmup 10: warm-up over max(1, 5 // 5) = 1 epoch
    assert warmup_cosine_lr(0, 5, 1e-3, 10.0) == pytest.approx(1e-3)
    assert warmup_cosine_lr(1, 5, 1e-3, 10.0) == pytest.approx(1e-2)
    assert warmup_cosine_lr(5, 5, 1e-3, 10.0) == pytest.approx(0.0, abs=1e-15)
    # max_epochs=10 == warmup: warm-up over 2 epochs
    assert warmup_cosine_lr(2, 10, 1e-3, 10.0) == pytest.approx(1e-2)
    # max_epochs=1: no room for warm-up, pure cosine from the peak
    assert warmup_cosine_lr(0, 1, 1e-3, 10.0) == pytest.approx(1e-2)
    assert warmup_cosine_lr(1, 1, 1e-3, 10.0) == pytest.approx(0.0, abs=1e-15)


def test_warmup_cosine_validation():
    with pytest.raises(ValueError, match="max_epochs"):
        warmup_cosine_lr(0, 0, 1e-3, 10.0)
    with pytest.raises(ValueError, match="multiplier"):
        warmup_cosine_lr(0, 10, 1e-3, 0.0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        warmup_cosine_lr(0, 10, 1e-3, 2.0, warmup_epochs=-1)


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(10, 10) == pytest.approx(1.0)
    assert sigmoid_rampup(30, 10) == pytest.approx(1.0)
    assert sigmoid_rampup(-3, 10) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(0, 0) == 1.0
    with pytest.raises(ValueError, match="rampup_epochs"):
        sigmoid_rampup(0, -1)

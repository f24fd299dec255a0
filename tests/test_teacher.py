"""Mean Teacher EMA arithmetic and state (spcl_nnunet.networks.teacher)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spcl_nnunet.networks.teacher import MeanTeacher, ema_decay_at


def _student() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1))


def test_decay_warm_up_then_constant() -> None:
    assert ema_decay_at(1, 0.999) == 0.0
    assert ema_decay_at(2, 0.999) == 0.5
    assert ema_decay_at(10, 0.999) == pytest.approx(0.9)
    assert ema_decay_at(1000, 0.999) == 0.999          # 1 - 1/1000 == 0.999
    assert ema_decay_at(10_000, 0.999) == 0.999
    assert ema_decay_at(5, 0.5) == 0.5
    for bad in (-0.1, 1.0, 1.5, math.nan):
        with pytest.raises(ValueError, match="decay"):
            ema_decay_at(3, bad)
    with pytest.raises(ValueError, match="from 1"):
        ema_decay_at(0, 0.9)


def test_update_is_the_exponential_moving_average() -> None:
    student = _student()
    teacher = MeanTeacher(student, decay=0.9)
    start = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in student.state_dict().items())   # starts as a copy

    history = []
    for step in range(1, 6):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
        history.append({k: p.detach().clone() for k, p in student.named_parameters()})
        used = teacher.update(student)
        assert used == ema_decay_at(step, 0.9) and teacher.steps == step and teacher.last_decay == used

    # closed form: theta'_5 = sum_t (1 - a_t) prod_{s>t} a_s theta_t  (a_1 = 0 forgets the start)
    alphas = [ema_decay_at(t, 0.9) for t in range(1, 6)]
    for name, p in teacher.module.named_parameters():
        expected = torch.zeros_like(p, dtype=torch.float64)
        for t in range(5):
            coef = (1 - alphas[t]) * math.prod(alphas[t + 1:])
            expected += coef * history[t][name].double()
        torch.testing.assert_close(p.double(), expected, rtol=1e-5, atol=1e-6)
        assert not p.requires_grad


def test_first_update_copies_the_student_exactly_and_buffers_follow() -> None:
    student = _student()
    teacher = MeanTeacher(student, decay=0.999)
    student.train()
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(3.0)
    student(torch.randn(4, 2, 8, 8))                      # moves BatchNorm running statistics
    teacher.update(student)
    for (name, t), s in zip(teacher.module.state_dict().items(), student.state_dict().values()):
        assert torch.equal(t, s), name

    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student)                               # decay 0.5
    for (name, t), s in zip(teacher.module.named_parameters(), student.parameters()):
        torch.testing.assert_close(t, s - 0.5, rtol=0, atol=1e-6)


def test_teacher_is_outside_the_student_and_gets_no_gradient() -> None:
    student = _student()
    teacher = MeanTeacher(student)
    assert set(student.state_dict()) == set(teacher.module.state_dict())
    assert not {id(p) for p in teacher.module.parameters()} & {id(p) for p in student.parameters()}
    out = teacher.predict(torch.randn(2, 2, 8, 8))
    assert not out.requires_grad
    assert not teacher.module.training


def test_state_round_trip_is_bit_exact() -> None:
    student = _student()
    teacher = MeanTeacher(student, decay=0.95)
    for _ in range(3):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
        teacher.update(student)
    state = teacher.state_dict()
    restored = MeanTeacher(_student(), decay=0.5)
    restored.load_state_dict(state)
    assert (restored.steps, restored.decay, restored.last_decay) == (3, 0.95, teacher.last_decay)
    for k, v in teacher.module.state_dict().items():
        assert torch.equal(restored.module.state_dict()[k], v), k
    with pytest.raises(ValueError, match="steps"):
        restored.load_state_dict({"weights": state["weights"], "decay": 0.9})

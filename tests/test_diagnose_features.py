"""The read-outs of benchmarks/diagnose_features.py (issue #19: what the pre-training learns
against what segmentation needs), on hand-computed values."""

import importlib.util
import math
from pathlib import Path

import torch

_PATH = Path(__file__).parents[1] / "benchmarks" / "diagnose_features.py"
_spec = importlib.util.spec_from_file_location("diagnose_features", _PATH)
diagnose_features = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagnose_features)


def test_dice_per_class_by_hand():
    target = torch.tensor([0, 1, 1, 2, 2, 2, -1, 3])
    pred = torch.tensor([1, 1, 0, 2, 2, 0, 3, 0])
    dice = diagnose_features.dice_per_class(pred, target, classes=4)
    # class 1: pred {0,1}, target {1,2}: 2*1/(2+2); class 2: 2*2/(2+3); class 3: pred {} (the -1 pixel
    # is ignored), target {7}: 0
    assert dice[0] == 0.5
    assert math.isclose(dice[1], 0.8)
    assert dice[2] == 0.0


def test_dice_nan_when_class_absent_from_both():
    dice = diagnose_features.dice_per_class(torch.tensor([0, 1]), torch.tensor([0, 1]), classes=3)
    assert dice[0] == 1.0 and math.isnan(dice[1])


def test_pixel_sampling_half_foreground_and_only_labelled():
    seg = torch.full((2, 4, 4), 0)
    seg[0, 0, :3] = 2            # 3 foreground pixels in slice 0
    seg[0, 3, :] = -1            # 4 unlabelled pixels
    picks = diagnose_features.sample_pixels(seg, per_slice=8, generator=torch.Generator().manual_seed(0))
    flat0 = seg[0].flatten()[picks[0]]
    assert len(picks[0]) == 8 and int((flat0 > 0).sum()) == 3 and int((flat0 == 0).sum()) == 5
    assert len(set(picks[0].tolist())) == 8                       # no pixel twice
    assert len(picks[1]) == 8 and bool((seg[1].flatten()[picks[1]] == 0).all())

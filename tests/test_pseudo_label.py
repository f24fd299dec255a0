"""FixMatch-style pseudo-labels (``spcl_nnunet.losses.pseudo_label``): the strong view keeps each
pseudo-label on its anatomy, the threshold keeps exactly the confident pixels, CutMix boxes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spcl_nnunet.losses.consistency import random_geometric_transform
from spcl_nnunet.losses.pseudo_label import (
    CutMixBoxes,
    StrongView,
    confidence_masked_cross_entropy,
    pseudo_labels,
    random_cutmix_boxes,
)

CLASSES = 4


def anatomy(batch: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, labels): nested discs and a bar at random places; class k has intensity 100 k, so the
    class of a pixel can be read back from the image alone."""
    g = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    labels = torch.zeros((batch, 1, h, w), dtype=torch.long)
    for b in range(batch):
        cy, cx = (torch.rand(2, generator=g) * torch.tensor([h / 2, w / 2]) + torch.tensor([h / 4, w / 4])).tolist()
        r = ((v - cy) ** 2 + (u - cx) ** 2).sqrt()
        labels[b, 0][r < h / 3] = 1
        labels[b, 0][r < h / 5] = 2
        row = int(torch.randint(0, h - 3, (1,), generator=g))
        labels[b, 0, row:row + 3, : w // 2] = 3
    return labels.float() * 100, labels


def oracle_probabilities(image: torch.Tensor) -> torch.Tensor:
    """A 'teacher' that reads each pixel's class from its intensity, with confidences below 1."""
    labels = torch.round(image[:, 0] / 100).long().clamp(0, CLASSES - 1)
    return F.one_hot(labels, CLASSES).permute(0, 3, 1, 2).float() * 0.7 + 0.3 / CLASSES


@pytest.mark.parametrize("seed", range(4))
def test_each_pseudo_label_lands_on_its_anatomy_in_the_strong_view(seed: int) -> None:
    image, truth = anatomy(6, 40, 56, seed)
    labels, confidence = pseudo_labels(oracle_probabilities(image))
    assert torch.equal(labels, truth) and torch.allclose(confidence, torch.full_like(confidence, 0.7 + 0.3 / CLASSES))
    g = torch.Generator().manual_seed(100 + seed)
    view = StrongView(random_geometric_transform(6, (40, 56), generator=g),
                      random_cutmix_boxes(6, (40, 56), probability=1.0, generator=g))
    assert (view.boxes.boxes[:, 1] > view.boxes.boxes[:, 0]).all()          # every image has a box
    assert (view.boxes.source != torch.arange(6)).any()                     # and some come from another image
    strong = view.image(image)
    moved = view.move(labels)
    valid = view.valid_mask().bool()
    # the anatomy shown by each valid pixel of the strong view is the pseudo-label that was moved there
    assert torch.equal(moved[valid], torch.round(strong / 100).long()[valid])
    assert valid.float().mean() > 0.5
    # valid: the pixels of the strong view that come from inside an image (a pasted box brings its own)
    assert torch.equal(valid.float(), view.move(torch.ones_like(image)))
    # a pasted box carries its own image's labels: moving the labels with T only (no boxes) disagrees
    only_t = view.transform.apply(labels)
    assert not torch.equal(only_t[valid], torch.round(strong / 100).long()[valid])


def test_intensity_perturbation_does_not_move_pixels() -> None:
    image, _ = anatomy(2, 32, 32, 0)
    g = torch.Generator().manual_seed(5)
    view = StrongView(random_geometric_transform(2, (32, 32), generator=g),
                      random_cutmix_boxes(2, (32, 32), probability=1.0, generator=g))
    seen = []
    strong = view.image(image, lambda x: seen.append(x.clone()) or x * 2 + 1)
    assert torch.equal(strong, view.move(image) * 2 + 1) and torch.equal(seen[0], view.move(image))


def test_threshold_keeps_exactly_the_confident_valid_pixels() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    labels = torch.randint(0, 3, (2, 1, 4, 5))
    confidence = torch.tensor([0.2, 0.5, 0.75, 0.9, 1.0]).repeat(2, 1, 4, 1)   # columns: 0.2 .. 1.0
    valid = torch.ones(2, 1, 4, 5)
    valid[1, 0, 0] = 0                                                         # one row out of the image
    loss, kept = confidence_masked_cross_entropy(logits, labels, confidence, valid, threshold=0.75)
    mask = (confidence >= 0.75) & valid.bool()                                 # 0.75 itself is kept
    assert mask.sum() == 2 * 4 * 3 - 3
    ce = -torch.log_softmax(logits, 1).gather(1, labels)
    by_hand = (ce * mask).sum() / valid.sum()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert kept.item() == pytest.approx(mask.sum().item() / valid.sum().item())
    # every pixel at or above 0.75 counts, with its own cross-entropy: raising one confident pixel's
    # target loss raises L_u by exactly that change over |Omega|
    shifted = logits.clone()
    shifted[0, :, 2, 4] = torch.tensor([5.0, -5.0, 0.0])
    moved, _ = confidence_masked_cross_entropy(shifted, labels, confidence, valid, threshold=0.75)
    delta = (-torch.log_softmax(shifted, 1).gather(1, labels) - ce)[0, 0, 2, 4] / valid.sum()
    assert moved.item() - loss.item() == pytest.approx(delta.item(), rel=1e-4, abs=1e-6)
    # a pixel below the threshold adds nothing, whatever its loss
    shifted = logits.clone()
    shifted[0, :, 2, 1] = torch.tensor([50.0, -50.0, 0.0])
    assert confidence_masked_cross_entropy(shifted, labels, confidence, valid, 0.75)[0].item() == \
        pytest.approx(loss.item(), rel=1e-6)
    assert confidence_masked_cross_entropy(logits, labels, confidence, valid, 1.0)[1].item() == \
        pytest.approx(8 / valid.sum().item() - 1 / valid.sum().item())        # threshold 1.0: the 1.0 column
    with pytest.raises(ValueError, match="threshold"):
        confidence_masked_cross_entropy(logits, labels, confidence, valid, 1.5)


def test_class_balanced_loss_shares_the_kept_weight_equally_among_the_kept_classes() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 2, 4, requires_grad=True)
    labels = torch.tensor([[[[0, 0, 0, 1], [2, 2, 0, 0]]]])
    confidence = torch.tensor([[[[0.99, 0.99, 0.99, 0.99], [0.5, 0.5, 0.5, 0.5]]]])   # kept: 3 x class 0, 1 x class 1
    valid = torch.ones(1, 1, 2, 4)
    ce = -torch.log_softmax(logits.detach(), 1).gather(1, labels)[0, 0]
    plain, kept = confidence_masked_cross_entropy(logits, labels, confidence, valid, 0.95)
    balanced, kept_too = confidence_masked_cross_entropy(logits, labels, confidence, valid, 0.95, class_balanced=True)
    assert kept.item() == kept_too.item() == pytest.approx(0.5)
    assert plain.item() == pytest.approx(ce[0].sum().item() / 8, rel=1e-6)
    # |K|/|Omega| = 4/8, shared equally by class 0 (3 pixels) and class 1 (1 pixel); class 2 is below tau
    assert balanced.item() == pytest.approx(0.5 * (ce[0, :3].mean().item() + ce[0, 3].item()) / 2, rel=1e-6)
    balanced.backward()
    grad = logits.grad.abs().sum(1)[0]
    assert grad[1].sum().item() == 0 and grad[0, 3] > grad[0, 0]     # the lone class-1 pixel weighs more
    # one kept class: the same as the plain loss; nothing kept: 0
    one = labels.clone()
    one[0, 0, 0, 3] = 0
    assert confidence_masked_cross_entropy(logits, one, confidence, valid, 0.95, class_balanced=True)[0].item() == \
        pytest.approx(confidence_masked_cross_entropy(logits, one, confidence, valid, 0.95)[0].item(), rel=1e-6)
    assert confidence_masked_cross_entropy(logits, labels, confidence, valid, 1.0, class_balanced=True)[0].item() == 0


def test_cutmix_boxes_sizes_and_sources() -> None:
    g = torch.Generator().manual_seed(3)
    h, w = 48, 64
    boxes = random_cutmix_boxes(400, (h, w), probability=0.5, area_range=(0.02, 0.4), generator=g)
    heights = boxes.boxes[:, 1] - boxes.boxes[:, 0]
    widths = boxes.boxes[:, 3] - boxes.boxes[:, 2]
    used = heights > 0
    assert 0.4 < used.float().mean() < 0.6
    area = (heights * widths)[used].float() / (h * w)
    assert area.min() > 0.01 and area.max() < 0.45                               # rounding to whole pixels
    assert (boxes.boxes[:, 1] <= h).all() and (boxes.boxes[:, 3] <= w).all() and (boxes.boxes >= 0).all()
    assert sorted(boxes.source.tolist()) == list(range(400))
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    mixed = CutMixBoxes(torch.tensor([1, 0]), torch.tensor([[1, 3, 0, 2], [0, 0, 0, 0]])).apply(x)
    assert torch.equal(mixed[0, 0, 1:3, 0:2], x[1, 0, 1:3, 0:2]) and torch.equal(mixed[1], x[1])
    untouched = torch.ones_like(mixed[0, 0], dtype=torch.bool)
    untouched[1:3, 0:2] = False
    assert torch.equal(mixed[0, 0][untouched], x[0, 0][untouched])
    assert math.isclose(float(mixed.sum() - x.sum()), float((x[1, 0, 1:3, 0:2] - x[0, 0, 1:3, 0:2]).sum()))


def test_strong_intensity_perturbation_changes_values_not_places() -> None:
    """batchgeneratorsv2's strong-view transforms change intensities (brightness, contrast, gamma,
    noise, blur), never where the anatomy is: a bright disc stays where it was."""
    from spcl_nnunet.training.strong_view import strong_intensity_transforms

    torch.manual_seed(0)
    image, _ = anatomy(1, 48, 48, 7)
    x = (image[0] - image[0].mean()) / image[0].std()                 # nnU-Net's z-scored intensities
    transforms = strong_intensity_transforms()
    changed = 0
    for _ in range(20):
        y = transforms(image=x.clone())["image"]
        assert y.shape == x.shape and torch.isfinite(y).all()
        changed += not torch.allclose(y, x)
        # every pixel keeps its place: the perturbed image still follows the original pixel by pixel
        # (monotone intensity maps, small noise and blur), as a moved (e.g. flipped) one would not
        correlation = torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1]
        assert correlation > 0.8, float(correlation)
    assert changed >= 15                                              # p(no transform) = 0.2 * 0.2 * 0.5^3 = 0.005

"""Discrete mutual information between the cluster assignments of two views (IIC, Ji et al. 2019).

Used as in the discrete-MI regulariser of ref. [8]: a cluster head maps a feature of each view
to K-way probabilities, p1 = h(T(F(x))) and p2 = h(F(x')), and the loss is minus their mutual
information. Over N samples (or pixels) with rows p1_n, p2_n in the probability simplex:

    J      = sum_n p1_n p2_n^T                     (K, K) joint counts
    P      = (J + J^T) / 2, then P <- P / sum(P)   symmetrised, normalised joint
    P_i    = sum_j P_ij,  P_j = sum_i P_ij         marginals
    L_IIC  = -MI = -sum_ij P_ij (log P_ij - log P_i - log P_j)

Closed forms: balanced one-hot assignments agreeing in both views give -log K (the minimum,
since MI <= H(P_i) <= log K); uniform rows and a collapsed (single-cluster) assignment give 0.

Dense version (decoder features): p1, p2 are (B, K, H, W) per-pixel maps and the joint sums
over all pixels of all images, with no displacement padding (p = 0, as the authors' release):
it equals ``iic_loss`` on the flattened pixels (B*H*W, K). We do NOT subtract min(P) before
normalising, which the reference release's dense loss does (a departure from the paper that
changes the MI of soft assignments); this is the paper's MI.

Numerics: eps = 1e-10 is 0 in float16, so everything is computed in float32 with autocast
disabled whatever the input dtype; P and the marginals are clamped to eps out of place (no
in-place op on tensors autograd needs), so log is finite and collapsed heads keep finite
gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["iic_loss", "dense_iic_loss"]


def _neg_mutual_information(joint: Tensor, eps: float) -> Tensor:
    """-MI of the (K, K) float32 joint counts ``joint`` after symmetrising and normalising."""
    joint = (joint + joint.t()) / 2
    joint = joint / joint.sum()
    p_i = joint.sum(dim=1, keepdim=True).clamp(min=eps)
    p_j = joint.sum(dim=0, keepdim=True).clamp(min=eps)
    joint = joint.clamp(min=eps)
    return -(joint * (torch.log(joint) - torch.log(p_i) - torch.log(p_j))).sum()


def _check_eps(eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def iic_loss(p1: Tensor, p2: Tensor, eps: float = 1e-10) -> Tensor:
    """-MI between the cluster assignments ``p1`` and ``p2`` of shape (N, K) (rows: softmax
    outputs of the two views); a float32 scalar in [-log K, 0] (up to eps)."""
    if p1.dim() != 2 or p2.dim() != 2:
        raise ValueError(f"expected two (N, K) probability matrices, got shapes {tuple(p1.shape)} and "
                         f"{tuple(p2.shape)}")
    if p1.shape != p2.shape:
        raise ValueError(f"the two views' assignments differ in shape: {tuple(p1.shape)} vs {tuple(p2.shape)}")
    if p1.shape[0] == 0 or p1.shape[1] == 0:
        raise ValueError(f"expected at least one sample and one cluster, got shape {tuple(p1.shape)}")
    _check_eps(eps)
    with torch.autocast(device_type=p1.device.type, enabled=False):
        a, b = p1.float(), p2.float()
        return _neg_mutual_information(a.t() @ b, eps)


def dense_iic_loss(p1: Tensor, p2: Tensor, eps: float = 1e-10) -> Tensor:
    """-MI between per-pixel assignments ``p1``, ``p2`` of shape (B, K, H, W) (softmax over
    dim 1), the joint summed over all pixels of all images (displacement padding p = 0);
    equal to ``iic_loss`` on the flattened pixels. min(P) is not subtracted (see module doc)."""
    if p1.dim() != 4 or p2.dim() != 4:
        raise ValueError(f"expected two (B, K, H, W) probability maps, got shapes {tuple(p1.shape)} and "
                         f"{tuple(p2.shape)}")
    if p1.shape != p2.shape:
        raise ValueError(f"the two views' assignment maps differ in shape: {tuple(p1.shape)} vs "
                         f"{tuple(p2.shape)}")
    if p1.numel() == 0:
        raise ValueError(f"expected at least one pixel and one cluster, got shape {tuple(p1.shape)}")
    _check_eps(eps)
    with torch.autocast(device_type=p1.device.type, enabled=False):
        a, b = p1.float().flatten(2), p2.float().flatten(2)               # (B, K, H*W)
        joint = torch.bmm(a, b.transpose(1, 2)).sum(dim=0)                # (K, K), summed over pixels
        return _neg_mutual_information(joint, eps)

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

__all__ = ["iic_loss", "dense_iic_loss", "multihead_iic_loss", "multihead_dense_iic_loss"]


def _neg_mutual_information(joint: Tensor, eps: float) -> Tensor:
    """-MI of float32 joint counts ``joint`` (..., K, K) after symmetrising and normalising each
    (K, K) matrix; shape (...)."""
    joint = (joint + joint.transpose(-1, -2)) / 2
    joint = joint / joint.sum(dim=(-2, -1), keepdim=True)
    p_i = joint.sum(dim=-1, keepdim=True).clamp(min=eps)
    p_j = joint.sum(dim=-2, keepdim=True).clamp(min=eps)
    joint = joint.clamp(min=eps)
    return -(joint * (torch.log(joint) - torch.log(p_i) - torch.log(p_j))).sum(dim=(-2, -1))


def _check_pair(p1: Tensor, p2: Tensor, dims: int, expected: str, what: str) -> None:
    if p1.dim() != dims or p2.dim() != dims:
        raise ValueError(f"expected two {expected} {what}, got shapes {tuple(p1.shape)} and {tuple(p2.shape)}")
    if p1.shape != p2.shape:
        raise ValueError(f"the two views' {what} differ in shape: {tuple(p1.shape)} vs {tuple(p2.shape)}")
    if p1.numel() == 0:
        raise ValueError(f"expected at least one sample and one cluster, got shape {tuple(p1.shape)}")


def _check_eps(eps: float) -> None:
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")


def multihead_iic_loss(p1: Tensor, p2: Tensor, eps: float = 1e-10) -> Tensor:
    """Mean over sub-heads of -MI between the assignments ``p1``, ``p2`` of shape (N, heads, K):
    the joint of head h is sum_n p1[n, h] p2[n, h]^T (all heads in one batched product)."""
    _check_pair(p1, p2, 3, "(N, heads, K)", "assignments")
    _check_eps(eps)
    with torch.autocast(device_type=p1.device.type, enabled=False):
        a, b = p1.float(), p2.float()
        joint = torch.einsum("nhk,nhl->hkl", a, b)                              # (heads, K, K)
        return _neg_mutual_information(joint, eps).mean()


def multihead_dense_iic_loss(p1: Tensor, p2: Tensor, eps: float = 1e-10) -> Tensor:
    """Mean over sub-heads of -MI between per-pixel assignments ``p1``, ``p2`` of shape
    (B, heads, K, H, W) (softmax over dim 2), each head's joint summed over all pixels of all
    images (displacement padding p = 0). min(P) is not subtracted (see module doc)."""
    _check_pair(p1, p2, 5, "(B, heads, K, H, W)", "assignment maps")
    _check_eps(eps)
    with torch.autocast(device_type=p1.device.type, enabled=False):
        a, b = p1.float().flatten(3), p2.float().flatten(3)                     # (B, heads, K, H*W)
        joint = torch.einsum("bhkp,bhlp->hkl", a, b)                            # summed over pixels
        return _neg_mutual_information(joint, eps).mean()


def iic_loss(p1: Tensor, p2: Tensor, eps: float = 1e-10) -> Tensor:
    """-MI between the cluster assignments ``p1`` and ``p2`` of shape (N, K) (rows: softmax
    outputs of the two views); a float32 scalar in [-log K, 0] (up to eps)."""
    _check_pair(p1, p2, 2, "(N, K)", "assignments")
    return multihead_iic_loss(p1.unsqueeze(1), p2.unsqueeze(1), eps)


def dense_iic_loss(p1: Tensor, p2: Tensor, eps: float = 1e-10) -> Tensor:
    """-MI between per-pixel assignments ``p1``, ``p2`` of shape (B, K, H, W) (softmax over
    dim 1), the joint summed over all pixels of all images (displacement padding p = 0);
    equal to ``iic_loss`` on the flattened pixels. min(P) is not subtracted (see module doc)."""
    _check_pair(p1, p2, 4, "(B, K, H, W)", "assignment maps")
    return multihead_dense_iic_loss(p1.unsqueeze(1), p2.unsqueeze(1), eps)

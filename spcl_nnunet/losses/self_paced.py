"""Self-paced supervised contrastive loss with meta-labels (Peng et al., NeurIPS 2021).

Rows are ordered view-major: the row of view ``v`` of image ``b`` is ``r = v * B + b``
(as ``torch.cat(torch.unbind(features, 1))``), ``n = B * V``.

    l_ij  = -log( exp(z_i.z_j / tau) / sum_{a != i} exp(z_i.z_a / tau) )
    P(i)  = { j != i : label(j) == label(i) }
    L_sp  = mean_{i : |P(i)| > 0} 1/|P(i)| sum_{j in P(i)} w_ij l_ij

with the weights computed without gradient:
    soft (linear regulariser): w_ij = clamp(1 - l_ij / gamma, 0, 1)
    hard:                      w_ij = 1[l_ij < gamma]
gamma = inf gives w_ij = 1, i.e. the plain supervised contrastive loss L_con.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = [
    "positive_mask",
    "mean_positive_weight",
    "self_paced_supcon",
    "combined_self_paced_supcon",
]

_MODES = ("soft", "hard")


def _validate_labels(labels: Tensor, batch_size: int) -> None:
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a torch.Tensor or None, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != batch_size:
        raise ValueError(
            f"labels must have shape ({batch_size},) (one meta-label per image), "
            f"got shape {tuple(labels.shape)}"
        )


def positive_mask(
    labels: Tensor | None,
    batch_size: int,
    num_views: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """(n, n) bool mask of positive pairs P(i) = {j != i : label(j) == label(i)}, n = B * V.

    Rows/columns are view-major (r = v * B + b). ``labels=None`` means SimCLR: each image is
    its own class, so only its other views are positives. The diagonal is False.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if labels is None:
        ids = torch.arange(batch_size, device=device)
    else:
        _validate_labels(labels, batch_size)
        ids = labels.to(device) if device is not None else labels
    ids = ids.repeat(num_views)  # row v * B + b -> ids[b]
    mask = ids.unsqueeze(0) == ids.unsqueeze(1)
    mask.fill_diagonal_(False)
    return mask


def mean_positive_weight(weights: Tensor, labels: Tensor | None, num_views: int) -> float:
    """Mean of ``weights`` over the positive pairs (i, j in P(i)); 0.0 if there are none."""
    if weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
        raise ValueError(
            f"weights must be a square (n, n) matrix, got shape {tuple(weights.shape)}"
        )
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    n = weights.shape[0]
    if n % num_views != 0:
        raise ValueError(f"weights size n={n} is not a multiple of num_views={num_views}")
    mask = positive_mask(labels, n // num_views, num_views, device=weights.device)
    if not bool(mask.any()):
        return 0.0
    return float(weights.detach()[mask].float().mean())


def _normalise(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Row-wise L2 normalisation z = x / max(||x||, eps), safe for huge, tiny and zero rows.

    Rows are first divided by their (detached) max-abs value, which leaves z and its gradient
    unchanged (normalisation is scale-invariant) but keeps ||x||^2 inside the float32 range.
    """
    scale = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    y = x / scale
    sq = (y * y).sum(dim=-1, keepdim=True).clamp_min(eps * eps)
    return y * torch.rsqrt(sq)


def _pair_weights(losses: Tensor, gamma: float, mode: str) -> Tensor:
    """Self-paced weights: soft w = clamp(1 - l/gamma, 0, 1), hard w = 1[l < gamma]."""
    if math.isinf(gamma):
        return torch.ones_like(losses)
    if mode == "soft":
        return (1.0 - losses / gamma).clamp(0.0, 1.0)
    return (losses < gamma).to(losses.dtype)


def self_paced_supcon(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 0.07,
    gamma: float = float("inf"),
    mode: str = "soft",
    correct_grad: bool = False,
    return_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Self-paced supervised contrastive loss L_sp and the (n, n) pair-weight matrix.

    L_sp = mean_{i : |P(i)|>0} 1/|P(i)| sum_{j in P(i)} w_ij l_ij,
    l_ij = -log( exp(z_i.z_j/tau) / sum_{a != i} exp(z_i.z_a/tau) ), z = features / ||features||.

    Computed without an (n, n) matrix of l_ij: with s_ij = z_i.z_j / tau and lse_i the log-sum-exp
    of row i over a != i, l_ij = lse_i - s_ij, so sum_j w_ij l_ij = lse_i sum_j w_ij - sum_j w_ij s_ij,
    and the soft weight is clamp((s_ij - lse_i + gamma) / gamma, 0, 1).

    Args:
        features: (B, V, D) features of B images with V views each (any scale).
        labels: (B,) meta-labels, or None for SimCLR (each image is its own class).
        temperature: tau > 0.
        gamma: learning pace gamma > 0; inf gives w = 1 (plain SupCon).
        mode: "soft" (linear regulariser) or "hard".
        correct_grad: divide the loss by the (detached) mean positive weight when it is > 0.
        return_weights: build the (n, n) weight matrix of every pair (for heat-maps and the mean
            positive weight); False returns None in its place and saves its cost.

    Returns:
        ``(loss, weights)``: a 0-d float32 loss, and detached float32 (n, n) weights w_ij for
        every pair i != j (positives and negatives), zero on the diagonal (None when
        ``return_weights`` is False).
    """
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must have shape (B, V, D), got {shape}")
    batch_size, num_views, _ = features.shape
    if batch_size < 1 or num_views < 1:
        raise ValueError(
            f"features must have B >= 1 and V >= 1 in shape (B, V, D), got {tuple(features.shape)}"
        )
    if labels is not None:
        _validate_labels(labels, batch_size)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    gamma = float(gamma)
    if not gamma > 0:  # also rejects NaN
        raise ValueError(f"gamma must be > 0, got {gamma}")
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")

    n = batch_size * num_views
    device = features.device
    with torch.autocast(device_type=device.type, enabled=False):
        z = _normalise(features.float())
        z = z.transpose(0, 1).reshape(n, -1)  # view-major rows: v * B + b
        anchor_zero = z.sum() * 0.0  # graph-connected zero

        if n < 2:  # no a != i: nothing to contrast
            empty = torch.zeros(n, n, dtype=torch.float32, device=device) if return_weights else None
            return anchor_zero, empty

        logits = (z * (1.0 / temperature)) @ z.T
        # a == i leaves every sum: |s_ij| <= 1/tau, so a diagonal 100 below the smallest possible
        # logit adds at most exp(-100) to a row sum >= 1 (lost to float32 rounding), and keeps
        # 0 * s_ii finite; the in-place fill also stops the gradient of s_ii
        logits.fill_diagonal_(-1.0 / temperature - 100.0)
        lse = torch.logsumexp(logits, dim=1)

        with torch.no_grad():
            pos = positive_mask(labels, batch_size, num_views, device=device)
            num_pos = pos.sum(dim=1)
            weights = None
            if math.isinf(gamma):
                pos_weights = pos.to(torch.float32)
                if return_weights:
                    weights = torch.ones(n, n, dtype=torch.float32, device=device).fill_diagonal_(0.0)
            else:
                shifted = logits - (lse - gamma).unsqueeze(1)  # gamma - l_ij
                if mode == "soft":
                    all_weights = shifted.mul_(1.0 / gamma).clamp_(0.0, 1.0)
                else:
                    all_weights = (shifted > 0).to(torch.float32)
                all_weights.fill_diagonal_(0.0)
                weights = all_weights.clone() if return_weights else None
                pos_weights = all_weights.mul_(pos)

        has_pos = num_pos > 0
        if not bool(has_pos.any()):
            return anchor_zero, weights

        row_weight = pos_weights.sum(dim=1)
        weighted_logits = torch.bmm(pos_weights.unsqueeze(1), logits.unsqueeze(2)).view(n)  # sum_j w_ij s_ij
        per_anchor = (lse * row_weight - weighted_logits) / num_pos.clamp_min(1).to(torch.float32)
        loss = per_anchor[has_pos].mean()

        if correct_grad:
            mean_w = row_weight.sum() / num_pos.sum()
            if bool(mean_w > 0):
                loss = loss / mean_w
    return loss, weights


def combined_self_paced_supcon(
    features: Tensor,
    labels_by_key: Mapping[str, Tensor | None],
    lambdas: Mapping[str, float],
    **kwargs: object,
) -> tuple[Tensor, dict[str, tuple[Tensor, Tensor]]]:
    """Multi-meta-label loss L = sum_k lambda_k L_sp^k (main paper Eq. 14).

    ``kwargs`` go to :func:`self_paced_supcon`; ``gamma`` may be a float or a per-key mapping.
    Returns the total loss and ``{key: (loss_k, weights_k)}``.
    """
    label_keys, lambda_keys = set(labels_by_key), set(lambdas)
    if label_keys != lambda_keys:
        raise ValueError(
            "labels_by_key and lambdas must have the same keys; "
            f"only in labels_by_key: {sorted(label_keys - lambda_keys)}, "
            f"only in lambdas: {sorted(lambda_keys - label_keys)}"
        )
    if not label_keys:
        raise ValueError("labels_by_key is empty: give at least one meta-label")
    gamma = kwargs.pop("gamma", float("inf"))
    if isinstance(gamma, Mapping):
        gamma_keys = set(gamma)
        if gamma_keys != label_keys:
            raise ValueError(
                "a per-key gamma mapping must have the same keys as labels_by_key; "
                f"missing: {sorted(label_keys - gamma_keys)}, "
                f"extra: {sorted(gamma_keys - label_keys)}"
            )

    total: Tensor | None = None
    parts: dict[str, tuple[Tensor, Tensor]] = {}
    for key, labels in labels_by_key.items():
        gamma_k = gamma[key] if isinstance(gamma, Mapping) else gamma
        loss_k, weights_k = self_paced_supcon(
            features, labels, gamma=gamma_k, **kwargs  # type: ignore[arg-type]
        )
        parts[key] = (loss_k, weights_k)
        term = float(lambdas[key]) * loss_k
        total = term if total is None else total + term
    assert total is not None
    return total, parts

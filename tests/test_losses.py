"""Tests for spcl_nnunet.losses: closed forms, a naive reference, gradients and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spcl_nnunet.losses import (
    combined_self_paced_supcon,
    mean_positive_weight,
    positive_mask,
    self_paced_supcon,
)

INF = float("inf")


# --------------------------------------------------------------------------------------------
# Independent naive reference (python loops, float64)
# --------------------------------------------------------------------------------------------
def reference(features: np.ndarray, labels, tau: float, gamma: float = INF, mode: str = "soft"):
    """Return (loss, weights, pair_losses) by direct double loops over view-major rows."""
    B, V, _ = features.shape
    rows, ids = [], []
    for v in range(V):
        for b in range(B):
            x = features[b, v].astype(np.float64)
            norm = math.sqrt(float(np.dot(x, x)))
            rows.append(x / norm if norm > 0 else x)
            ids.append(b if labels is None else int(labels[b]))
    n = len(rows)
    sim = [[float(np.dot(rows[i], rows[j])) / tau for j in range(n)] for i in range(n)]
    l = np.zeros((n, n))
    w = np.zeros((n, n))
    for i in range(n):
        denom = sum(math.exp(sim[i][a]) for a in range(n) if a != i)
        for j in range(n):
            if j == i:
                continue
            l[i, j] = -math.log(math.exp(sim[i][j]) / denom)
            if math.isinf(gamma):
                w[i, j] = 1.0
            elif mode == "soft":
                w[i, j] = min(1.0, max(0.0, 1.0 - l[i, j] / gamma))
            else:
                w[i, j] = 1.0 if l[i, j] < gamma else 0.0
    total, anchors = 0.0, 0
    for i in range(n):
        pos = [j for j in range(n) if j != i and ids[j] == ids[i]]
        if pos:
            total += sum(w[i, j] * l[i, j] for j in pos) / len(pos)
            anchors += 1
    return (total / anchors if anchors else 0.0), w, l


def torch_fixed_weight_loss(features: torch.Tensor, pos: torch.Tensor, w: torch.Tensor, tau: float):
    """Same objective with w given as constants, written independently in plain torch."""
    B, V, D = features.shape
    z = torch.cat(torch.unbind(features, 1), 0)
    z = z / z.norm(dim=1, keepdim=True)
    n = z.shape[0]
    sim = z @ z.T / tau
    off = ~torch.eye(n, dtype=torch.bool)
    denom = torch.stack([torch.logsumexp(sim[i][off[i]], 0) for i in range(n)])
    l = denom[:, None] - sim
    terms = (pos.float() * w * l).sum(1) / pos.sum(1).clamp_min(1)
    return terms[pos.any(1)].mean()


# --------------------------------------------------------------------------------------------
# Hand-made closed form: B=2, V=2, 2-D unit vectors, tau=1
#   rows (view-major): r0=(1,0) [b0,v0], r1=(-1,0) [b1,v0], r2=(0,1) [b0,v1], r3=(0,-1) [b1,v1]
#   every anchor sees dots {-1, 0, 0} with the others, so l_ij = log(2 + 1/e) - d_ij.
# --------------------------------------------------------------------------------------------
L0 = math.log(2.0 + math.exp(-1.0))
DOTS = np.array(
    [[0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, -1], [0, 0, -1, 0]], dtype=np.float64
)
L_HAND = L0 - DOTS
np.fill_diagonal(L_HAND, 0.0)


def hand_features(scale: float = 3.0) -> torch.Tensor:
    f = torch.zeros(2, 2, 2)
    f[0, 0] = torch.tensor([1.0, 0.0])
    f[1, 0] = torch.tensor([-1.0, 0.0])
    f[0, 1] = torch.tensor([0.0, 1.0])
    f[1, 1] = torch.tensor([0.0, -1.0])
    return f * scale


def test_hand_case_simclr_closed_form():
    loss, w = self_paced_supcon(hand_features(), None, temperature=1.0)
    assert loss.item() == pytest.approx(L0, rel=1e-6)
    expected_w = np.ones((4, 4)) - np.eye(4)
    np.testing.assert_allclose(w.numpy(), expected_w)


def test_hand_case_shared_label_closed_form():
    loss, _ = self_paced_supcon(hand_features(), torch.tensor([5, 5]), temperature=1.0)
    assert loss.item() == pytest.approx(L0 + 1.0 / 3.0, rel=1e-6)


def test_hand_case_soft_weights_matrix():
    gamma = 2.0
    loss, w = self_paced_supcon(hand_features(), torch.tensor([0, 0]), temperature=1.0, gamma=gamma)
    expected_w = np.clip(1.0 - L_HAND / gamma, 0.0, 1.0)
    np.fill_diagonal(expected_w, 0.0)
    np.testing.assert_allclose(w.numpy(), expected_w, rtol=1e-6, atol=1e-7)
    # each anchor: positives are the 3 others, two with d=0 and one with d=-1
    per_anchor = (2 * (1 - L0 / gamma) * L0 + (1 - (L0 + 1) / gamma) * (L0 + 1)) / 3
    assert loss.item() == pytest.approx(per_anchor, rel=1e-6)


def test_hand_case_hard_vs_soft():
    gamma = 1.5  # L0 ~ 0.862 < 1.5 < L0 + 1 ~ 1.862
    labels = torch.tensor([0, 0])
    loss_h, w_h = self_paced_supcon(hand_features(), labels, temperature=1.0, gamma=gamma, mode="hard")
    loss_s, w_s = self_paced_supcon(hand_features(), labels, temperature=1.0, gamma=gamma, mode="soft")
    expected_h = (L_HAND < gamma).astype(np.float64)
    np.fill_diagonal(expected_h, 0.0)
    np.testing.assert_allclose(w_h.numpy(), expected_h)
    expected_s = np.where(DOTS == 0, 1.0 - L0 / gamma, 0.0)
    np.fill_diagonal(expected_s, 0.0)
    np.testing.assert_allclose(w_s.numpy(), expected_s, rtol=1e-6, atol=1e-7)
    assert loss_h.item() == pytest.approx(2 * L0 / 3, rel=1e-6)
    assert loss_s.item() == pytest.approx(2 * (1 - L0 / gamma) * L0 / 3, rel=1e-6)


# --------------------------------------------------------------------------------------------
# Reference equality (gamma=inf is plain SupCon / SimCLR) and self-paced weights
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_labels", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gamma_inf_matches_reference_supcon(use_labels, seed):
    rng = np.random.default_rng(seed)
    B, V, D = 5, 2, 7
    f = rng.normal(size=(B, V, D)).astype(np.float32) * 4.0
    labels = rng.integers(0, 3, size=B) if use_labels else None
    loss, w = self_paced_supcon(
        torch.from_numpy(f), None if labels is None else torch.from_numpy(labels), temperature=0.5
    )
    ref_loss, ref_w, _ = reference(f, labels, 0.5)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(w.numpy(), ref_w)


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 4),
    V=st.integers(1, 3),
    D=st.integers(2, 5),
    seed=st.integers(0, 10_000),
    use_labels=st.booleans(),
    gamma=st.sampled_from([INF, 0.5, 2.0, 4.0, 50.0]),
    mode=st.sampled_from(["soft", "hard"]),
    tau=st.sampled_from([0.07, 0.5, 1.0]),
)
def test_matches_reference_property(B, V, D, seed, use_labels, gamma, mode, tau):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(B, V, D)).astype(np.float32)
    labels = rng.integers(0, 2, size=B) if use_labels else None
    loss, w = self_paced_supcon(
        torch.from_numpy(f),
        None if labels is None else torch.from_numpy(labels),
        temperature=tau,
        gamma=gamma,
        mode=mode,
    )
    ref_loss, ref_w, ref_l = reference(f, labels, tau, gamma, mode)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(ref_loss, rel=1e-4, abs=1e-5)
    if mode == "hard" and not math.isinf(gamma):
        near = np.abs(ref_l - gamma) < 1e-4  # float32 vs float64 may flip exact ties
        np.testing.assert_allclose(w.numpy()[~near], ref_w[~near])
    else:
        np.testing.assert_allclose(w.numpy(), ref_w, atol=1e-5)
    wn = w.numpy()
    assert np.all(np.diag(wn) == 0)
    assert np.all((wn >= 0) & (wn <= 1))
    if mode == "hard":
        assert set(np.unique(wn)).issubset({0.0, 1.0})


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 4), V=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_pair_loss_bound_theorem(B, V, seed):
    """l_ij <= log(n-1) + 2/tau < log(n) + 2/tau, so a hard gamma at that bound keeps every pair."""
    tau = 0.07
    f = torch.from_numpy(np.random.default_rng(seed).normal(size=(B, V, 4)).astype(np.float32))
    n = B * V
    _, w = self_paced_supcon(f, None, temperature=tau, gamma=math.log(n) + 2 / tau + 1e-3, mode="hard")
    assert torch.equal(w, 1.0 - torch.eye(n))


def test_large_gamma_soft_approaches_plain():
    torch.manual_seed(0)
    f = torch.randn(6, 2, 8)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    plain, _ = self_paced_supcon(f, labels)
    prev_gap = INF
    for gamma in (10.0, 100.0, 1e4, 1e7):
        loss, w = self_paced_supcon(f, labels, gamma=gamma, mode="soft")
        gap = abs(loss.item() - plain.item())
        assert gap <= prev_gap + 1e-7
        prev_gap = gap
    assert prev_gap < 1e-5 * plain.item()


def test_soft_weights_equal_clamped_formula_and_decrease_with_gamma():
    torch.manual_seed(1)
    f = torch.randn(4, 2, 5)
    _, w_small = self_paced_supcon(f, None, gamma=3.0)
    _, w_big = self_paced_supcon(f, None, gamma=30.0)
    off = ~torch.eye(8, dtype=torch.bool)
    assert torch.all(w_small[off] <= w_big[off] + 1e-7)
    # soft and hard share the support: w_soft > 0 <=> l < gamma <=> w_hard = 1
    _, w_hard = self_paced_supcon(f, None, gamma=3.0, mode="hard")
    assert torch.equal(w_small > 0, w_hard > 0)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_no_gradient_through_weights(mode):
    torch.manual_seed(2)
    base = torch.randn(5, 2, 6)
    labels = torch.tensor([0, 1, 1, 0, 2])
    gamma, tau = 4.0, 0.5
    f1 = base.clone().requires_grad_(True)
    loss, w = self_paced_supcon(f1, labels, temperature=tau, gamma=gamma, mode=mode)
    assert not w.requires_grad
    assert 0 < float(w.mean()) < 1  # weights are non-trivial
    loss.backward()

    f2 = base.clone().requires_grad_(True)
    pos = positive_mask(labels, 5, 2)
    loss2 = torch_fixed_weight_loss(f2, pos, w.clone(), tau)
    loss2.backward()
    assert loss.item() == pytest.approx(loss2.item(), rel=1e-5)
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-4, atol=1e-6)


def test_correct_grad_divides_by_mean_positive_weight():
    torch.manual_seed(3)
    f = torch.randn(6, 2, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    loss, w = self_paced_supcon(f, labels, gamma=4.0)
    loss_cg, w_cg = self_paced_supcon(f, labels, gamma=4.0, correct_grad=True)
    torch.testing.assert_close(w, w_cg)
    mpw = mean_positive_weight(w, labels, 2)
    assert 0 < mpw < 1
    assert loss_cg.item() == pytest.approx(loss.item() / mpw, rel=1e-5)
    (g_plain,) = torch.autograd.grad(loss, f)
    (g_cg,) = torch.autograd.grad(loss_cg, f)
    torch.testing.assert_close(g_cg, g_plain / mpw, rtol=1e-4, atol=1e-6)


def test_correct_grad_with_all_weights_zero_is_finite():
    f = torch.randn(3, 2, 4, requires_grad=True)
    loss, w = self_paced_supcon(f, None, gamma=1e-6, mode="hard", correct_grad=True)
    assert loss.item() == 0.0 and torch.all(w == 0)
    loss.backward()
    assert torch.isfinite(f.grad).all()


# --------------------------------------------------------------------------------------------
# Invariances and robustness
# --------------------------------------------------------------------------------------------
def test_batch_permutation_invariance():
    torch.manual_seed(4)
    B, V = 6, 3
    f = torch.randn(B, V, 5)
    labels = torch.tensor([0, 1, 2, 0, 1, 1])
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    loss, w = self_paced_supcon(f, labels, gamma=5.0)
    loss_p, w_p = self_paced_supcon(f[perm], labels[perm], gamma=5.0)
    assert loss_p.item() == pytest.approx(loss.item(), rel=1e-6)
    idx = torch.tensor([v * B + int(perm[b]) for v in range(V) for b in range(B)])
    torch.testing.assert_close(w_p, w[idx][:, idx])


def test_views_permutation_invariance():
    torch.manual_seed(5)
    f = torch.randn(4, 3, 5)
    labels = torch.tensor([0, 1, 1, 0])
    loss, _ = self_paced_supcon(f, labels, gamma=3.0)
    loss_p, _ = self_paced_supcon(f[:, [2, 0, 1]], labels, gamma=3.0)
    assert loss_p.item() == pytest.approx(loss.item(), rel=1e-6)


def _check_finite(features: torch.Tensor, labels=None, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    f = features.clone().requires_grad_(True)
    loss, w = self_paced_supcon(f, labels, **kw)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert torch.isfinite(w).all()
    loss.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()
    return loss, w


@pytest.mark.parametrize("gamma", [INF, 2.0])
def test_single_image_single_view(gamma):
    loss, w = _check_finite(torch.randn(1, 1, 4), torch.tensor([0]), gamma=gamma)
    assert loss.item() == 0.0
    assert w.shape == (1, 1) and w.item() == 0.0


def test_single_image_two_views():
    # n=2: the only other row is the positive, so l = -log(1) = 0
    loss, w = _check_finite(torch.randn(1, 2, 4), None, gamma=2.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(w, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_all_labels_equal():
    _check_finite(torch.randn(5, 2, 4), torch.zeros(5, dtype=torch.long), gamma=3.0)


def test_no_positives_returns_connected_zero():
    loss, w = _check_finite(torch.randn(4, 1, 6), torch.tensor([0, 1, 2, 3]), gamma=3.0)
    assert loss.item() == 0.0
    assert w.shape == (4, 4) and torch.all(torch.diag(w) == 0)
    loss_simclr, _ = _check_finite(torch.randn(4, 1, 6), None)
    assert loss_simclr.item() == 0.0


def test_zero_features():
    # all similarities are 0, so l_ij = log(n - 1) for every pair
    loss, _ = _check_finite(torch.zeros(3, 2, 5), torch.tensor([0, 1, 0]))
    assert loss.item() == pytest.approx(math.log(5), rel=1e-6)


@pytest.mark.parametrize("scale", [1e-6, 1e6, 1e30, 1e-30])
def test_scale_invariance_and_finiteness(scale):
    torch.manual_seed(6)
    f = torch.randn(4, 2, 6)
    labels = torch.tensor([0, 1, 0, 1])
    ref, w_ref = self_paced_supcon(f, labels, gamma=6.0)
    loss, w = _check_finite(f * scale, labels, gamma=6.0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(w, w_ref, rtol=1e-4, atol=1e-5)


def test_half_precision_input():
    torch.manual_seed(7)
    f = (torch.randn(4, 2, 6) * 1e3).half()
    ref, _ = self_paced_supcon(f.float(), None, gamma=5.0)
    loss, w = _check_finite(f, None, gamma=5.0)
    assert w.dtype == torch.float32
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_autocast_bfloat16_computes_in_float32():
    torch.manual_seed(8)
    layer = torch.nn.Linear(6, 8)
    x = torch.randn(4, 2, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = layer(x)
        assert feats.dtype == torch.bfloat16
        loss, w = self_paced_supcon(feats, torch.tensor([0, 1, 0, 1]), gamma=5.0)
    assert loss.dtype == torch.float32 and w.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(layer.weight.grad).all()


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def test_bad_feature_shape():
    with pytest.raises(ValueError, match=r"\(B, V, D\).*\(4, 6\)"):
        self_paced_supcon(torch.randn(4, 6))


def test_bad_labels_shape():
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        self_paced_supcon(torch.randn(4, 2, 6), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(4, 1\)"):
        self_paced_supcon(torch.randn(4, 2, 6), torch.zeros(4, 1))


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan")])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        self_paced_supcon(torch.randn(2, 2, 3), gamma=gamma)


def test_bad_mode_and_temperature():
    with pytest.raises(ValueError, match="'linear'"):
        self_paced_supcon(torch.randn(2, 2, 3), mode="linear")
    with pytest.raises(ValueError, match="temperature"):
        self_paced_supcon(torch.randn(2, 2, 3), temperature=0.0)


# --------------------------------------------------------------------------------------------
# positive_mask / mean_positive_weight
# --------------------------------------------------------------------------------------------
def test_positive_mask_hand_case_labels():
    mask = positive_mask(torch.tensor([0, 1, 0]), 3, 2)
    ids = [0, 1, 0, 0, 1, 0]  # view-major: rows v*3 + b
    expected = torch.tensor([[ids[i] == ids[j] and i != j for j in range(6)] for i in range(6)])
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


def test_positive_mask_simclr():
    mask = positive_mask(None, 2, 2)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    for i, j in [(0, 2), (2, 0), (1, 3), (3, 1)]:
        expected[i, j] = True
    assert torch.equal(mask, expected)
    assert not positive_mask(None, 3, 1).any()


def test_positive_mask_bad_labels():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        positive_mask(torch.tensor([0, 1]), 3, 2)


def test_mean_positive_weight_hand_case():
    w = torch.arange(16, dtype=torch.float32).reshape(4, 4) / 16
    # SimCLR, B=2, V=2: positives (0,2), (2,0), (1,3), (3,1)
    expected = (w[0, 2] + w[2, 0] + w[1, 3] + w[3, 1]).item() / 4
    assert mean_positive_weight(w, None, 2) == pytest.approx(expected)
    # labels [0,0] with V=2: every off-diagonal pair is positive
    off = ~torch.eye(4, dtype=torch.bool)
    assert mean_positive_weight(w, torch.tensor([0, 0]), 2) == pytest.approx(w[off].mean().item())
    # no positives
    assert mean_positive_weight(w, torch.tensor([0, 1, 2, 3]), 1) == 0.0
    assert mean_positive_weight(torch.zeros(1, 1), None, 1) == 0.0
    with pytest.raises(ValueError, match="num_views=3"):
        mean_positive_weight(w, None, 3)


# --------------------------------------------------------------------------------------------
# Combined loss (Eq. 14)
# --------------------------------------------------------------------------------------------
def test_combined_is_lambda_weighted_sum():
    torch.manual_seed(9)
    f = torch.randn(6, 2, 8, requires_grad=True)
    labels = {
        "position": torch.tensor([0, 1, 2, 0, 1, 2]),
        "patient": torch.tensor([0, 0, 0, 1, 1, 1]),
        "simclr": None,
    }
    lambdas = {"position": 1.0, "patient": 1e-2, "simclr": 0.5}
    gammas = {"position": 3.0, "patient": 5.0, "simclr": INF}
    total, parts = combined_self_paced_supcon(f, labels, lambdas, gamma=gammas, temperature=0.1)
    expected = 0.0
    for key in labels:
        loss_k, w_k = self_paced_supcon(f, labels[key], gamma=gammas[key], temperature=0.1)
        assert parts[key][0].item() == pytest.approx(loss_k.item(), rel=1e-6)
        torch.testing.assert_close(parts[key][1], w_k)
        expected += lambdas[key] * loss_k.item()
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    assert torch.isfinite(f.grad).all()


def test_combined_scalar_gamma_and_key_mismatch():
    f = torch.randn(4, 2, 5)
    labels = {"a": torch.tensor([0, 0, 1, 1]), "b": None}
    total, parts = combined_self_paced_supcon(f, labels, {"a": 2.0, "b": 0.0}, gamma=4.0, mode="hard")
    ref, _ = self_paced_supcon(f, labels["a"], gamma=4.0, mode="hard")
    assert total.item() == pytest.approx(2.0 * ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"\['b'\].*\['c'\]"):
        combined_self_paced_supcon(f, labels, {"a": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="gamma"):
        combined_self_paced_supcon(f, labels, {"a": 1.0, "b": 1.0}, gamma={"a": 1.0})
    with pytest.raises(ValueError, match="empty"):
        combined_self_paced_supcon(f, {}, {})


# --------------------------------------------------------------------------------------------
# return_weights=False: the same loss and gradient without the (n, n) weight matrix
# --------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    B=st.integers(1, 6),
    V=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    use_labels=st.booleans(),
    gamma=st.sampled_from([INF, 0.5, 3.0, 50.0]),
    mode=st.sampled_from(["soft", "hard"]),
    correct_grad=st.booleans(),
)
def test_without_weights_same_loss_and_gradient(B, V, seed, use_labels, gamma, mode, correct_grad):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(B, V, 4, generator=gen)
    labels = torch.randint(0, 2, (B,), generator=gen) if use_labels else None
    grads, losses = [], []
    for return_weights in (True, False):
        x = f.clone().requires_grad_(True)
        loss, w = self_paced_supcon(x, labels, gamma=gamma, mode=mode, correct_grad=correct_grad,
                                    return_weights=return_weights)
        assert (w is None) == (not return_weights)
        loss.backward()
        grads.append(x.grad)
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    assert torch.equal(grads[0], grads[1])


def test_excluded_self_pair_never_leaks():
    """The self-pair (a == i) must stay out of the log-sum-exp even when every other logit sits at
    the lowest possible value: two antipodal views of one image give s_01 = -1/tau, so
    l_01 = 0 exactly; any weight left on the self-pair would raise it (to log 2 at equal weight)."""
    for tau in (0.01, 0.07, 1.0):
        f = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
        loss, _ = self_paced_supcon(f, None, temperature=tau)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)
        g = np.array([[[1.0, 0.0], [-1.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]]], dtype=np.float32)
        loss, _ = self_paced_supcon(torch.from_numpy(g), torch.tensor([0, 1]), temperature=tau)
        ref_loss, _, _ = reference(g, np.array([0, 1]), tau)
        assert loss.item() == pytest.approx(ref_loss, rel=1e-5, abs=1e-5)

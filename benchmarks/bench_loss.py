"""Speed of ``spcl_nnunet.losses.self_paced_supcon`` against a plain SupCon reference.

Times forward + backward of the self-paced loss (soft weights, finite gamma) and of a plain
vectorised supervised contrastive loss (Khosla et al., NeurIPS 2020) written here, on the
same features, at several batch sizes 2N (= B images x V=2 views). Reports the median time per
call and the ratio ours / reference, measured in the same run (calls interleaved); ours at
gamma = inf (no weighting) is timed too, to separate the cost of the self-paced weights.
Before timing, checks that both give the same loss and feature gradient at gamma = inf.

    python benchmarks/bench_loss.py                 # CPU, 2N = 64, 1024, 4096
    python benchmarks/bench_loss.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from spcl_nnunet.losses import self_paced_supcon


def supcon_reference(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Plain SupCon loss L_out (Khosla et al. 2020, Eq. 2), vectorised with masks.

    features: (B, V, D), labels: (B,). Each of the B*V views is an anchor; its positives are
    all other views whose image has the same label; the denominator runs over every other
    view. Per anchor, -log p(positive) is averaged over its positives; then over anchors.
    (Khosla's extra factor temperature / base_temperature is 1 with the default 0.07 / 0.07.)
    """
    batch, views, _ = features.shape
    z = F.normalize(features.float(), dim=-1)
    z = torch.cat(torch.unbind(z, dim=1), dim=0)          # (V*B, D), row v*B + b
    sim = z @ z.t() / temperature
    sim = sim - sim.max(dim=1, keepdim=True).values.detach()  # numerical stability, cancels out
    n = batch * views
    not_self = 1.0 - torch.eye(n, device=features.device)
    ids = labels.repeat(views)
    same = (ids[:, None] == ids[None, :]).float() * not_self
    log_denominator = torch.log((torch.exp(sim) * not_self).sum(dim=1, keepdim=True))
    log_prob = sim - log_denominator
    mean_log_prob_pos = (same * log_prob).sum(dim=1) / same.sum(dim=1)
    return -mean_log_prob_pos.mean()


def ours(features: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    loss, _ = self_paced_supcon(features, labels, temperature=0.07, gamma=gamma, mode="soft")
    return loss


def make_inputs(two_n: int, dim: int, classes: int, device: torch.device, seed: int):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(two_n // 2, 2, dim, generator=gen).to(device).requires_grad_(True)
    labels = torch.randint(0, classes, (two_n // 2,), generator=gen).to(device)
    return features, labels


def fwd_bwd(fn, features: torch.Tensor, device: torch.device) -> float:
    """Seconds for one forward + backward (gradient w.r.t. the features)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    loss = fn()
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    features.grad = None
    return elapsed


def check_agreement(sizes, dim, classes, device) -> list[tuple[int, float, float]]:
    """Max |loss diff| and max |grad diff| between ours at gamma = inf and the reference."""
    rows = []
    for two_n in sizes:
        features, labels = make_inputs(two_n, dim, classes, device, seed=two_n + 1)
        loss_a = ours(features, labels, float("inf"))
        (grad_a,) = torch.autograd.grad(loss_a, features)
        loss_b = supcon_reference(features, labels)
        (grad_b,) = torch.autograd.grad(loss_b, features)
        rows.append((two_n, float((loss_a - loss_b).detach().abs()), float((grad_a - grad_b).abs().max())))
    return rows


def repeats_for(two_n: int, scale: float) -> int:
    base = 30 if two_n <= 256 else 10 if two_n <= 1024 else 4
    return max(2, round(base * scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 1024, 4096], help="2N values (views)")
    parser.add_argument("--dim", type=int, default=256, help="feature dimension D")
    parser.add_argument("--classes", type=int, default=3, help="number of meta-label classes")
    parser.add_argument("--gamma", type=float, default=10.0, help="finite learning pace for the timed calls")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each loss per size")
    parser.add_argument("--repeat-scale", type=float, default=1.0,
                        help="multiply the repeats (30 / 10 / 4 for 2N <= 256 / <= 1024 / larger)")
    args = parser.parse_args()
    if any(s < 2 or s % 2 for s in args.sizes):
        parser.error("--sizes must be even numbers >= 2 (2N = N images x 2 views)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; D={args.dim}, {args.classes} classes, V=2, "
          f"tau=0.07, ours: soft weights, gamma={args.gamma:g}; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")

    print("\nagreement at gamma = inf (ours vs reference, float32)")
    print(f"{'2N':>6} | {'|loss diff|':>12} | {'max |grad diff|':>15}")
    for two_n, dloss, dgrad in check_agreement(args.sizes, args.dim, args.classes, device):
        print(f"{two_n:>6} | {dloss:>12.3e} | {dgrad:>15.3e}")

    print("\nforward + backward, median ms per call")
    header = (f"{'2N':>6} | {'repeats':>7} | {'ours (ms)':>10} | {'reference (ms)':>14} | {'ours / ref':>10} | "
              f"{'ours, gamma=inf (ms)':>20} | {'inf / ref':>9}")
    print(header)
    print("-" * len(header))
    for two_n in args.sizes:
        features, labels = make_inputs(two_n, args.dim, args.classes, device, seed=two_n)
        ours_fn = lambda: ours(features, labels, args.gamma)  # noqa: E731
        ref_fn = lambda: supcon_reference(features, labels)  # noqa: E731
        inf_fn = lambda: ours(features, labels, float("inf"))  # noqa: E731
        fns = [ours_fn, ref_fn, inf_fn]
        for _ in range(args.warmup):
            for fn in fns:
                fwd_bwd(fn, features, device)
        times: list[list[float]] = [[] for _ in fns]
        repeats = repeats_for(two_n, args.repeat_scale)
        for i in range(repeats):  # interleaved; the order rotates so that none always goes first
            for k in range(len(fns)):
                j = (i + k) % len(fns)
                times[j].append(fwd_bwd(fns[j], features, device))
        t_ours, t_ref, t_inf = (statistics.median(t) * 1e3 for t in times)
        print(f"{two_n:>6} | {repeats:>7} | {t_ours:>10.2f} | {t_ref:>14.2f} | {t_ours / t_ref:>10.2f} | "
              f"{t_inf:>20.2f} | {t_inf / t_ref:>9.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (above the thread count, other processes "
          f"competed for the CPUs and the absolute times are inflated)")


if __name__ == "__main__":
    main()

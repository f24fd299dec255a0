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


def supcon_khosla(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07,
                  base_temperature: float = 0.07) -> torch.Tensor:
    """SupCon as Khosla et al.'s ``SupConLoss`` (HobbitLong/SupContrast) computes it, written here
    from its description: the caller L2-normalises the features (done inside, so both sides do the
    same work), labels -> a (B, B) equality mask repeated V x V, the self-pairs removed with a
    scattered (n, n) mask, logits minus their row max, exp times the mask, log-probabilities,
    mean over the positives, times -tau / base_tau, mean over the anchors."""
    batch, views, _ = features.shape
    features = F.normalize(features.float(), dim=-1)
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    anchor_dot_contrast = torch.div(contrast @ contrast.T, temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    labels = labels.contiguous().view(-1, 1)
    mask = torch.eq(labels, labels.T).float().repeat(views, views)
    n = batch * views
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(n, device=features.device).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return (-(temperature / base_temperature) * mean_log_prob_pos).view(views, batch).mean()


def ours(features: torch.Tensor, labels: torch.Tensor, gamma: float, return_weights: bool = False) -> torch.Tensor:
    loss, _ = self_paced_supcon(features, labels, temperature=0.07, gamma=gamma, mode="soft",
                                return_weights=return_weights)
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


def check_agreement(sizes, dim, classes, device) -> list[tuple[int, float, float, float, float]]:
    """Max |loss diff| and max |grad diff| between ours at gamma = inf and each reference."""
    rows = []
    for two_n in sizes:
        features, labels = make_inputs(two_n, dim, classes, device, seed=two_n + 1)
        loss_a = ours(features, labels, float("inf"))
        (grad_a,) = torch.autograd.grad(loss_a, features)
        row = [two_n]
        for reference in (supcon_reference, supcon_khosla):
            loss_b = reference(features, labels)
            (grad_b,) = torch.autograd.grad(loss_b, features)
            row += [float((loss_a - loss_b).detach().abs()), float((grad_a - grad_b).abs().max())]
        rows.append(tuple(row))
    return rows


def peak_memory_mb(fn, features: torch.Tensor, device: torch.device) -> float:
    """Peak memory of one forward + backward above what was allocated before it (MB): CUDA's
    allocator statistics on a GPU; on the CPU, torch's profiler: the largest running sum, in time
    order, of every event's own allocations minus frees (``self_cpu_memory_usage``: an operator's
    allocations without those of the operators it calls; frees come as ``[memory]`` events)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn().backward()
        torch.cuda.synchronize(device)
        features.grad = None
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn().backward()
    features.grad = None
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    running = peak = 0
    for event in events:
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak / 2**20


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

    print("\nagreement at gamma = inf (ours vs each reference, float32)")
    print(f"{'2N':>6} | {'|loss diff| plain':>17} | {'max |grad diff|':>15} | {'|loss diff| Khosla':>18} | "
          f"{'max |grad diff|':>15}")
    for two_n, dl1, dg1, dl2, dg2 in check_agreement(args.sizes, args.dim, args.classes, device):
        print(f"{two_n:>6} | {dl1:>17.3e} | {dg1:>15.3e} | {dl2:>18.3e} | {dg2:>15.3e}")

    names = ["ours", "ours+weights", "ours, inf", "plain ref", "Khosla ref"]
    print(f"\nforward + backward, median ms per call (ours: soft weights, gamma={args.gamma:g}, no weight matrix "
          f"returned; ours+weights: the (n, n) matrix returned too; ours, inf: gamma = inf)")
    header = (f"{'2N':>6} | {'repeats':>7} | " + " | ".join(f"{name:>12}" for name in names)
              + f" | {'ours/plain':>10} | {'ours/Khosla':>11} | {'+w/plain':>8}")
    print(header)
    print("-" * len(header))
    memory_rows = []
    for two_n in args.sizes:
        features, labels = make_inputs(two_n, args.dim, args.classes, device, seed=two_n)
        fns = [lambda: ours(features, labels, args.gamma),
               lambda: ours(features, labels, args.gamma, return_weights=True),
               lambda: ours(features, labels, float("inf")),
               lambda: supcon_reference(features, labels),
               lambda: supcon_khosla(features, labels)]
        for _ in range(args.warmup):
            for fn in fns:
                fwd_bwd(fn, features, device)
        times: list[list[float]] = [[] for _ in fns]
        repeats = repeats_for(two_n, args.repeat_scale)
        for i in range(repeats):  # interleaved; the order rotates so that none always goes first
            for k in range(len(fns)):
                j = (i + k) % len(fns)
                times[j].append(fwd_bwd(fns[j], features, device))
        t = [statistics.median(x) * 1e3 for x in times]
        print(f"{two_n:>6} | {repeats:>7} | " + " | ".join(f"{v:>12.2f}" for v in t)
              + f" | {t[0] / t[3]:>10.2f} | {t[0] / t[4]:>11.2f} | {t[1] / t[3]:>8.2f}")
        if two_n == max(args.sizes):
            memory_rows.append((two_n, [peak_memory_mb(fn, features, device) for fn in fns]))
    for two_n, peaks in memory_rows:
        print(f"\npeak memory of one forward + backward at 2N = {two_n} (MB): "
              + ", ".join(f"{name} {p:.0f}" for name, p in zip(names, peaks)))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (above the thread count, other processes "
          f"competed for the CPUs and the absolute times are inflated)")


if __name__ == "__main__":
    main()

"""The contrastive loss across processes (``spcl_nnunet.contrastive.distributed``) on CPU, 2 processes, gloo.

Oracle (docs/multi_gpu.md, *What has been checked*): one process on the concatenated batch against
2 ranks on its halves, from the same initial weights: equal loss, self-paced weights, mean positive
weight, and gradient of a shared parameter after the ranks average their gradients; equal on both
ranks. A gather whose backward does not sum over the ranks (old SimCLR ports) must give a different
gradient.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spcl_nnunet.contrastive.distributed import average_gradients, gather_objects, gather_tensor, gather_with_grad, per_rank_count
from spcl_nnunet.losses import mean_positive_weight, self_paced_supcon

WORLD = 2
B, V, D_IN, D = 6, 2, 5, 4      # global batch: 6 images x 2 views


def _inputs():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(B, V, D_IN, generator=gen)
    labels = torch.tensor([0, 1, 2, 0, 1, 1])
    theta = torch.randn(D_IN, D, generator=gen)
    return x, labels, theta


def _loss(features, labels):
    return self_paced_supcon(features, labels, temperature=0.5, gamma=3.0, mode="soft")


def _gather_without_reduction(x: torch.Tensor) -> torch.Tensor:
    """The wrong gather: other ranks' slots as constants, only this rank's slot carries gradient."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def _worker(rank: int, store: str, out: str, wrong_gather: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        x, labels, theta0 = _inputs()
        per = per_rank_count(B, "images")
        mine = slice(rank * per, (rank + 1) * per)
        theta = torch.nn.Parameter(theta0.clone())
        local = x[mine] @ theta                                   # (B_r, V, D): this rank's features
        features = _gather_without_reduction(local) if wrong_gather else gather_with_grad(local)
        all_labels = gather_tensor(labels[mine])
        keys = gather_objects([f"case{i}" for i in range(B)][mine])
        loss, weights = _loss(features, all_labels)
        loss.backward()
        average_gradients([theta])
        torch.save({"loss": loss.detach(), "weights": weights, "grad": theta.grad, "labels": all_labels,
                    "keys": keys, "mpw": mean_positive_weight(weights, all_labels, V)}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path, wrong_gather: bool = False) -> list[dict]:
    out = str(tmp_path / "result")
    mp.start_processes(_worker, args=(str(tmp_path / "store"), out, wrong_gather), nprocs=WORLD, join=True,
                       start_method="fork")       # forked: no fresh imports (conftest: one torch thread)
    return [torch.load(f"{out}.{r}") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single():
    x, labels, theta0 = _inputs()
    theta = torch.nn.Parameter(theta0.clone())
    loss, weights = _loss(x @ theta, labels)
    loss.backward()
    return {"loss": loss.detach(), "weights": weights, "grad": theta.grad,
            "mpw": mean_positive_weight(weights, labels, V)}


def test_two_ranks_equal_one_process_on_the_concatenated_batch(tmp_path: Path, single) -> None:
    ranks = _run(tmp_path)
    for r in ranks:
        assert r["keys"] == [f"case{i}" for i in range(B)]
        assert torch.equal(r["labels"], _inputs()[1])
        torch.testing.assert_close(r["loss"], single["loss"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(r["weights"], single["weights"], rtol=1e-5, atol=1e-6)
        assert r["mpw"] == pytest.approx(single["mpw"], rel=1e-5)
        torch.testing.assert_close(r["grad"], single["grad"], rtol=1e-4, atol=1e-6)
    assert torch.equal(ranks[0]["grad"], ranks[1]["grad"])


def test_gather_without_backward_reduction_gives_another_gradient(tmp_path: Path, single) -> None:
    """Negative control: the oracle above must be able to fail."""
    ranks = _run(tmp_path, wrong_gather=True)
    torch.testing.assert_close(ranks[0]["loss"], single["loss"], rtol=1e-5, atol=1e-6)   # the forward is right
    assert not torch.allclose(ranks[0]["grad"], single["grad"], rtol=1e-3, atol=1e-5)


def test_one_process_is_the_identity() -> None:
    x = torch.randn(3, 2, 4, requires_grad=True)
    assert gather_with_grad(x) is x and gather_tensor(x) is x
    assert gather_objects(["a", "b"]) == ["a", "b"]
    assert per_rank_count(5, "scans") == 5


def _uneven_worker(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        per_rank_count(5, "num_scans_per_batch")
        message = ""
    except ValueError as error:
        message = str(error)
    finally:
        dist.barrier()             # no rank leaves (and tears the file store down) before the other joined
        dist.destroy_process_group()
    Path(f"{out}.{rank}").write_text(message)


def test_uneven_split_over_two_ranks_is_refused(tmp_path: Path) -> None:
    out = str(tmp_path / "msg")
    mp.start_processes(_uneven_worker, args=(str(tmp_path / "store"), out), nprocs=WORLD, join=True,
                       start_method="fork")
    message = Path(f"{out}.0").read_text()
    assert "num_scans_per_batch = 5" in message and "2 processes" in message and "multiple of 2" in message

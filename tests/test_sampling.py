"""Tests of meta-label aware contrastive mini-batches (``spcl_nnunet.contrastive.sampling``)."""

from collections import Counter

import numpy as np
import pytest

from spcl_nnunet.contrastive.sampling import SliceDraw, draw_meta_batch, meta_label_tensor_codes

S = 3
PARTS = {
    "a": np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]),
    "b": np.array([0, 0, 1, 1, 2, 2]),
    "c": np.array([0, 1, 1, 2]),
    "d": np.array([0, 0, 1, 2, 2, 2, 2]),
}
CASES = sorted(PARTS)


def _by_scan(draws: list[SliceDraw], partitions: int = S) -> list[list[SliceDraw]]:
    assert len(draws) % partitions == 0
    return [draws[i:i + partitions] for i in range(0, len(draws), partitions)]


@pytest.mark.parametrize("seed", range(20))
def test_one_slice_per_partition_per_scan(seed: int) -> None:
    draws = draw_meta_batch(np.random.RandomState(seed), PARTS, CASES, num_scans=3, partitions=S)
    assert len(draws) == 3 * S
    groups = _by_scan(draws)
    for group in groups:
        assert len({d.case for d in group}) == 1                       # the S slices of one scan are consecutive
        assert [d.partition for d in group] == list(range(S))         # one per partition, in partition order
        for d in group:
            assert 0 <= d.slice_index < PARTS[d.case].size
            assert PARTS[d.case][d.slice_index] == d.partition        # the reported partition is the true one
    assert len({g[0].case for g in groups}) == 3                      # without replacement: 3 distinct scans


@pytest.mark.parametrize("seed", range(30))
def test_missing_partition_filled_from_same_scan_true_partition_kept(seed: int) -> None:
    # "short" has 2 slices for S=3 (partitions 0 and 2): partition 1 does not exist in it
    parts = {"short": np.array([0, 2]), "one": np.array([1])}
    draws = draw_meta_batch(np.random.RandomState(seed), parts, ["short", "one"], num_scans=2, partitions=S)
    by_case = {g[0].case: g for g in _by_scan(draws)}
    assert set(by_case) == {"short", "one"}
    short = by_case["short"]
    assert all(d.case == "short" for d in short)
    assert (short[0].slice_index, short[0].partition) == (0, 0)
    assert (short[2].slice_index, short[2].partition) == (1, 2)
    filler = short[1]                                                  # the slot of the missing partition 1
    assert filler.slice_index in (0, 1)
    assert filler.partition == parts["short"][filler.slice_index]     # true partition, not the slot's 1
    one = by_case["one"]                                               # a 1-slice scan fills every slot with it
    assert [(d.case, d.slice_index, d.partition) for d in one] == [("one", 0, 1)] * S


def test_missing_partition_filler_covers_the_scan() -> None:
    parts = {"short": np.array([0, 2])}
    fillers = Counter(draw_meta_batch(np.random.RandomState(seed), parts, ["short"], 1, S)[1].slice_index
                      for seed in range(200))
    assert set(fillers) == {0, 1}                                      # random slice of the scan, both occur


@pytest.mark.parametrize("seed", range(20))
def test_without_replacement_when_pool_suffices(seed: int) -> None:
    for num_scans in (1, 2, len(CASES)):
        draws = draw_meta_batch(np.random.RandomState(seed), PARTS, CASES, num_scans, S)
        scans = [g[0].case for g in _by_scan(draws)]
        assert len(scans) == num_scans
        assert len(set(scans)) == num_scans, scans


def test_with_replacement_only_when_pool_too_small() -> None:
    repeated = 0
    for seed in range(20):
        draws = draw_meta_batch(np.random.RandomState(seed), PARTS, ["a", "c"], num_scans=5, partitions=S)
        scans = [g[0].case for g in _by_scan(draws)]
        assert len(scans) == 5 and set(scans) <= {"a", "c"}
        for g in _by_scan(draws):
            assert [d.partition for d in g] == list(range(S))
        repeated += len(set(scans)) < len(scans)
    assert repeated == 20                                              # 5 scans from 2: repeats are unavoidable


def test_deterministic_for_seeded_random_state() -> None:
    def draw(seed: int) -> list[SliceDraw]:
        return draw_meta_batch(np.random.RandomState(seed), PARTS, CASES, 3, S)

    assert draw(123) == draw(123)
    assert any(draw(0) != draw(seed) for seed in range(1, 10))
    # the rng's state advances: two consecutive batches of one generator differ (at some point)
    rng = np.random.RandomState(5)
    batches = [draw_meta_batch(rng, PARTS, CASES, 3, S) for _ in range(5)]
    assert len({tuple(b) for b in batches}) > 1


def test_global_numpy_state_is_accepted_and_reproducible() -> None:
    # the data loader passes the np.random module (batchgenerators seeds it per worker)
    state = np.random.get_state()
    try:
        np.random.seed(7)
        first = draw_meta_batch(np.random, PARTS, CASES, 2, S)
        np.random.seed(7)
        second = draw_meta_batch(np.random, PARTS, CASES, 2, S)
    finally:
        np.random.set_state(state)
    assert first == second
    assert first == draw_meta_batch(np.random.RandomState(7), PARTS, CASES, 2, S)


@pytest.mark.parametrize("seed", range(10))
def test_uniform_slices_when_not_one_per_partition(seed: int) -> None:
    draws = draw_meta_batch(np.random.RandomState(seed), PARTS, CASES, 2, S, one_slice_per_partition=False)
    assert len(draws) == 2 * S
    for group in _by_scan(draws):
        assert len({d.case for d in group}) == 1
        for d in group:
            assert PARTS[d.case][d.slice_index] == d.partition


def test_uniform_slices_ignore_partitions() -> None:
    seen = Counter()
    for seed in range(100):
        for d in draw_meta_batch(np.random.RandomState(seed), {"a": PARTS["a"]}, ["a"], 1, S,
                                 one_slice_per_partition=False):
            seen[d.partition] += 1
    assert set(seen) == {0, 1, 2}
    # the first slot would always be partition 0 with one slice per partition; here it is not
    firsts = {draw_meta_batch(np.random.RandomState(s), {"a": PARTS["a"]}, ["a"], 1, S,
                              one_slice_per_partition=False)[0].partition for s in range(50)}
    assert firsts == {0, 1, 2}


@pytest.mark.parametrize("num_scans", [0, -1])
def test_num_scans_must_be_positive(num_scans: int) -> None:
    with pytest.raises(ValueError, match="num_scans"):
        draw_meta_batch(np.random.RandomState(0), PARTS, CASES, num_scans, S)


def test_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        draw_meta_batch(np.random.RandomState(0), PARTS, [], 2, S)


def test_meta_label_tensor_codes() -> None:
    draws = [SliceDraw("a", 0, 0), SliceDraw("a", 4, 1), SliceDraw("c", 3, 2), SliceDraw("b", 1, 0)]
    codes = {"patient": {"a": 0, "b": 1, "c": 1}, "phase": {"a": 1, "b": 0, "c": 1, "d": 0}}
    out = meta_label_tensor_codes(draws, codes)
    assert set(out) == {"position", "patient", "phase"}
    for value in out.values():
        assert value.dtype == np.int64 and value.shape == (4,)
    np.testing.assert_array_equal(out["position"], [0, 1, 2, 0])
    np.testing.assert_array_equal(out["patient"], [0, 0, 1, 1])
    np.testing.assert_array_equal(out["phase"], [1, 1, 1, 0])


def test_meta_label_tensor_codes_position_only_and_unknown_case() -> None:
    draws = draw_meta_batch(np.random.RandomState(0), PARTS, CASES, 2, S)
    out = meta_label_tensor_codes(draws, {})
    assert list(out) == ["position"]
    np.testing.assert_array_equal(out["position"], [d.partition for d in draws])
    with pytest.raises(KeyError):
        meta_label_tensor_codes([SliceDraw("zzz", 0, 0)], {"patient": {"a": 0}})

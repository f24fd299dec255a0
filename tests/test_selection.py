"""Choosing on the validation scans (spcl_nnunet/experiment/selection.py): the rule on
hand-computed values, and issue #19's committed choice rebuilt from its committed scores (no nnU-Net)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spcl_nnunet.experiment.selection import (choose_on_validation, load_validation_records, method_scores,
                                              rank_against_baseline, split_scores)

A = {0: 0.50, 1: 0.60, 2: 0.40, 3: 0.70}            # mean 0.55
B = {0: 0.52, 1: 0.61, 2: 0.45, 3: 0.70}            # mean 0.57; B - A = .02 .01 .05 0 -> +0.02
C = {0: 0.60, 1: 0.50, 2: 0.50, 3: 0.67}            # mean 0.5675
BASELINE = {0: 0.50, 1: 0.55, 2: 0.45, 3: 0.60}     # B - baseline = .02 .06 0 .10 -> +0.045
ISSUE_19 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "acdc_diagnosis"


def test_highest_mean_with_a_positive_paired_difference_wins() -> None:
    decision = choose_on_validation({"a": A, "b": B, "c": C}, "a", BASELINE)
    assert decision["chosen"] == decision["winner"] == "b"
    assert decision["mean"] == pytest.approx({"a": 0.55, "b": 0.57, "c": 0.5675})
    versus_a = decision["versus_reference"]["b"]
    assert versus_a["mean_difference"] == pytest.approx(0.02)
    # sd of (.02 .01 .05 0) = sqrt(.0014 / 3) = .0216025; t_{0.975, 3} = 3.182446; half = .0343746
    assert versus_a["ci95"] == pytest.approx([0.02 - 0.0343746, 0.02 + 0.0343746], abs=1e-6)
    assert (versus_a["above"], versus_a["below"]) == (3, 0)
    assert decision["versus_baseline"]["b"]["mean_difference"] == pytest.approx(0.045)
    assert decision["reason"] == ("'b' has the highest mean validation Dice and its paired mean difference "
                                  "from 'a' is +2.00 points > 0")


def test_a_tie_goes_to_the_candidate_listed_first() -> None:
    tied_c = {0: 0.52, 1: 0.61, 2: 0.45, 3: 0.70002}   # mean 0.570005: within 0.01 points of B
    assert choose_on_validation({"a": A, "b": B, "c": tied_c}, "a")["chosen"] == "b"
    assert choose_on_validation({"a": A, "c": tied_c, "b": B}, "a")["chosen"] == "c"   # the order decides
    ahead_c = {0: 0.52, 1: 0.61, 2: 0.45, 3: 0.7008}    # mean 0.5702: 0.02 points ahead
    assert choose_on_validation({"a": A, "b": B, "c": ahead_c}, "a")["chosen"] == "c"
    level_with_a = {0: 0.70, 1: 0.40, 2: 0.60, 3: 0.50}   # mean 0.55 = A's: the reference is listed first
    decision = choose_on_validation({"a": A, "d": level_with_a}, "a")
    assert decision["chosen"] == "a" and decision["versus_baseline"] == {}


def test_the_best_mean_without_a_paired_gain_leaves_the_reference() -> None:
    # d ran two splits: mean 0.57 > 0.55, but on those splits it is below (a): -.05, -.01 -> -0.03
    d = {0: 0.45, 3: 0.69}
    decision = choose_on_validation({"a": A, "d": d}, "a", BASELINE)
    assert decision["chosen"] == "a"
    assert decision["versus_reference"]["d"]["mean_difference"] == pytest.approx(-0.03)
    assert "-3.00 points, not above 0: 'a' stays" in decision["reason"]
    no_shared_split = {4: 0.90}
    decision = choose_on_validation({"a": A, "x": no_shared_split}, "a")
    assert decision["chosen"] == "a" and "undefined (no shared split)" in decision["reason"]


def test_a_candidate_with_its_own_baseline_replaces_the_winner_only_with_a_larger_gain() -> None:
    sgd_spcon = {0: 0.60, 1: 0.60, 2: 0.60, 3: 0.60}
    sgd_base = {0: 0.50, 1: 0.50, 2: 0.55, 3: 0.55}     # +0.075 > b's +0.045 over BASELINE
    decision = choose_on_validation({"a": A, "b": B}, "a", BASELINE, own_baseline={"e": (sgd_spcon, sgd_base)})
    assert decision["winner"] == "b" and decision["chosen"] == "e"
    assert decision["versus_own_baseline"]["e"]["mean_difference"] == pytest.approx(0.075)
    assert decision["reason"] == ("'e''s paired difference from its own baseline, +7.50 points, is larger than "
                                  "'b''s from the baseline, +4.50 points")
    smaller = {0: 0.56, 1: 0.56, 2: 0.58, 3: 0.58}      # .04 .04 .02 .02 -> +0.03 < +0.045
    decision = choose_on_validation({"a": A, "b": B}, "a", BASELINE, own_baseline={"e": (sgd_spcon, smaller)})
    assert decision["chosen"] == "b" and "+3.00 points, is not larger" in decision["reason"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="the reference 'a' is not among the candidates"):
        choose_on_validation({"b": B}, "a", BASELINE)
    with pytest.raises(ValueError, match="pass baseline too"):
        choose_on_validation({"a": A}, "a", own_baseline={"e": (A, B)})
    with pytest.raises(ValueError, match="both as a candidate and as a candidate with its own baseline"):
        choose_on_validation({"a": A, "e": B}, "a", BASELINE, own_baseline={"e": (A, B)})
    with pytest.raises(ValueError, match="without any scored split"):
        choose_on_validation({"a": A, "b": {}}, "a")


def _records(method_scores: dict[str, dict[int, float]], num_labeled: int = 1) -> list[dict]:
    return [{"method": m, "label": m.upper(), "num_labeled": num_labeled, "split": s, "mean_dice": v}
            for m, scores in method_scores.items() for s, v in scores.items()]


def test_choosing_among_the_methods_of_one_experiment_folder(tmp_path: Path) -> None:
    """The next use: methods of one experiment (e.g. semi-supervised ones), the baseline the
    reference. A method must beat it on the shared splits to be chosen; other labeled counts are
    not mixed in."""
    with pytest.raises(FileNotFoundError, match="validation_results.json does not exist"):
        load_validation_records(tmp_path)
    (tmp_path / "validation_results.json").write_text(json.dumps({"evaluated_on": "test", "runs": []}))
    with pytest.raises(ValueError, match="expected scores of the validation scans"):
        load_validation_records(tmp_path)
    records = _records({"baseline": BASELINE, "mean-teacher": B, "entropy-min": C}) + _records({"mean-teacher": A}, 2)
    (tmp_path / "validation_results.json").write_text(json.dumps({"evaluated_on": "validation", "runs": records}))
    loaded = load_validation_records(tmp_path)
    assert len(loaded) == 16
    candidates = method_scores(loaded)
    assert list(candidates) == ["baseline", "mean-teacher", "entropy-min"]
    assert candidates["mean-teacher"] == B and split_scores(loaded, "mean-teacher", num_labeled=2) == A
    decision = choose_on_validation(candidates, "baseline", candidates["baseline"])
    assert decision["chosen"] == "mean-teacher"                       # 0.57 > 0.5675 > 0.525
    assert decision["versus_reference"]["mean-teacher"]["mean_difference"] == pytest.approx(0.045)
    worse = {0: 0.49, 1: 0.54, 2: 0.44, 3: 0.59}                      # every split 0.01 below the baseline
    assert choose_on_validation({"baseline": BASELINE, "x": worse}, "baseline")["chosen"] == "baseline"


def test_issue_19s_committed_choice_is_rebuilt_from_its_committed_scores() -> None:
    """The arms' validation scores as committed (benchmarks/results/acdc_diagnosis/<arm>/): the rule
    chose arm (c), +10.40 points over arm (a); arm (e)'s +2.42 over its own SGD baseline is below
    (c)'s +4.17 over the RAdam one (benchmarks/README.md, docs/results.md)."""
    arms = {arm: load_validation_records(ISSUE_19 / arm) for arm in "abcde"}
    decision = choose_on_validation({arm: split_scores(arms[arm], "spcon") for arm in "abcd"}, "a",
                                    split_scores(arms["a"], "baseline"),
                                    own_baseline={"e": (split_scores(arms["e"], "spcon"),
                                                        split_scores(arms["e"], "baseline"))})
    assert decision["chosen"] == decision["winner"] == "c"
    assert 100 * decision["mean"]["c"] == pytest.approx(58.92, abs=0.005)
    assert 100 * decision["mean"]["b"] == pytest.approx(58.79, abs=0.005)
    assert 100 * decision["versus_reference"]["c"]["mean_difference"] == pytest.approx(10.40, abs=0.005)
    assert 100 * decision["versus_baseline"]["c"]["mean_difference"] == pytest.approx(4.17, abs=0.005)
    assert 100 * decision["versus_own_baseline"]["e"]["mean_difference"] == pytest.approx(2.42, abs=0.005)
    committed = json.loads((ISSUE_19 / "arms.json").read_text(encoding="utf-8"))["selection"]
    assert committed["chosen"] == "c"


def test_rank_against_baseline_orders_by_paired_gain_and_breaks_ties_by_listing() -> None:
    # paired gains over the baseline: A +0.025, B +0.045, C +0.0425 (hand-computed from the tables above)
    ranked = rank_against_baseline({"a": A, "b": B, "c": C}, BASELINE)
    assert [r["name"] for r in ranked] == ["b", "c", "a"]
    assert [r["versus_baseline"]["mean_difference"] for r in ranked] == pytest.approx([0.045, 0.0425, 0.025])
    level_with_b = {s: v + (0.045 - 0.0425) for s, v in C.items()}          # C shifted to B's gain
    assert [r["name"] for r in rank_against_baseline({"c": level_with_b, "b": B}, BASELINE)][0] == "c"
    assert [r["name"] for r in rank_against_baseline({"b": B, "c": level_with_b}, BASELINE)][0] == "b"
    with pytest.raises(ValueError, match="shares no split"):
        rank_against_baseline({"x": {9: 0.5}}, BASELINE)

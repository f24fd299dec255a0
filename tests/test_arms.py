"""Issue #19's selection rule and arms table, on hand-computed values (no nnU-Net)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spcl_nnunet.experiment.arms import (arm_markdown, arm_rows, load_arm_records, select_transfer_arm,
                                         selection_from_arms)

A = {0: 0.50, 1: 0.60, 2: 0.40, 3: 0.70}            # mean 0.55
B = {0: 0.52, 1: 0.61, 2: 0.45, 3: 0.70}            # mean 0.57; B - A = .02 .01 .05 0 -> +0.02
C = {0: 0.60, 1: 0.50, 2: 0.50, 3: 0.67}            # mean 0.5675
BASELINE = {0: 0.50, 1: 0.55, 2: 0.45, 3: 0.60}     # B - baseline = .02 .06 0 .10 -> +0.045


def test_highest_mean_with_a_positive_paired_difference_wins() -> None:
    decision = select_transfer_arm({"a": A, "b": B, "c": C}, BASELINE)
    assert decision["chosen"] == decision["transfer_winner"] == "b"
    assert decision["mean"] == pytest.approx({"a": 0.55, "b": 0.57, "c": 0.5675})
    versus_a = decision["versus_reference"]["b"]
    assert versus_a["mean_difference"] == pytest.approx(0.02)
    # sd of (.02 .01 .05 0) = sqrt(.0014 / 3) = .0216025; t_{0.975, 3} = 3.182446; half = .0343746
    assert versus_a["ci95"] == pytest.approx([0.02 - 0.0343746, 0.02 + 0.0343746], abs=1e-6)
    assert (versus_a["above"], versus_a["below"]) == (3, 0)
    assert decision["versus_baseline"]["b"]["mean_difference"] == pytest.approx(0.045)


def test_a_tie_goes_to_the_arm_listed_first() -> None:
    tied_c = {0: 0.52, 1: 0.61, 2: 0.45, 3: 0.70002}   # mean 0.570005: within 0.01 points of B
    assert select_transfer_arm({"a": A, "b": B, "c": tied_c}, BASELINE)["chosen"] == "b"
    ahead_c = {0: 0.52, 1: 0.61, 2: 0.45, 3: 0.7008}    # mean 0.5702: 0.02 points ahead
    assert select_transfer_arm({"a": A, "b": B, "c": ahead_c}, BASELINE)["chosen"] == "c"
    level_with_a = {0: 0.70, 1: 0.40, 2: 0.60, 3: 0.50}   # mean 0.55 = A's: (a) is listed first
    assert select_transfer_arm({"a": A, "d": level_with_a}, BASELINE)["chosen"] == "a"


def test_the_best_mean_without_a_paired_gain_leaves_a() -> None:
    # d ran two splits: mean 0.57 > 0.55, but on those splits it is below (a): -.05, -.01 -> -0.03
    d = {0: 0.45, 3: 0.69}
    decision = select_transfer_arm({"a": A, "d": d}, BASELINE)
    assert decision["chosen"] == "a"
    assert decision["versus_reference"]["d"]["mean_difference"] == pytest.approx(-0.03)
    assert "-3.00 points, not above 0" in decision["reason"]


def test_sgd_arm_replaces_the_winner_only_with_a_larger_gain_over_its_own_baseline() -> None:
    sgd_spcon = {0: 0.60, 1: 0.60, 2: 0.60, 3: 0.60}
    sgd_base = {0: 0.50, 1: 0.50, 2: 0.55, 3: 0.55}     # +0.075 > b's +0.045
    decision = select_transfer_arm({"a": A, "b": B}, BASELINE, sgd_spcon, sgd_base)
    assert decision["transfer_winner"] == "b" and decision["chosen"] == "e"
    assert decision["sgd_versus_sgd_baseline"]["mean_difference"] == pytest.approx(0.075)
    smaller = {0: 0.56, 1: 0.56, 2: 0.58, 3: 0.58}      # +0.04 < +0.045
    assert select_transfer_arm({"a": A, "b": B}, BASELINE, sgd_spcon, smaller)["chosen"] == "b"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"needs arm \(a\)"):
        select_transfer_arm({"b": B}, BASELINE)
    with pytest.raises(ValueError, match="unknown transfer arm"):
        select_transfer_arm({"a": A, "z": B}, BASELINE)
    with pytest.raises(ValueError, match="both its SP-Con and its SGD-trained baseline"):
        select_transfer_arm({"a": A}, BASELINE, sgd_spcon=A)


def _records(method_scores: dict[str, dict[int, float]]) -> list[dict]:
    return [{"method": m, "label": m.upper(), "num_labeled": 1, "split": s, "mean_dice": v}
            for m, scores in method_scores.items() for s, v in scores.items()]


def test_rows_compare_each_arm_with_the_baseline_that_applies() -> None:
    probe_random = {0: 0.30, 1: 0.30, 2: 0.30, 3: 0.30}
    probe_spcon = {0: 0.20, 1: 0.25, 2: 0.30, 3: 0.25}   # -0.05 from the random encoder
    sgd_base = {0: 0.50, 1: 0.50, 2: 0.55, 3: 0.55}
    arms = {"a": _records({"baseline": BASELINE, "spcon": A}), "b": _records({"spcon": B}),
            "probe": _records({"baseline": probe_random, "spcon": probe_spcon}),
            "e": _records({"baseline": sgd_base, "spcon": {0: 0.60, 1: 0.60, 2: 0.60, 3: 0.60}})}
    rows = {(r["arm"], r["method"]): r for r in arm_rows(arms)}
    assert rows[("probe", "spcon")]["versus_baseline"]["mean_difference"] == pytest.approx(-0.05)
    # frozen against fine-tuned, same splits: -.30 -.35 -.10 -.45
    assert rows[("probe", "spcon")]["versus_reference"]["mean_difference"] == pytest.approx(-0.30)
    assert rows[("e", "spcon")]["versus_baseline"]["mean_difference"] == pytest.approx(0.075)
    assert rows[("b", "spcon")]["versus_baseline"]["mean_difference"] == pytest.approx(0.045)
    assert rows[("b", "spcon")]["versus_reference"]["mean_difference"] == pytest.approx(0.02)
    assert rows[("a", "baseline")]["versus_baseline"] is None
    assert [r["arm"] for r in arm_rows(arms)] == ["probe", "probe", "a", "a", "b", "e", "e"]
    text = arm_markdown(arm_rows(arms))
    assert "| transfer | (b) encoder frozen for 5 epochs, then a fresh warm-up | SPCON | 52.0 | 61.0 | 45.0 | 70.0 | 57.00 | +2.00" in text
    assert selection_from_arms(arms)["chosen"] == "e"
    assert selection_from_arms({"b": arms["b"]}) is None


def test_an_arm_must_be_scored_on_the_validation_scans(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="validation_results.json does not exist"):
        load_arm_records(tmp_path)
    (tmp_path / "validation_results.json").write_text(json.dumps({"evaluated_on": "test", "runs": []}))
    with pytest.raises(ValueError, match="expected scores of the validation scans"):
        load_arm_records(tmp_path)
    (tmp_path / "validation_results.json").write_text(json.dumps({"evaluated_on": "validation",
                                                                  "runs": _records({"spcon": A})}))
    assert len(load_arm_records(tmp_path)) == 4


ARM_OPTIONS = {   # each arm's schedule file = the built-in 'diagnosis' schedule + exactly these overrides
    "probe": {("finetune", "frozen_encoder_epochs"): -1},
    "b": {("finetune", "frozen_encoder_epochs"): 5},
    "c": {("finetune", "encoder_lr_factor"): 0.1},
    "d": {("finetune", "random_encoder_stages"): 3},
    "e": {("finetune", "optimizer_name"): "sgd"},
    "views60": {("pretrain", "num_scans_per_batch"): 10},
    "iters4x": {("pretrain", "iterations_per_epoch"): 100},
}


@pytest.mark.parametrize("arm", sorted(ARM_OPTIONS))
def test_each_arm_schedule_is_the_diagnosis_schedule_plus_its_option(arm: str) -> None:
    from spcl_nnunet.training.schedules import ROLES, SCHEDULES, load_schedule

    reference = SCHEDULES["diagnosis"]
    assert reference.finetune["encoder_lr_factor"] == 1.0      # arm (a): the paper's recipe, pinned
    schedule = load_schedule(str(Path(__file__).parents[1] / "benchmarks" / "schedules" / f"diagnosis_{arm}.json"))
    differences = {(role, key): getattr(schedule, role).get(key)
                   for role in ROLES for key in set(getattr(schedule, role)) | set(getattr(reference, role))
                   if getattr(schedule, role).get(key) != getattr(reference, role).get(key)}
    assert differences == ARM_OPTIONS[arm]


def test_verdict_schedule_is_the_diagnosis_schedule_with_the_default_recipes() -> None:
    from spcl_nnunet.training.schedules import SCHEDULES, load_schedule

    reference = SCHEDULES["diagnosis"].to_json()
    verdict = load_schedule(str(Path(__file__).parents[1] / "benchmarks" / "schedules" / "acdc_transfer.json")).to_json()
    assert verdict["pretrain"] == reference["pretrain"] and verdict["semisupervised"] == reference["semisupervised"]
    assert verdict["finetune"] == {k: v for k, v in reference["finetune"].items() if k != "encoder_lr_factor"}

"""Issue #30's selection scores recovered from the progress log (benchmarks/semisupervised_selection.py):
the committed selection_scores.json is what the committed progress.log says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "acdc_semisupervised"


def selection_module():
    spec = importlib.util.spec_from_file_location("semisupervised_selection",
                                                  REPO / "benchmarks" / "semisupervised_selection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scores_from_log_take_the_setting_section_and_the_latest_line() -> None:
    log = "\n".join([
        "=== selection_a (2026-12-06T03:48:45Z)",
        "[0:06:40] [1/24] finished baseline, 1 labeled, split 0 (fold 0): validation Dice 65.30 % (training trained)",
        "[0:07:00] [2/24] stopped  mean-teacher, 1 labeled, split 0 (fold 0): command failed with exit code -15",
        "=== selection_b (2026-12-06T08:52:01Z)",
        "[0:12:13] [1/12] finished mean-teacher, 1 labeled, split 0 (fold 0): validation Dice 68.38 % (training trained)",
        "=== selection_a (2026-12-06T06:18:32Z)",
        "[0:00:00] [1/24] finished baseline, 1 labeled, split 0 (fold 0): validation Dice 65.31 % (training reused)",
        "[0:29:08] [9/24] finished spcon-mt-pretrained, 1 labeled, split 2 (fold 2): validation Dice 58.62 % (x)",
        "[0:30:00] [10/24] finished baseline, 2 labeled, split 0 (fold 4): validation Dice 70.00 % (x)",
    ])
    scores = selection_module().scores_from_log(log, "A")
    assert scores == {"baseline": {0: 0.6531}, "spcon-mt-pretrained": {2: 0.5862}}


def test_committed_scores_are_those_of_the_committed_log() -> None:
    module = selection_module()
    stored = json.loads((RESULTS / "selection_scores.json").read_text())["settings"]
    log = (RESULTS / "progress.log").read_text()
    for setting, entry in stored.items():
        if entry["source"].startswith("progress.log"):
            from_log = module.scores_from_log(log, setting)
            assert {m: {str(k): v for k, v in by.items()} for m, by in from_log.items()} == entry["scores"], setting


def selection_with(settings: dict[str, str]) -> dict:
    return {"ranking": [{"name": name, "setting": setting} for name, setting in settings.items()]}


def test_verdict_plan_shares_the_baseline_only_between_two_settings(tmp_path: Path) -> None:
    module = selection_module()
    two = module.plan(selection_with({"fixmatch": "C", "spcon-mt": "B"}), "verdict", tmp_path)
    assert [line.split()[:2] for line in two] == [
        ["verdict_c", "acdc_semi_c.json"], ["verdict_c", "acdc_semi_c.json"], ["share", "verdict_c"],
        ["verdict_b", "acdc_semi_b.json"], ["verdict_b", "acdc_semi_b.json"]]
    assert two[2] == "share verdict_c verdict_b"
    assert "--methods baseline spcon-mt --labeled 1 --splits 0 1 2 3 4 5 6 7 --evaluate test" in two[3]
    one = module.plan(selection_with({"fixmatch": "B", "spcon-mt": "B"}), "verdict", tmp_path)
    assert [line.split()[0] for line in one] == ["verdict_b", "verdict_b"]
    assert "--methods baseline fixmatch spcon-mt --labeled 2 --splits 0 1 2 3 --evaluate test" in one[1]


def test_plans_skip_what_the_committed_results_hold(tmp_path: Path) -> None:
    module = selection_module()
    out, schedules = tmp_path / "out", schedules_copy(tmp_path)
    out.mkdir()
    both_b = selection_with({"fixmatch": "B", "spcon-mt": "B"})
    verdict = {m: {s: 0.5 for s in range(8)} for m in ("baseline", "fixmatch", "spcon-mt")}
    write_results(out, "test", verdict)                          # 1 labeled x 8 splits, but no 2-labeled runs
    assert len(module.plan(both_b, "verdict", schedules, out)) == 2
    runs = json.loads((out / "results.json").read_text())
    runs["runs"] += [{"method": m, "num_labeled": 2, "split": s, "mean_dice": 0.6} for m in verdict for s in range(4)]
    (out / "results.json").write_text(json.dumps(runs))
    assert module.plan(both_b, "verdict", schedules, out) == []
    assert module.plan(both_b, "verdict", schedules) != []      # without --out: everything
    assert len(module.plan(both_b, "repeats", schedules, out)) == 1
    (out / "repeats.json").write_text("{}")
    assert module.plan(both_b, "repeats", schedules, out) == []
    row = {"iterations": 1000, "arm": "L0", "splits": [0, 1, 2, 3]}
    (out / "length.json").write_text(json.dumps([row, {**row, "iterations": 2000, "splits": [0]}]))
    assert [line.split()[0] for line in module.plan(both_b, "length", schedules, out)] == ["length_2000"]


def make_training(run: Path, fold: int, final: bool = True, validated: bool = True,
                  trainer: str = "SPConBaselineTrainer") -> Path:
    training = run / "Dataset910_SyntheticACDC" / f"{trainer}__nnUNetPlans__2d" / f"fold_{fold}"
    (training / "validation").mkdir(parents=True)
    if final:
        (training / "checkpoint_final.pth").write_bytes(b"weights")
    if validated:
        (training / "validation" / "summary.json").write_text("{}")
    (run / "train.log").write_text("log")
    (run / "test_predictions").mkdir()
    (run / "test_predictions" / "summary.json").write_text("{}")
    return training


def test_share_runs_copies_finished_trainings_without_their_test_predictions(tmp_path: Path) -> None:
    module = selection_module()
    source, target = tmp_path / "verdict_c", tmp_path / "verdict_b"
    runs = source / "runs" / "baseline"
    make_training(runs / "fold_0", 0)
    make_training(runs / "fold_1", 1, final=False)           # interrupted: only checkpoint_latest
    make_training(runs / "fold_2", 2, validated=False)       # final validation missing
    make_training(runs / "fold_3", 3)
    (target / "runs" / "baseline" / "fold_3").mkdir(parents=True)   # the target's own run is kept
    assert module.share_runs(source, target) == ["fold_0"]
    copied = target / "runs" / "baseline" / "fold_0"
    training = copied / "Dataset910_SyntheticACDC" / "SPConBaselineTrainer__nnUNetPlans__2d" / "fold_0"
    assert (training / "checkpoint_final.pth").read_bytes() == b"weights"
    assert (training / "validation" / "summary.json").is_file() and (copied / "train.log").is_file()
    assert not (copied / "test_predictions").exists()
    assert sorted(p.name for p in (target / "runs" / "baseline").iterdir()) == ["fold_0", "fold_3"]
    assert not any((target / "runs" / "baseline" / "fold_3").iterdir())
    assert module.share_runs(source, target) == []       # run again: nothing new
    make_training(source / "runs" / "fixmatch" / "fold_2", 2, trainer="FixMatchTrainer")
    assert module.share_runs(source, target, "fixmatch") == ["fold_2"]     # another method's runs, by name
    assert (target / "runs" / "fixmatch" / "fold_2" / "Dataset910_SyntheticACDC" / "FixMatchTrainer__nnUNetPlans__2d"
            / "fold_2" / "checkpoint_final.pth").is_file()


def write_results(folder: Path, evaluated_on: str, scores: dict[str, dict[int, float]]) -> None:
    """An experiment folder's results table (the fields the selection reads) for 1 labeled scan."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = [{"method": method, "num_labeled": 1, "split": split, "mean_dice": dice}
            for method, by_split in scores.items() for split, dice in by_split.items()]
    name = "results.json" if evaluated_on == "test" else "validation_results.json"
    (folder / name).write_text(json.dumps({"evaluated_on": evaluated_on, "runs": runs}))


def fixmatch_at_b() -> dict:
    return {"ranking": [{"name": "fixmatch", "setting": "B"}, {"name": "spcon-mt", "setting": "B"}]}


def schedules_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "schedules"
    folder.mkdir()
    for name in ("acdc_semi_a.json", "acdc_semi_b.json", "acdc_semi_c.json"):
        (folder / name).write_text((REPO / "benchmarks" / "schedules" / name).read_text())
    return folder


def test_arm_changes_follow_the_committed_arms() -> None:
    module = selection_module()
    schedules = REPO / "benchmarks" / "schedules"
    b = json.loads((schedules / "acdc_semi_b.json").read_text())
    b["finetune"]["num_epochs_default"] = 100
    assert module.arm_changes("fixmatch", b) == {"L1": {"rampup_epochs": 15}, "L2": {"unlabeled_weight": 0.5},
                                                 "L3": None, "L4": {"unlabeled_batch_size": 3},
                                                 "L5": {"class_balanced_pseudo_labels": True}}
    assert list(module.arm_skipped(module.arm_changes("fixmatch", b), b)) == ["L3"]   # B's decay 0.999 is already slower
    a = json.loads((schedules / "acdc_semi_a.json").read_text())
    a["finetune"]["num_epochs_default"] = 100
    mean_teacher = module.arm_changes("mean-teacher", a)
    assert mean_teacher == {"L1": {"rampup_epochs": 15}, "L2": {"consistency_weight": 0.05},
                            "L3": {"ema_decay": 0.998}, "L4": {"unlabeled_batch_size": 3}, "L5": None}
    assert list(module.arm_skipped(mean_teacher, a)) == ["L5"]                      # no pseudo-labels


def test_arms_run_only_when_the_gain_shrinks_and_the_rule_picks_among_them(tmp_path: Path) -> None:
    module = selection_module()
    schedules, root, out = schedules_copy(tmp_path), tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    baseline = {0: 0.50, 1: 0.30, 2: 0.60, 3: 0.55}
    write_results(root / "verdict_b", "test", {"baseline": baseline,
                                               "fixmatch": {s: d + 0.05 for s, d in baseline.items()}})
    write_results(root / "length_1000", "test", {"baseline": baseline,
                                                 "fixmatch": {s: d + 0.08 for s, d in baseline.items()}})
    write_results(root / "length_2000", "test", {"baseline": baseline,
                                                 "fixmatch": {s: d + 0.09 for s, d in baseline.items()}})
    assert module.arms_plan(root, out, fixmatch_at_b(), schedules) == []          # +9 at 2000 >= +8 at 1000
    # the amended trigger: +6 at 2000 is above +5 at 400 but below +8 at 1000
    write_results(root / "length_2000", "test", {"baseline": baseline,
                                                 "fixmatch": {s: d + 0.06 for s, d in baseline.items()}})
    lines = module.arms_plan(root, out, fixmatch_at_b(), schedules)
    assert [line.split()[:2] for line in lines] == [
        ["length_2000", "acdc_semi_b_len2000.json"], ["arm_l1", "acdc_semi_b_len2000_l1.json"],
        ["arm_l2", "acdc_semi_b_len2000_l2.json"], ["arm_l4", "acdc_semi_b_len2000_l4.json"],
        ["arm_l5", "acdc_semi_b_len2000_l5.json"]]
    # runs already scored (a folder, or progress.log's finished lines) are not planned again
    (out / "progress.log").write_text("=== arm_l2 (2026-12-08T01:00:00Z)\n" + "".join(
        f"[0:01:00] finished fixmatch, 1 labeled, split {s} (fold {s}): validation Dice 50.00 % (x)\n" for s in (0, 2)))
    write_results(root / "length_2000", "validation", {"baseline": baseline, "fixmatch": {1: 0.5}})
    assert [line.split(" --methods ")[0] + " --methods " + line.split(" --methods ")[1].split(" --evaluate")[0]
            for line in module.arms_plan(root, out, fixmatch_at_b(), schedules)] == [
        "length_2000 acdc_semi_b_len2000.json --methods fixmatch --labeled 1 --splits 0 2 3",
        "arm_l1 acdc_semi_b_len2000_l1.json --methods fixmatch --labeled 1 --splits 0 1 2 3",
        "arm_l2 acdc_semi_b_len2000_l2.json --methods fixmatch --labeled 1 --splits 1 3",
        "arm_l4 acdc_semi_b_len2000_l4.json --methods fixmatch --labeled 1 --splits 0 1 2 3",
        "arm_l5 acdc_semi_b_len2000_l5.json --methods fixmatch --labeled 1 --splits 0 1 2 3"]
    (out / "progress.log").unlink()
    (root / "length_2000" / "validation_results.json").unlink()
    l5 = json.loads((schedules / "acdc_semi_b_len2000_l5.json").read_text())
    assert l5["semisupervised"]["class_balanced_pseudo_labels"] is True
    from spcl_nnunet.training.schedules import load_schedule, schedule_overrides
    from spcl_nnunet.training.semisupervised import FixMatchTrainer
    applied, _ = schedule_overrides(FixMatchTrainer, load_schedule(str(schedules / "acdc_semi_b_len2000_l5.json")))
    assert applied["class_balanced_pseudo_labels"] is True                          # the trainer takes it
    assert lines[0].endswith("--methods baseline fixmatch --labeled 1 --splits 0 1 2 3 --evaluate validation")
    l2 = json.loads((schedules / "acdc_semi_b_len2000_l2.json").read_text())
    assert l2["semisupervised"]["unlabeled_weight"] == 0.5 and l2["finetune"]["num_epochs_default"] == 100
    assert l2["semisupervised"]["ema_decay"] == 0.999
    # the rule: highest mean wins if its paired difference from L0 is above 0
    write_results(root / "length_2000", "validation", {"baseline": baseline, "fixmatch": {0: .5, 1: .4, 2: .6, 3: .5}})
    write_results(root / "arm_l1", "validation", {"fixmatch": {0: .52, 1: .41, 2: .62, 3: .49}})
    write_results(root / "arm_l2", "validation", {"fixmatch": {0: .45, 1: .4, 2: .6, 3: .5}})
    write_results(root / "arm_l4", "validation", {"fixmatch": {0: .5, 1: .4, 2: .6, 3: .5}})
    write_results(root / "arm_l5", "validation", {"fixmatch": {0: .51, 2: .6}})
    with pytest.raises(SystemExit, match=r"not finished.*L5 split\(s\) 1, 3"):   # no rule on unequal splits
        module.choose_arm(root, out, fixmatch_at_b(), schedules)
    assert not (out / "arms.json").exists()
    write_results(root / "arm_l5", "validation", {"fixmatch": {0: .51, 1: .39, 2: .6, 3: .5}})   # level with L0
    result = module.choose_arm(root, out, fixmatch_at_b(), schedules)
    assert result["chosen"] == "L1" and result["candidates"] == ["L0", "L1", "L2", "L4", "L5"]
    assert result["scores"]["L1"] == {"0": .52, "1": .41, "2": .62, "3": .49} and result["scores"]["baseline"]["2"] == .6
    # a folder lost with a checkout: its runs' validation Dice from progress.log's "finished" lines
    import shutil
    shutil.rmtree(root / "arm_l5")
    (out / "progress.log").write_text("=== arm_l5 (2026-12-08T01:00:00Z)\n" + "".join(
        f"[0:01:00] [{s + 1}/4] finished fixmatch, 1 labeled, split {s} (fold {s}): validation Dice {d} % (x)\n"
        for s, d in enumerate((51.0, 39.0, 60.0, 50.0))))
    assert module.choose_arm(root, out, fixmatch_at_b(), schedules)["mean"] == result["mean"]
    assert abs(result["versus_reference"]["L1"]["mean_difference"] - 0.01) < 1e-9
    assert "| L1 | rampup_epochs 15 |" in (out / "arms.md").read_text()
    # L1's ramp-up is a share of the epochs: at 400 iterations it is B's own 3 epochs, so only 2,000 reruns
    assert module.fix_plan(out, fixmatch_at_b(), schedules) == [
        "share arm_l1 fix_2000 fixmatch", "share length_2000 fix_2000",
        "fix_2000 acdc_semi_b_len2000_l1.json --methods baseline fixmatch --labeled 1 --splits 0 1 2 3 --evaluate test"]
    assert json.loads((schedules / "acdc_semi_b_len2000_l1.json").read_text())["semisupervised"]["rampup_epochs"] == 15
    write_results(root / "arm_l2", "validation", {"fixmatch": {0: .53, 1: .41, 2: .62, 3: .5}})   # L2 now best
    assert module.choose_arm(root, out, fixmatch_at_b(), schedules)["chosen"] == "L2"
    fix = module.fix_plan(out, fixmatch_at_b(), schedules)
    assert fix[0] == "share verdict_b fix_400" and fix[2:4] == ["share arm_l2 fix_2000 fixmatch",
                                                                "share length_2000 fix_2000"]
    assert fix[1].startswith("fix_400 acdc_semi_b_l2.json --methods baseline fixmatch")
    assert json.loads((schedules / "acdc_semi_b_l2.json").read_text())["semisupervised"]["unlabeled_weight"] == 0.5
    # L0 kept: nothing to rerun
    for arm in ("arm_l1", "arm_l2"):
        write_results(root / arm, "validation", {"fixmatch": {0: .49, 1: .4, 2: .6, 3: .5}})
    assert module.choose_arm(root, out, fixmatch_at_b(), schedules)["chosen"] == "L0"
    assert module.fix_plan(out, fixmatch_at_b(), schedules) == []


def test_a_fix_takes_the_committed_baseline_runs_instead_of_training_them_again(tmp_path: Path) -> None:
    module = selection_module()
    schedules, root, out = schedules_copy(tmp_path), tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    (out / "arms.json").write_text(json.dumps({"chosen": "L4"}))
    baseline = {"0": 0.58, "1": 0.49, "2": 0.83, "3": 0.65}
    rows = [{"iterations": n, "arm": "L0", "scores": {"baseline": baseline, "fixmatch": baseline},
             "from_log": {"baseline": [0, 1]}} for n in (400, 2000)]
    rows[0]["scores"]["baseline"] = {"0": 0.58, "1": 0.49, "2": 0.83}           # 400: split 3 not committed
    (out / "length.json").write_text(json.dumps(rows))
    assert module.fix_plan(out, fixmatch_at_b(), schedules) == [
        "share verdict_b fix_400",
        "fix_400 acdc_semi_b_l4.json --methods baseline fixmatch --labeled 1 --splits 0 1 2 3 --evaluate test",
        "share arm_l4 fix_2000 fixmatch",                   # the arm's own trainings, predicted on the test scans
        "fix_2000 acdc_semi_b_len2000_l4.json --methods fixmatch --labeled 1 --splits 0 1 2 3 --evaluate test"]
    # the fix folder holds only the method's runs: the report pairs them with L0's committed baseline
    write_results(root / "fix_2000", "test", {"fixmatch": {0: 0.68, 1: 0.49, 2: 0.83, 3: 0.75}})
    runs = module.length_runs(root / "fix_2000", out, 2000, "L4", ("baseline", "fixmatch"))
    assert {s: r["mean_dice"] for s, r in runs["baseline"].items()} == {0: 0.58, 1: 0.49, 2: 0.83, 3: 0.65}
    assert [s for s, r in runs["baseline"].items() if r["from_log"]] == [0, 1]
    assert runs["fixmatch"][0]["mean_dice"] == 0.68                                 # the fix's, not L0's
    row = next(r for r in module.length_study(root, out, fixmatch_at_b(), "L4") if r["iterations"] == 2000)
    assert row["arm"] == "L4" and row["mean_difference"] == pytest.approx(0.05)   # +10, 0, 0, +10
    assert module.length_runs(root / "fix_2000", out, 2000, "L0", ("baseline",))["baseline"][0]["mean_dice"] == 0.58


def test_repeat_noise_pairs_each_verdict_run_with_the_selection_run_it_repeats(tmp_path: Path) -> None:
    module = selection_module()
    root, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    (out / "selection.json").write_text(json.dumps(fixmatch_at_b()))
    first = {"baseline": {0: 0.60, 1: 0.30, 2: 0.50, 3: 0.40}, "fixmatch": {0: 0.62, 1: 0.35, 2: 0.52, 3: 0.45},
             "spcon-mt": {0: 0.61, 1: 0.33, 2: 0.55, 3: 0.47}}
    module.write_scores(out, {"A": {"source": "test", "scores": {"baseline": first["baseline"], "fixmatch": {0: 0.1}}},
                              "B": {"source": "test", "scores": {"fixmatch": first["fixmatch"],
                                                                 "spcon-mt": first["spcon-mt"]}}})
    again = {m: {s: d + (0.04 if s % 2 else -0.02) for s, d in by.items()} for m, by in first.items()}
    again["baseline"][4] = 0.7                                   # split 4 was never trained twice
    write_results(root / "verdict_b", "validation", again)
    result = module.repeat_noise(root, out)
    assert [(r["method"], r["setting"], r["split"]) for r in result["pairs"]] == [
        (m, s, split) for m, s in (("baseline", "A"), ("fixmatch", "B"), ("spcon-mt", "B")) for split in range(4)]
    differences = [r["difference"] for r in result["pairs"]]
    assert differences == pytest.approx([-0.02, 0.04, -0.02, 0.04] * 3)
    assert result["mean_difference"] == pytest.approx(0.01)
    sd = float(np.std(differences, ddof=1))
    assert result["run_sd"] == pytest.approx(sd / np.sqrt(2))
    # the null half-width over 4 splits: t_{0.975, 3} = 3.182
    assert result["null_half_width"]["4"] == pytest.approx(3.1824 * sd / 2, rel=1e-4)
    assert (out / "repeats.md").is_file()
    scores = root / "verdict_b" / "validation_results.json"
    scores.write_text(scores.read_text().replace('"validation"', '"test"'))   # test-scan scores are never read
    with pytest.raises(ValueError, match="validation"):
        module.repeat_noise(root, out)


def test_last_epoch_mask_ratio_reads_the_checkpoints_logger(tmp_path: Path) -> None:
    import torch

    module = selection_module()
    runs = []
    for split, ratios in enumerate(([0.01, 0.02], [0.03, 0.06])):
        path = tmp_path / f"checkpoint_{split}.pth"
        torch.save({"logging": {"mask_ratio": ratios, "train_losses": [1.0, 0.5]}}, path)
        runs.append({"split": split, "checkpoint": {"path": str(path)}})
    assert module.last_epoch_mask_ratio(runs) == pytest.approx(0.04)          # (0.02 + 0.06) / 2
    torch.save({"logging": {"train_losses": [1.0]}}, tmp_path / "baseline.pth")
    assert module.last_epoch_mask_ratio([{"checkpoint": {"path": str(tmp_path / "baseline.pth")}}]) is None
    assert module.last_epoch_mask_ratio(runs + [{"checkpoint": {"path": str(tmp_path / "gone.pth")}}]) is None


def test_report_puts_every_table_of_the_comparison_in_results_json(tmp_path: Path) -> None:
    module = selection_module()
    root, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    (out / "selection.json").write_text(json.dumps({**fixmatch_at_b(), "best": "fixmatch"}))
    (out / "repeats.json").write_text(json.dumps({"run_sd": 0.03}))
    baseline = {0: 0.50, 1: 0.30, 2: 0.60, 3: 0.55}
    write_results(root / "verdict_b", "test", {"baseline": baseline, "fixmatch": {s: d - 0.04 for s, d in baseline.items()},
                                               "spcon-mt": {s: d + 0.01 for s, d in baseline.items()}})
    write_results(root / "length_1000", "test", {"baseline": baseline,
                                                 "fixmatch": {0: 0.52, 1: 0.31, 2: 0.60, 3: 0.50}})
    module.report(root, out)
    results = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in results["runs"]} == {"baseline", "fixmatch", "spcon-mt"}   # the verdict's runs
    rows = results["issue30"]["length_study"]
    assert [r["iterations"] for r in rows] == [400, 1000]                  # 2,000 not run yet: no row
    assert rows[0]["mean_difference"] == pytest.approx(-0.04)
    assert rows[1]["mean_difference"] == pytest.approx(-0.005) and (rows[1]["above"], rows[1]["below"]) == (2, 1)
    assert rows[1]["scores"] == {"baseline": {str(s): d for s, d in baseline.items()},
                                 "fixmatch": {"0": 0.52, "1": 0.31, "2": 0.60, "3": 0.50}}
    assert rows[1]["method_mean"] == pytest.approx(0.4825)
    assert results["issue30"]["repeats"] == {"run_sd": 0.03} and results["issue30"]["arms"] is None
    assert results["issue30"]["selection"]["best"] == "fixmatch"
    assert json.loads((out / "length.json").read_text()) == rows
    assert "| 1000 | setting B |" in (out / "length.md").read_text() and (out / "length.png").is_file()


def test_report_keeps_runs_whose_folders_are_gone_from_length_json_then_progress_log(tmp_path: Path) -> None:
    module = selection_module()
    root, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    (out / "selection.json").write_text(json.dumps({**fixmatch_at_b(), "best": "fixmatch"}))
    committed_400 = {"iterations": 400, "method": "fixmatch", "setting": "B", "arm": "L0", "n": 4,
                     "last_epoch_mask_ratio": 0.0034,
                     "scores": {"baseline": {"0": 0.6, "1": 0.4, "2": 0.7, "3": 0.5},
                                "fixmatch": {"0": 0.5, "1": 0.4, "2": 0.6, "3": 0.5}}}
    (out / "length.json").write_text(json.dumps([committed_400]))    # verdict_b's folder is gone
    # length 2,000: a session was cut off after 4 runs; the next one trained the other 4 in a new folder
    (out / "progress.log").write_text("\n".join([
        "=== length_1000 (2026-12-06T01:00:00Z)",
        "[0:30:00] [1/8] finished baseline, 1 labeled, split 0 (fold 0): Dice 11.00 % (training trained)",
        "=== length_2000 (2026-12-07T05:12:00Z)",
        "[0:31:20] [1/8] finished baseline, 1 labeled, split 0 (fold 0): Dice 58.00 % (training trained)",
        "[0:57:16] [2/8] finished fixmatch, 1 labeled, split 0 (fold 0): Dice 75.42 % (training trained)",
        "[1:01:34] [3/8] finished baseline, 1 labeled, split 1 (fold 1): Dice 48.88 % (training trained)",
        "[1:31:05] [4/8] finished baseline, 2 labeled, split 2 (fold 6): Dice 90.00 % (training trained)",
        "[1:31:05] [4/8] finished baseline, 1 labeled, split 2 (fold 2): validation Dice 99.00 % (training trained)",
        "[1:31:05] [4/8] finished baseline, 1 labeled, split 2 (fold 2): Dice 82.60 % (training trained)",
    ]) + "\n")
    write_results(root / "length_2000", "test", {"baseline": {3: 0.55, 2: 0.80},
                                                 "fixmatch": {1: 0.60, 2: 0.85, 3: 0.65}})
    module.report(root, out)
    rows = json.loads((out / "length.json").read_text())
    assert [r["iterations"] for r in rows] == [400, 2000]
    assert rows[0]["mean_difference"] == pytest.approx(-0.05) and rows[0]["last_epoch_mask_ratio"] == 0.0034
    assert rows[0]["scores"] == committed_400["scores"] and "from_log" not in rows[0]
    # the folder's run wins over the log's line (baseline split 2); the 1,000 section and other lines are not read
    assert rows[1]["scores"] == {"baseline": {"0": 0.58, "1": 0.4888, "2": 0.80, "3": 0.55},
                                 "fixmatch": {"0": 0.7542, "1": 0.60, "2": 0.85, "3": 0.65}}
    assert rows[1]["from_log"] == {"baseline": [0, 1], "fixmatch": [0]}
    assert rows[1]["mean_difference"] == pytest.approx((0.1742 + 0.1112 + 0.05 + 0.10) / 4)
    assert "2000 iterations: baseline split(s) 0, 1; fixmatch split(s) 0." in (out / "length.md").read_text()
    # a later checkout without the folder and the log: the same rows from the committed length.json
    (out / "progress.log").unlink()
    import shutil
    shutil.rmtree(root)
    module.report(root, out)
    assert json.loads((out / "length.json").read_text()) == rows


def test_fixmatch_default_ema_decay_is_the_committed_selections_choice() -> None:
    """FixMatchTrainer's class default is the EMA decay of the setting the selection chose for `fixmatch`."""
    from spcl_nnunet.training.semisupervised import FixMatchTrainer

    module = selection_module()
    chosen = next(e["setting"] for e in json.loads((RESULTS / "selection.json").read_text())["ranking"]
                  if e["name"] == "fixmatch")
    schedule = json.loads((REPO / "benchmarks" / "schedules" / module.SETTINGS[chosen]).read_text())
    assert FixMatchTrainer.ema_decay == schedule["semisupervised"]["ema_decay"] == 0.999


def test_fixmatch_default_unlabeled_batch_is_the_chosen_length_arms() -> None:
    """The length arm that the committed rule chose (arms.json), L4, halved setting B's unlabeled batch
    (6 -> 3): FixMatchTrainer's class default takes half of the labeled batch where no schedule sets
    unlabeled_batch_size; the other semi-supervised trainers keep the whole of it."""
    from types import SimpleNamespace

    from spcl_nnunet.training.semisupervised import FixMatchTrainer, MeanTeacherTrainer, SemiSupervisedTrainer

    arms = json.loads((RESULTS / "arms.json").read_text())
    assert arms["chosen"] == "L4" and arms["changes"]["L4"] == {"unlabeled_batch_size": 3}
    b = json.loads((REPO / "benchmarks" / "schedules" / "acdc_semi_b.json").read_text())
    assert FixMatchTrainer.unlabeled_batch_share == 3 / b["semisupervised"]["unlabeled_batch_size"] == 0.5
    assert MeanTeacherTrainer.unlabeled_batch_share == 1.0

    def per_process(trainer: type, unlabeled_batch_size: int | None, batch_size: int = 8) -> int:
        return SemiSupervisedTrainer.unlabeled_batch_per_process(SimpleNamespace(
            unlabeled_batch_size=unlabeled_batch_size, unlabeled_batch_share=trainer.unlabeled_batch_share,
            batch_size=batch_size))

    assert (per_process(FixMatchTrainer, None), per_process(MeanTeacherTrainer, None)) == (4, 8)
    assert per_process(FixMatchTrainer, None, batch_size=1) == 1                   # never an empty batch
    assert per_process(FixMatchTrainer, 6) == 6                                   # a schedule's value is kept
    with pytest.raises(ValueError, match="unlabeled_batch_share must be above 0, got 0"):
        SemiSupervisedTrainer.unlabeled_batch_per_process(SimpleNamespace(
            unlabeled_batch_size=None, unlabeled_batch_share=0, batch_size=8))


def test_single_runs_split_each_experiment_into_one_line_per_method_and_split() -> None:
    lines = ["share verdict_b verdict_c",
             "verdict_c acdc_semi_c.json --methods baseline fixmatch --labeled 2 --splits 0 3 --evaluate test"]
    assert selection_module().single_runs(lines) == [
        "share verdict_b verdict_c",
        "verdict_c acdc_semi_c.json --methods baseline --splits 0 --labeled 2 --evaluate test",
        "verdict_c acdc_semi_c.json --methods fixmatch --splits 0 --labeled 2 --evaluate test",
        "verdict_c acdc_semi_c.json --methods baseline --splits 3 --labeled 2 --evaluate test",
        "verdict_c acdc_semi_c.json --methods fixmatch --splits 3 --labeled 2 --evaluate test",
    ]

"""Issue #30's selection scores recovered from the progress log (benchmarks/semisupervised_selection.py):
the committed selection_scores.json is what the committed progress.log says."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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


def make_training(run: Path, fold: int, final: bool = True, validated: bool = True) -> Path:
    training = run / "Dataset910_SyntheticACDC" / "SPConBaselineTrainer__nnUNetPlans__2d" / f"fold_{fold}"
    (training / "validation").mkdir(parents=True)
    if final:
        (training / "checkpoint_final.pth").write_bytes(b"weights")
    if validated:
        (training / "validation" / "summary.json").write_text("{}")
    (run / "train.log").write_text("log")
    (run / "test_predictions").mkdir()
    (run / "test_predictions" / "summary.json").write_text("{}")
    return training


def test_share_baseline_copies_finished_trainings_without_their_test_predictions(tmp_path: Path) -> None:
    module = selection_module()
    source, target = tmp_path / "verdict_c", tmp_path / "verdict_b"
    runs = source / "runs" / "baseline"
    make_training(runs / "fold_0", 0)
    make_training(runs / "fold_1", 1, final=False)           # interrupted: only checkpoint_latest
    make_training(runs / "fold_2", 2, validated=False)       # final validation missing
    make_training(runs / "fold_3", 3)
    (target / "runs" / "baseline" / "fold_3").mkdir(parents=True)   # the target's own run is kept
    assert module.share_baseline(source, target) == ["fold_0"]
    copied = target / "runs" / "baseline" / "fold_0"
    training = copied / "Dataset910_SyntheticACDC" / "SPConBaselineTrainer__nnUNetPlans__2d" / "fold_0"
    assert (training / "checkpoint_final.pth").read_bytes() == b"weights"
    assert (training / "validation" / "summary.json").is_file() and (copied / "train.log").is_file()
    assert not (copied / "test_predictions").exists()
    assert sorted(p.name for p in (target / "runs" / "baseline").iterdir()) == ["fold_0", "fold_3"]
    assert not any((target / "runs" / "baseline" / "fold_3").iterdir())
    assert module.share_baseline(source, target) == []       # run again: nothing new

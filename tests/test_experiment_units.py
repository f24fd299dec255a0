"""Pieces of ``spcl_nnunet experiment`` that need no training: tables, the method registry, fold
selection."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest

from spcl_nnunet.experiment.methods import (METHODS, get_methods, pretraining_order, pretraining_start,
                                            trainer_class)
from spcl_nnunet.experiment.results import (dice_from_summary, mean_std, mean_std_cell, paired_comparisons,
                                            paired_difference, plot_learning_curve, results_csv, results_markdown,
                                            sort_records, table2_markdown, table3_markdown, write_results)
from spcl_nnunet.experiment.plan import select_folds
from spcl_nnunet.data.splits import make_fold_table

CLASSES = ("RV", "MYO", "LV")


def record(method: str, count: int, split: int, dice: tuple[float, float, float]) -> dict:
    return {"method": method, "label": f"label of {method}", "trainer": "T", "pretrainer": None,
            "fold": count * 10 + split, "num_labeled": count, "split": split, "dice": dict(zip(CLASSES, dice)),
            "mean_dice": float(np.mean(dice)), "summary": f"/x/{method}/{count}/{split}/summary.json"}


@pytest.fixture
def records() -> list[dict]:
    rng = np.random.default_rng(0)
    out = [record(m, c, s, tuple(rng.uniform(0.2, 0.9, 3))) for m in ("spcon", "baseline") for c in (1, 4)
           for s in range(3)]
    out.append(record("baseline", 8, 0, (0.8, 0.85, 0.9)))            # one split only
    out = [r for r in out if not (r["method"] == "spcon" and r["num_labeled"] == 4 and r["split"] == 1)]
    return sort_records(out, list(METHODS))


def cells(table: str, label: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in row.strip("|").split("|")][1:]


def test_mean_std_is_the_sample_std() -> None:
    values = [0.5, 0.7, 0.65]
    mean, std = mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert mean_std([0.3]) == (0.3, None)
    assert mean_std_cell([0.3]) == "30.00 (n/a)"
    assert mean_std_cell([0.5, 0.7]) == f"60.00 ({100 * np.std([0.5, 0.7], ddof=1):.2f})"
    # by hand: mean (0.5 + 0.7) / 2 = 0.6; std sqrt((0.1^2 + 0.1^2) / (2 - 1)) = sqrt(0.02) = 0.141421 -> 14.14 %
    # (ddof = 0 would give sqrt(0.02 / 2) = 0.1 -> 10.00)
    assert mean_std_cell([0.5, 0.7]) == "60.00 (14.14)"
    # mean 1.85 / 3 = 0.616667; deviations -0.116667, 0.083333, 0.033333, squares 0.0136111 + 0.0069444
    # + 0.0011111 = 0.0216667, / (3 - 1) = 0.0108333, sqrt = 0.104083 -> "61.67 (10.41)"
    assert mean_std_cell([0.5, 0.7, 0.65]) == "61.67 (10.41)"
    with pytest.raises(ValueError):
        mean_std([])


def test_table3_recomputes_from_the_splits(records: list[dict]) -> None:
    table = table3_markdown(records)
    sections = table.split("### ")[1:]
    assert [s.splitlines()[0] for s in sections] == ["1 labeled scan", "4 labeled scans", "8 labeled scans"]
    one = sections[0]
    assert one.splitlines()[2] == ("| method | split 0 | split 1 | split 2 | RV mean (std) | MYO mean (std) | "
                                   "LV mean (std) | mean (std) | − baseline, same splits |")
    # registry order: baseline before spcon
    assert one.index("label of baseline") < one.index("label of spcon")
    for method in ("baseline", "spcon"):
        runs = [r for r in records if r["method"] == method and r["num_labeled"] == 1]
        got = cells(one, f"label of {method}")
        assert got[:3] == [f"{100 * r['mean_dice']:.2f}" for r in runs]
        for i, c in enumerate(CLASSES):
            values = 100 * np.array([r["dice"][c] for r in runs])
            assert got[3 + i] == f"{values.mean():.2f} ({values.std(ddof=1):.2f})"
        overall = 100 * np.array([r["mean_dice"] for r in runs])
        assert got[6] == f"{overall.mean():.2f} ({overall.std(ddof=1):.2f})"
    assert cells(one, "label of baseline")[7] == ""
    four = cells(sections[1], "label of spcon")
    assert four[1] == "–"                                            # split 1 missing
    kept = [r["mean_dice"] for r in records if r["method"] == "spcon" and r["num_labeled"] == 4]
    assert len(kept) == 2 and four[-2] == mean_std_cell(kept)
    assert cells(sections[2], "label of baseline") == ["85.00", "80.00 (n/a)", "85.00 (n/a)", "90.00 (n/a)",
                                                        "85.00 (n/a)", ""]


def test_table3_difference_from_the_baseline_uses_the_same_splits(records: list[dict]) -> None:
    sections = table3_markdown(records).split("### ")[1:]
    for section, count, splits in ((sections[0], 1, (0, 1, 2)), (sections[1], 4, (0, 2))):
        dice = {(r["method"], r["split"]): r["mean_dice"] for r in records if r["num_labeled"] == count}
        expected = np.mean([dice["spcon", s] - dice["baseline", s] for s in splits])   # baseline's split 1 left out at 4
        assert cells(section, "label of spcon")[-1] == f"{100 * expected:+.2f} ({len(splits)} splits)"
    lone = sort_records([record("baseline", 1, 0, (0.5, 0.5, 0.5)), record("spcon", 1, 1, (0.6, 0.6, 0.6)),
                         record("spcon", 2, 0, (0.6, 0.6, 0.6))], list(METHODS))
    one, two = table3_markdown(lone).split("### ")[1:]
    assert cells(one, "label of spcon")[-1] == "–"                  # no split in common
    assert "same splits" not in two                                  # no baseline at 2 labeled


def test_table2_learning_curve(records: list[dict]) -> None:
    table = table2_markdown(records)
    assert table.splitlines()[0] == "| method | 1 labeled | 4 labeled | 8 labeled |"
    for method in ("baseline", "spcon"):
        expected = []
        for count in (1, 4, 8):
            values = [r["mean_dice"] for r in records if r["method"] == method and r["num_labeled"] == count]
            expected.append(mean_std_cell(values) if values else "–")
        assert cells(table, f"label of {method}") == expected
    assert cells(table, "label of spcon")[2] == "–"
    assert "ddof = 1" in results_markdown(records, "title")


def test_csv_rows(records: list[dict]) -> None:
    rows = list(csv.DictReader(io.StringIO(results_csv(records))))
    assert len(rows) == len(records)
    for row, r in zip(rows, records):
        assert float(row["dice_mean"]) == r["mean_dice"] and float(row["dice_MYO"]) == r["dice"]["MYO"]
        assert (row["method"], int(row["num_labeled"]), int(row["split"]), row["summary"]) == \
            (r["method"], r["num_labeled"], r["split"], r["summary"])


def test_dice_from_summary_reads_nnunet_keys() -> None:
    summary = {"mean": {"1": {"Dice": 0.1, "IoU": 0.0}, "2": {"Dice": 0.25}, "3": {"Dice": float("nan")}},
               "foreground_mean": {"Dice": 0.4}}
    per_class, mean = dice_from_summary(summary, {3: "LV", 1: "RV", 2: "MYO"})
    assert list(per_class) == ["RV", "MYO", "LV"] and per_class["RV"] == 0.1 and math.isnan(per_class["LV"])
    assert mean == 0.4
    with pytest.raises(KeyError):
        dice_from_summary(summary, {4: "AA"})


def test_paired_difference_on_hand_computed_values() -> None:
    # d = +2, -1, +5 points: mean 2, sd = sqrt((0 + 9 + 9) / 2) = 3, se = 3 / sqrt(3) = sqrt(3);
    # t_{0.975, 2} = 4.302652729911275 (the t table), half width 4.302652729911275 * sqrt(3) = 7.452413
    base = {s: {"mean_dice": v} for s, v in ((0, 0.50), (1, 0.60), (2, 0.40), (7, 0.9))}
    method = {s: {"mean_dice": v} for s, v in ((0, 0.52), (1, 0.59), (2, 0.45), (5, 0.1))}
    paired = paired_difference(method, base)
    assert paired["splits"] == [0, 1, 2] and paired["n"] == 3          # splits 5 and 7 are not shared
    assert paired["mean_difference"] == pytest.approx(0.02)
    assert paired["ci95"] == pytest.approx([0.02 - 0.07452413, 0.02 + 0.07452413], abs=1e-7)
    assert (paired["above"], paired["below"], paired["level"]) == (2, 1, 0)
    one = paired_difference({0: {"mean_dice": 0.5}}, {0: {"mean_dice": 0.5}})
    assert one["ci95"] is None and one["level"] == 1 and one["mean_difference"] == 0
    assert paired_difference({1: {"mean_dice": 0.5}}, {0: {"mean_dice": 0.5}}) is None


def test_paired_comparisons_in_results(records: list[dict], tmp_path: Path) -> None:
    comparisons = paired_comparisons(records)
    assert [(c["method"], c["num_labeled"], c["splits"]) for c in comparisons] == [("spcon", 1, [0, 1, 2]),
                                                                                   ("spcon", 4, [0, 2])]
    dice = {(r["method"], r["num_labeled"], r["split"]): r["mean_dice"] for r in records}
    d = [dice["spcon", 4, s] - dice["baseline", 4, s] for s in (0, 2)]
    half = 12.706204736174698 * abs(d[0] - d[1]) / math.sqrt(2) / math.sqrt(2)   # t_{0.975, 1}; sd = |d0 - d1| / sqrt 2
    assert comparisons[1]["ci95"] == pytest.approx([np.mean(d) - half, np.mean(d) + half])
    md = results_markdown(records, "t")
    section = md.split("## Paired comparison with the baseline")[1]
    row = cells(section, "label of spcon")
    assert row[:4] == ["baseline", "1", "3", f"{100 * comparisons[0]['mean_difference']:+.2f}"]
    assert all(c["against"] == "baseline" for c in comparisons)
    import json

    write_results(tmp_path, records, {"dataset": "D"}, "title")
    assert json.loads((tmp_path / "results.json").read_text())["paired_comparison"] == comparisons


def test_write_results(records: list[dict], tmp_path: Path) -> None:
    paths = write_results(tmp_path, records, {"dataset": "D"}, "title")
    assert [p.name for p in paths] == ["results.json", "results.csv", "results.md", "learning_curve.png"]
    assert paths[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))                              # no temporary file left
    plot_learning_curve(records[:1], tmp_path / "one.png")            # a single point draws too


def test_registry() -> None:
    assert [m.name for m in get_methods(["spcon", "baseline", "spcon"])] == ["spcon", "baseline"]
    with pytest.raises(ValueError) as err:
        get_methods(["baseline", "mt"])
    assert "unknown method(s) mt" in str(err.value) and ", ".join(METHODS) in str(err.value)
    for method in METHODS.values():
        trainer = trainer_class(method.trainer)
        assert trainer.schedule_role in ("finetune", "semisupervised"), method.name
        if method.pretrainer:
            chain = [trainer_class(t) for t in (method.pretrainer_from, method.pretrainer) if t]
            assert all(t.schedule_role == "pretrain" for t in chain)   # then fine-tuned or semi-supervised
            needed = set().union(*(set(t.meta_label_weights) - {"position"} for t in chain
                                   if hasattr(t, "meta_label_weights") and not t.simclr))
            assert needed == set(method.meta_labels), method.name
        else:
            assert method.pretrainer_from is None, method.name
    with pytest.raises(ValueError, match="not defined"):
        trainer_class("NoSuchTrainer")


def test_compared_methods_join_the_registry() -> None:
    assert {"mixup", "adversarial", "discrete-mi", "global-local"} <= set(METHODS)
    methods = get_methods(["global-local", "spcon", "contrastive", "mixup"])
    # the global stage is trained once, before the local stage that starts from it, and shared with contrastive
    assert pretraining_order(methods) == ["ContrastivePretrainTrainer", "LocalContrastivePretrainTrainer",
                                          "SPConPretrainTrainer"]
    assert pretraining_start(methods, "LocalContrastivePretrainTrainer") == "ContrastivePretrainTrainer"
    assert pretraining_start(methods, "ContrastivePretrainTrainer") is None
    assert pretraining_order(get_methods(["mixup", "adversarial", "discrete-mi"])) == []


def test_select_folds() -> None:
    table = make_fold_table([f"c{i}" for i in range(6)], ["v0"], [1, 2, 6], repeats=3, seed=0)
    assert [(f.num_labeled, f.split) for f in select_folds(table, None, None, "F")] == \
        [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (6, 0)]
    assert [(f.num_labeled, f.split) for f in select_folds(table, [2, 1], [0], "F")] == [(2, 0), (1, 0)]
    assert [(f.num_labeled, f.split) for f in select_folds(table, None, [1], "F")] == [(1, 1), (2, 1)]
    assert [f.fold for f in select_folds(table, [6], None, "F")] == [6]
    with pytest.raises(ValueError, match=r"F has no fold for \(labeled count, split\) \[\(6, 1\)\]") as err:
        select_folds(table, [6], [0, 1], "F")
    assert "1 labeled: split(s) 0, 1, 2; 2 labeled: split(s) 0, 1, 2; 6 labeled: split(s) 0" in str(err.value)
    with pytest.raises(ValueError, match=r"no fold with labeled count \[3\]"):
        select_folds(table, [3], None, "F")
    with pytest.raises(ValueError, match=r"no fold with split \[5\]"):
        select_folds(table, None, [5], "F")


def test_which_trainings_end_with_nnunets_final_validation(tmp_path: Path) -> None:
    """A training counts as finished without validation/summary.json exactly where the trainer
    skips nnU-Net's final validation (class attribute or schedule override ``final_validation``)."""
    from spcl_nnunet.experiment.commands import validates_after_training
    from spcl_nnunet.experiment.files import training_state
    from spcl_nnunet.training.schedules import SCHEDULES, Schedule

    smoke = SCHEDULES["smoke"]
    no_validation = Schedule.from_json({**smoke.to_json(), "name": "no_val",
                                        "finetune": {**smoke.finetune, "final_validation": False}}, "test")
    assert validates_after_training("SPConFinetuneTrainer", None)
    assert validates_after_training("SPConFinetuneTrainer", smoke)
    assert not validates_after_training("SPConFinetuneTrainer", no_validation)
    assert not validates_after_training("MeanTeacherTrainer", no_validation)     # semisupervised applies finetune
    assert not validates_after_training("SPConFinetuneTrainer", SCHEDULES["demo"])   # the demo predicts test scans
    assert not validates_after_training("SPConBaselineTrainer", SCHEDULES["demo"])
    assert validates_after_training("SPConFinetuneTrainer", SCHEDULES["quality"])
    assert not validates_after_training("SPConPretrainTrainer", None)
    (tmp_path / "checkpoint_final.pth").write_bytes(b"")
    assert training_state(tmp_path, validated=False) == "finished"
    assert training_state(tmp_path, validated=True) == "validate"

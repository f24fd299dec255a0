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

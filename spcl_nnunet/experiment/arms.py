"""Issue #19's controlled diagnosis: the arms' validation table and the committed selection rule.

Each arm is one experiment folder scored with ``--evaluate validation`` (its
``validation_results.json``). The rule (``benchmarks/README.md``, "Issue #19: arms and selection
rule", committed before any arm ran) is applied here as code, on validation scores only:

- among the transfer arms (a)-(d), the SP-Con run with the highest mean validation Dice wins,
  provided its paired mean difference from arm (a) over the same splits is above 0; otherwise (a)
  stays. Scores within 0.01 Dice points of the best are a tie, which goes to the arm listed first;
- arm (e) (nnU-Net's SGD, with its own SGD-trained baseline) replaces that winner only if its paired
  difference from its own baseline is larger than the winner's paired difference from arm (a)'s
  baseline.

Pure functions (no nnU-Net); fractions in, fractions out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spcl_nnunet.experiment.results import BASELINE_METHOD, mean_std, paired_difference

TRANSFER_ARMS = ("a", "b", "c", "d")
SGD_ARM = "e"
REFERENCE_ARM = "a"
SPCON_METHOD = "spcon"
TIE_TOLERANCE = 1e-4          # 0.01 Dice points, as a fraction

Scores = Mapping[int, float]   # split -> mean validation Dice (nnU-Net's foreground_mean)


def load_arm_records(folder: Path) -> list[dict[str, Any]]:
    """The runs of one arm's experiment folder, from its ``validation_results.json``."""
    path = Path(folder) / "validation_results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the arm with --evaluate validation first")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("evaluated_on") != "validation":
        raise ValueError(f"{path}: expected scores of the validation scans (\"evaluated_on\": \"validation\"), "
                         f"got {data.get('evaluated_on')!r}")
    return list(data["runs"])


def split_scores(records: Sequence[Mapping[str, Any]], method: str, num_labeled: int = 1) -> dict[int, float]:
    """``{split: mean Dice}`` of one method at one labeled count."""
    return {int(r["split"]): float(r["mean_dice"]) for r in records
            if r["method"] == method and int(r["num_labeled"]) == num_labeled}


def _as_runs(scores: Scores) -> dict[int, dict[str, float]]:
    return {split: {"mean_dice": value} for split, value in scores.items()}


def paired(scores: Scores, reference: Scores) -> dict[str, Any] | None:
    """``results.paired_difference`` of two ``{split: score}`` maps over the splits both have."""
    return paired_difference(_as_runs(scores), _as_runs(reference))


def mean_score(scores: Scores) -> float:
    if not scores:
        raise ValueError("an arm without any finished split has no score")
    return mean_std(list(scores.values()))[0]


def select_transfer_arm(spcon: Mapping[str, Scores], baseline: Scores, sgd_spcon: Scores | None = None,
                        sgd_baseline: Scores | None = None) -> dict[str, Any]:
    """Apply the committed selection rule. ``spcon``: arm -> SP-Con's validation scores for the
    arms (a)-(d) that ran (arm (a) is required); ``baseline``: arm (a)'s baseline (RAdam);
    ``sgd_spcon``/``sgd_baseline``: arm (e)'s two methods (both or neither). Returns the chosen arm
    and every number the choice was made on, with the reason in words."""
    if REFERENCE_ARM not in spcon:
        raise ValueError(f"the selection needs arm ({REFERENCE_ARM}), today's recipe; got arms {sorted(spcon)}")
    unknown = sorted(set(spcon) - set(TRANSFER_ARMS))
    if unknown:
        raise ValueError(f"unknown transfer arm(s) {unknown}: expected some of {', '.join(TRANSFER_ARMS)}")
    if (sgd_spcon is None) != (sgd_baseline is None):
        raise ValueError("arm (e) needs both its SP-Con and its SGD-trained baseline scores, or neither")
    arms = [a for a in TRANSFER_ARMS if a in spcon]
    means = {a: mean_score(spcon[a]) for a in arms}
    best_mean = max(means.values())
    best = next(a for a in arms if means[a] >= best_mean - TIE_TOLERANCE)     # ties go to the arm listed first
    versus_reference = {a: paired(spcon[a], spcon[REFERENCE_ARM]) for a in arms if a != REFERENCE_ARM}
    if best == REFERENCE_ARM:
        winner, reason = best, f"arm ({best}) has the highest mean validation Dice (or ties it)"
    elif versus_reference[best] is not None and versus_reference[best]["mean_difference"] > 0:
        winner = best
        reason = (f"arm ({best}) has the highest mean validation Dice and its paired mean difference from arm "
                  f"({REFERENCE_ARM}) is {100 * versus_reference[best]['mean_difference']:+.2f} points > 0")
    else:
        winner = REFERENCE_ARM
        shared = versus_reference[best]
        reason = (f"arm ({best}) has the highest mean validation Dice but its paired mean difference from arm "
                  f"({REFERENCE_ARM}) is "
                  + ("undefined (no shared split)" if shared is None else f"{100 * shared['mean_difference']:+.2f} points")
                  + f", not above 0: arm ({REFERENCE_ARM}) stays")
    versus_baseline = {a: paired(spcon[a], baseline) for a in arms}
    decision: dict[str, Any] = {"arms": arms, "mean": means, "versus_reference": versus_reference,
                                "versus_baseline": versus_baseline, "transfer_winner": winner,
                                "transfer_reason": reason, "chosen": winner, "reason": reason}
    if sgd_spcon is not None:
        sgd = paired(sgd_spcon, sgd_baseline)
        winner_gain = versus_baseline[winner]
        decision["sgd_versus_sgd_baseline"] = sgd
        if sgd is None or winner_gain is None:
            decision["reason"] = reason + f"; arm ({SGD_ARM}) not compared (no shared split)"
        elif sgd["mean_difference"] > winner_gain["mean_difference"]:
            decision["chosen"] = SGD_ARM
            decision["reason"] = (f"arm ({SGD_ARM})'s paired difference from its SGD baseline, "
                                  f"{100 * sgd['mean_difference']:+.2f} points, is larger than arm ({winner})'s "
                                  f"from the RAdam baseline, {100 * winner_gain['mean_difference']:+.2f}")
        else:
            decision["reason"] = (reason + f"; arm ({SGD_ARM})'s paired difference from its SGD baseline, "
                                  f"{100 * sgd['mean_difference']:+.2f} points, is not larger than arm ({winner})'s "
                                  f"from the RAdam baseline, {100 * winner_gain['mean_difference']:+.2f}")
    return decision


# arm -> (group, what it changes, the methods it runs and which baseline its rows compare with)
ARMS: dict[str, tuple[str, str]] = {
    "probe": ("representation", "encoder frozen throughout, decoder trained (baseline = random encoder)"),
    "a": ("transfer", "(a) today's recipe"),
    "b": ("transfer", "(b) encoder frozen for 5 epochs, then a fresh warm-up"),
    "c": ("transfer", "(c) encoder learning rate x 0.1"),
    "d": ("transfer", "(d) stages 0-2 random, 3-5 transferred"),
    "e": ("transfer", "(e) nnU-Net's SGD + warm-up + poly, SGD baseline"),
    "views60": ("pre-training", "60 views per pre-training batch (10 scans)"),
    "iters4x": ("pre-training", "4 x the pre-training iterations"),
}
OWN_BASELINE_ARMS = ("probe", "e")     # arms whose baseline runs with the arm's own recipe


def _interval(p: Mapping[str, Any] | None) -> str:
    if p is None:
        return "–"
    ci = "n/a" if p["ci95"] is None else f"[{100 * p['ci95'][0]:+.1f}, {100 * p['ci95'][1]:+.1f}]"
    return f"{100 * p['mean_difference']:+.2f} {ci} ({p['above']}/{p['below']})"


def arm_rows(arms: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (arm, method): per-split validation Dice, mean, and paired differences from
    arm (a)'s SP-Con run (for the probe: frozen against fine-tuned) and from the baseline that
    applies (the arm's own for the probe and (e), arm (a)'s otherwise)."""
    reference = split_scores(arms[REFERENCE_ARM], SPCON_METHOD) if REFERENCE_ARM in arms else {}
    radam_baseline = split_scores(arms[REFERENCE_ARM], BASELINE_METHOD) if REFERENCE_ARM in arms else {}
    rows = []
    for arm in [a for a in ARMS if a in arms] + sorted(set(arms) - set(ARMS)):
        records = arms[arm]
        baseline = split_scores(records, BASELINE_METHOD) if arm in OWN_BASELINE_ARMS else radam_baseline
        for method in dict.fromkeys(r["method"] for r in records):
            scores = split_scores(records, method)
            if not scores:
                continue
            label = next(r["label"] for r in records if r["method"] == method)
            if arm == "probe" and method == BASELINE_METHOD:
                label = "random encoder (no pre-training)"
            is_baseline = method == BASELINE_METHOD
            rows.append({"arm": arm, "group": ARMS.get(arm, ("other", arm))[0],
                         "arm_text": ARMS.get(arm, ("other", arm))[1], "method": method, "label": label,
                         "scores": {str(s): v for s, v in sorted(scores.items())}, "mean": mean_score(scores),
                         "versus_reference": None if is_baseline or arm == REFERENCE_ARM
                         else paired(scores, reference),
                         "versus_baseline": None if is_baseline else paired(scores, baseline)})
    return rows


def arm_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The arms' validation table (Dice points; paired differences as mean [95 % t-interval]
    (splits above/below))."""
    splits = sorted({int(s) for r in rows for s in r["scores"]})
    header = (["group", "arm", "method"] + [f"split {s}" for s in splits]
              + ["mean", "− arm (a) SP-Con", "− baseline"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["group"], r["arm_text"], r["label"]]
        cells += [f"{100 * r['scores'][str(s)]:.1f}" if str(s) in r["scores"] else "–" for s in splits]
        cells += [f"{100 * r['mean']:.2f}", _interval(r["versus_reference"]), _interval(r["versus_baseline"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selection_from_arms(arms: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any] | None:
    """``select_transfer_arm`` on the arms that have run (None before arm (a) has)."""
    if REFERENCE_ARM not in arms:
        return None
    spcon = {a: split_scores(arms[a], SPCON_METHOD) for a in TRANSFER_ARMS if a in arms}
    spcon = {a: s for a, s in spcon.items() if s}
    if REFERENCE_ARM not in spcon:
        return None
    sgd_spcon = sgd_baseline = None
    if SGD_ARM in arms:
        sgd_spcon = split_scores(arms[SGD_ARM], SPCON_METHOD) or None
        sgd_baseline = split_scores(arms[SGD_ARM], BASELINE_METHOD) or None
        if sgd_spcon is None or sgd_baseline is None:
            sgd_spcon = sgd_baseline = None
    return select_transfer_arm(spcon, split_scores(arms[REFERENCE_ARM], BASELINE_METHOD), sgd_spcon, sgd_baseline)

"""Choose among candidates on the validation scans, by a rule fixed before they run.

A candidate is anything run over the same splits and scored on the fold table's validation scans
(``spcl_nnunet experiment --evaluate validation`` writes each run's score to
``validation_results.json``): a transfer recipe, a semi-supervised method, a schedule. No test scan
takes part in a choice; only the chosen candidate and its baseline are run on the test scans,
afterwards.

The rule (issue #19 committed it before its arms ran; ``benchmarks/README.md``, "Issue #19: arms
and selection rule"):

1. The candidate with the highest mean validation score wins. Means within ``tolerance`` (0.01
   Dice points) of the best are a tie, which goes to the candidate listed first.
2. The winner replaces the ``reference`` (today's default, itself a candidate) only if its paired
   mean difference from the reference over the splits both have is above 0; otherwise the
   reference stays.
3. A candidate that changes its baseline too (issue #19's arm (e) trained both with another
   optimiser) is scored as its paired difference from its *own* baseline. It replaces the winner
   only if that difference is larger than the winner's paired difference from ``baseline``.

Pure functions (no nnU-Net); scores are fractions, ``{split: mean Dice}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spcl_nnunet.experiment.results import mean_std, paired_difference

TIE_TOLERANCE = 1e-4          # 0.01 Dice points, as a fraction

Scores = Mapping[int, float]   # split -> mean validation Dice (nnU-Net's foreground_mean)


def load_validation_records(folder: Path) -> list[dict[str, Any]]:
    """The runs of one experiment folder scored on the validation scans (its
    ``validation_results.json``). Test-scan scores are refused: a choice never sees them."""
    path = Path(folder) / "validation_results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the experiment with --evaluate validation first")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("evaluated_on") != "validation":
        raise ValueError(f"{path}: expected scores of the validation scans (\"evaluated_on\": \"validation\"), "
                         f"got {data.get('evaluated_on')!r}")
    return list(data["runs"])


def split_scores(records: Sequence[Mapping[str, Any]], method: str, num_labeled: int = 1) -> dict[int, float]:
    """``{split: mean Dice}`` of one method at one labeled count."""
    return {int(r["split"]): float(r["mean_dice"]) for r in records
            if r["method"] == method and int(r["num_labeled"]) == num_labeled}


def method_scores(records: Sequence[Mapping[str, Any]], num_labeled: int = 1) -> dict[str, dict[int, float]]:
    """``{method: {split: mean Dice}}`` at one labeled count, methods in the order they first
    appear: the candidates of a choice among the methods of one experiment folder."""
    methods = dict.fromkeys(r["method"] for r in records if int(r["num_labeled"]) == num_labeled)
    return {m: split_scores(records, m, num_labeled) for m in methods}


def paired(scores: Scores, reference: Scores) -> dict[str, Any] | None:
    """``results.paired_difference`` of two ``{split: score}`` maps over the splits both have
    (None: no shared split)."""
    return paired_difference({s: {"mean_dice": v} for s, v in scores.items()},
                             {s: {"mean_dice": v} for s, v in reference.items()})


def mean_score(scores: Scores) -> float:
    if not scores:
        raise ValueError("a candidate without any scored split has no mean")
    return mean_std(list(scores.values()))[0]


def _points(p: Mapping[str, Any]) -> str:
    return f"{100 * p['mean_difference']:+.2f} points"


def choose_on_validation(candidates: Mapping[str, Scores], reference: str, baseline: Scores | None = None,
                         own_baseline: Mapping[str, tuple[Scores, Scores]] | None = None,
                         tolerance: float = TIE_TOLERANCE) -> dict[str, Any]:
    """Apply the rule of the module docstring.

    ``candidates``: name -> validation scores, in the order that breaks ties; ``reference`` (one of
    them) is today's default. ``baseline``: the scores the candidates' gains are measured against
    (optional unless ``own_baseline`` is given). ``own_baseline``: name -> (scores, that candidate's
    own baseline's scores), for candidates that change their baseline too.

    Returns ``chosen`` and ``reason`` (in words), the winner of steps 1-2 (``winner``,
    ``winner_reason``) and every number the choice was made on: ``mean``, ``versus_reference``,
    ``versus_baseline`` and ``versus_own_baseline`` (``results.paired_difference`` dicts)."""
    if reference not in candidates:
        raise ValueError(f"the reference {reference!r} is not among the candidates {list(candidates)}")
    own_baseline = dict(own_baseline or {})
    if own_baseline and baseline is None:
        raise ValueError("candidates with their own baseline are compared through the others' baseline: "
                         "pass baseline too")
    clash = sorted(set(own_baseline) & set(candidates))
    if clash:
        raise ValueError(f"{clash} given both as a candidate and as a candidate with its own baseline")
    names = list(candidates)
    means = {name: mean_score(candidates[name]) for name in names}
    best_mean = max(means.values())
    best = next(name for name in names if means[name] >= best_mean - tolerance)   # ties: listed first
    versus_reference = {name: paired(candidates[name], candidates[reference]) for name in names if name != reference}
    if best == reference:
        winner, reason = best, f"{best!r} has the highest mean validation Dice (or ties it)"
    elif versus_reference[best] is not None and versus_reference[best]["mean_difference"] > 0:
        winner = best
        reason = (f"{best!r} has the highest mean validation Dice and its paired mean difference from "
                  f"{reference!r} is {_points(versus_reference[best])} > 0")
    else:
        winner = reference
        shared = versus_reference[best]
        reason = (f"{best!r} has the highest mean validation Dice but its paired mean difference from "
                  f"{reference!r} is " + ("undefined (no shared split)" if shared is None else _points(shared))
                  + f", not above 0: {reference!r} stays")
    versus_baseline = {name: paired(candidates[name], baseline) for name in names} if baseline is not None else {}
    decision: dict[str, Any] = {"candidates": names, "reference": reference, "mean": means,
                                "versus_reference": versus_reference, "versus_baseline": versus_baseline,
                                "winner": winner, "winner_reason": reason, "versus_own_baseline": {},
                                "chosen": winner, "reason": reason}
    chosen_gain, against = versus_baseline.get(winner), "the baseline"
    for name, (scores, own) in own_baseline.items():
        gain = paired(scores, own)
        decision["versus_own_baseline"][name] = gain
        if gain is None or chosen_gain is None:
            decision["reason"] += f"; {name!r} not compared (no shared split)"
            continue
        larger = gain["mean_difference"] > chosen_gain["mean_difference"]
        versus = (f"{name!r}'s paired difference from its own baseline, {_points(gain)}, is "
                  f"{'larger' if larger else 'not larger'} than {decision['chosen']!r}'s from {against}, "
                  f"{_points(chosen_gain)}")
        if larger:
            decision["chosen"], decision["reason"] = name, versus
            chosen_gain, against = gain, "its own baseline"
        else:
            decision["reason"] += "; " + versus
    return decision


def rank_against_baseline(candidates: Mapping[str, Scores], baseline: Scores,
                          tolerance: float = TIE_TOLERANCE) -> list[dict[str, Any]]:
    """The candidates (e.g. each method at its chosen setting), best first, by their paired mean
    difference from ``baseline`` over the splits both have; differences within ``tolerance`` of
    each other keep the order the candidates are listed in. A candidate without a shared split is
    a ValueError (it cannot be ranked)."""
    gains = {}
    for name, scores in candidates.items():
        gain = paired(scores, baseline)
        if gain is None:
            raise ValueError(f"{name!r} shares no split with the baseline: it cannot be ranked")
        gains[name] = gain
    remaining, ranked = list(candidates), []
    while remaining:
        best = max(gains[n]["mean_difference"] for n in remaining)
        name = next(n for n in remaining if gains[n]["mean_difference"] >= best - tolerance)
        ranked.append({"name": name, "versus_baseline": gains[name]})
        remaining.remove(name)
    return ranked

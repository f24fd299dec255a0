"""Issue #30's committed rule, applied to the selection runs (validation scans only), and the plans of
the later stages. See benchmarks/README.md, "Issue #30".

    python benchmarks/semisupervised_selection.py --root quality_runs/acdc_semi --out benchmarks/results/acdc_semisupervised
        -> selection.json, selection.md (and the table on stdout), from the committed selection_scores.json
    ... --collect A B C
        -> the settings' validation scores (selection_<x>/validation_results.json under --root) into
           selection_scores.json under --out, which is committed: the choice does not depend on run
           folders that a new checkout does not have
    ... --from-log A B
        -> the same from the "finished ..." lines of --out/progress.log (Dice to 2 decimals), for
           settings whose run folders are gone
    ... --plan verdict | length
        -> one line per training to run (one method, one split): workdir, schedule file name, experiment
           arguments; or "share FROM TO" (the verdict's second setting reuses the first one's baseline runs)
    ... --share-runs FROM TO [METHOD]
        -> METHOD's (default: the baseline's) finished trainings of folder FROM copied into TO
    ... --plan repeats
        -> the verdict folders' trainings at 1 labeled x splits 0-3 scored on their validation scans (for --repeats)
    ... --plan arms          (only if the gain at 2,000 iterations is below the gain at 1,000)
        -> L0 (the length-2000 runs scored on their validation scans) and the arms L1-L5 that apply
    ... --choose-arm
        -> the committed rule over L0 and the arms (validation scans): arms.json, arms.md
    ... --plan fix           (only if an arm beat L0)
        -> the best method with the chosen arm's change at 400 and 2,000 iterations, test scans
    ... --repeats
        -> the runs trained twice (the selection's runs at 1 labeled x splits 0-3 again in the verdict, same
           method, setting and split; scored on the validation scans of both): the run-to-run noise that
           every paired difference carries (repeats.json, repeats.md)
    ... --report
        -> the verdict's results.json / results.md (per chosen setting) copied into --out, and the length
           study's paired differences (length.json, length.md, length.png); results.json then also holds
           the selection, the length study, the arms and the repeats under "issue30"
           (a run whose folder is gone keeps its Dice from the committed length.json, else from the
           "finished" line of progress.log, to 2 decimals; the row names the runs taken from the log)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from spcl_nnunet.experiment.files import write_json, write_text
from spcl_nnunet.experiment.results import paired_difference
from spcl_nnunet.experiment.selection import (choose_on_validation, load_validation_records, method_scores,
                                              rank_against_baseline)

SETTINGS = {"A": "acdc_semi_a.json", "B": "acdc_semi_b.json", "C": "acdc_semi_c.json"}   # A: the reference
METHODS = ("mean-teacher", "spcon-mt", "spcon-mt-pretrained", "fixmatch", "fixmatch-pretrained")   # tie order
BASELINE = "baseline"
SPLITS = (0, 1, 2, 3)                # 1 labeled scan x splits 0-3
VERDICT_RUNS = {1: range(8), 2: range(4)}   # labeled scans -> splits of the verdict
ONE_LABELED = "--labeled 1 --splits " + " ".join(map(str, SPLITS))   # experiment arguments for those runs
LENGTHS = {1000: 50, 2000: 100}     # iterations -> fine-tuning epochs of 20 iterations (400: the verdict's runs)


SCORES = "selection_scores.json"   # {"settings": {setting: {"source": ..., "scores": {method: {split: Dice}}}}}


def finished_line(scans: str) -> re.Pattern:
    """The experiment's "finished" progress line of a run scored on ``scans`` ("validation " or "": test)."""
    return re.compile(r"finished (?P<method>[\w-]+), (?P<labeled>\d+) labeled, split (?P<split>\d+) \(fold \d+\): "
                      + scans + r"Dice (?P<dice>[\d.]+) %")


FINISHED, FINISHED_TEST = finished_line("validation "), finished_line("")


def read_scores(out: Path) -> dict:
    path = out / SCORES
    return json.loads(path.read_text()) if path.is_file() else {"settings": {}}


def write_scores(out: Path, settings: dict) -> None:
    data = read_scores(out)
    data["settings"].update(settings)
    write_json(out / SCORES, data)


def collect(root: Path, out: Path, settings: list[str]) -> None:
    """Each setting's validation scores from its experiment folder's validation_results.json."""
    found = {}
    for setting in settings:
        folder = root / f"selection_{setting.lower()}"
        found[setting] = {"source": f"{folder.name}/validation_results.json",
                          "scores": method_scores(load_validation_records(folder))}
        print(f"setting {setting}: {len(found[setting]['scores'])} method(s) from {folder / 'validation_results.json'}")
    write_scores(out, found)


def logged_scores(text: str, section: str, finished: re.Pattern = FINISHED) -> dict[str, dict[int, float]]:
    """``{method: {split: Dice}}`` at 1 labeled scan from the ``finished`` lines of the log's sections
    ``=== <section>`` (validation scores; FINISHED_TEST: test scores); a later line of the same run (a
    resumed stage reuses it) wins."""
    scores: dict[str, dict[int, float]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("=== "):
            current = line.split()[1]
            continue
        match = finished.search(line)
        if current == section and match and match["labeled"] == "1":
            scores.setdefault(match["method"], {})[int(match["split"])] = round(float(match["dice"]) / 100, 6)
    return scores


def scores_from_log(text: str, setting: str) -> dict[str, dict[int, float]]:
    """A selection setting's validation scores from the log's sections ``=== selection_<x>``."""
    return logged_scores(text, f"selection_{setting.lower()}")


def recover_from_log(out: Path, settings: list[str]) -> None:
    log = out / "progress.log"
    text = log.read_text()
    found = {}
    for setting in settings:
        scores = scores_from_log(text, setting)
        if not scores:
            raise SystemExit(f"{log}: no finished run of setting {setting} (section '=== selection_{setting.lower()}')")
        found[setting] = {"source": f"{log.name}, the runs' 'finished' lines (Dice to 2 decimals; the run folders "
                                    "were lost with the checkout of a session that was cut off)",
                          "scores": scores}
        print(f"setting {setting}: " + ", ".join(f"{m} {len(v)} split(s)" for m, v in scores.items()))
    write_scores(out, found)


def select(out: Path) -> dict:
    stored = read_scores(out)["settings"]
    scores = {setting: {method: {int(split): dice for split, dice in by_split.items()}
                        for method, by_split in stored[setting]["scores"].items()}
              for setting in SETTINGS if setting in stored}
    if "A" not in scores or BASELINE not in scores["A"]:
        raise SystemExit(f"{out / SCORES}: no validation scores of the baseline at setting A yet")
    baseline = scores["A"][BASELINE]
    # the rule is applied to the whole grid only: every (setting, method) of the grid on all 4 splits
    grid = {"A": (BASELINE, *METHODS), "B": ("mean-teacher", "spcon-mt", "fixmatch"), "C": ("mean-teacher", "fixmatch")}
    missing = [f"{setting} {method} split(s) {sorted(set(SPLITS) - set(scores.get(setting, {}).get(method, {})))}"
               for setting, methods in grid.items() for method in methods
               if set(SPLITS) - set(scores.get(setting, {}).get(method, {}))]
    if missing:
        raise SystemExit("the selection is not finished (run 'acdc_semisupervised.sh selection' again): missing "
                         + "; ".join(missing))
    decisions, chosen = {}, {}
    for method in METHODS:
        candidates = {s: scores[s][method] for s in SETTINGS if s in scores and method in scores[s]}
        if "A" not in candidates:
            raise SystemExit(f"{method}: no validation scores at setting A (the reference) yet")
        decisions[method] = choose_on_validation(candidates, "A", baseline)
        chosen[method] = candidates[decisions[method]["chosen"]]
    ranking = rank_against_baseline(chosen, baseline)
    for entry in ranking:
        entry["setting"] = decisions[entry["name"]]["chosen"]
    return {"rule": "benchmarks/README.md, Issue #30 (committed before the first selection run)",
            "evaluated_on": "validation", "scores_from": {s: stored[s]["source"] for s in scores},
            "baseline": baseline, "settings": SETTINGS,
            "per_method": decisions, "ranking": ranking, "verdict_methods": [r["name"] for r in ranking[:2]],
            "best": ranking[0]["name"]}


def table(selection: dict) -> str:
    lines = ["| rank | method | chosen setting | mean validation Dice per setting (A / B / C) | "
             "paired difference from the baseline, points [95 % CI] |", "|---|---|---|---|---|"]
    for rank, entry in enumerate(selection["ranking"], 1):
        decision = selection["per_method"][entry["name"]]
        means = " / ".join(f"{100 * decision['mean'][s]:.2f}" if s in decision["mean"] else "–" for s in SETTINGS)
        gain = entry["versus_baseline"]
        ci = gain["ci95"]
        interval = f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else "(one split)"
        lines.append(f"| {rank} | {entry['name']} | {entry['setting']} | {means} | "
                     f"{100 * gain['mean_difference']:+.2f} {interval} |")
    return "\n".join(lines) + "\n"


def verdict_settings(selection: dict) -> dict[str, list[str]]:
    """``{setting: [method, ...]}`` of the two chosen methods, in rank order: one verdict folder each."""
    by_setting: dict[str, list[str]] = {}
    for entry in selection["ranking"][:2]:
        by_setting.setdefault(entry["setting"], []).append(entry["name"])
    return by_setting


def committed_verdict(out: Path, by_setting: dict[str, list[str]]) -> bool:
    """Whether the committed results (results.json, results_setting_<x>.json) hold every verdict run."""
    runs = set()
    for path in [out / "results.json", *out.glob("results_setting_*.json")]:
        data = json.loads(path.read_text()) if path.is_file() else {}
        if data.get("evaluated_on") == "test":
            runs |= {(r["method"], int(r["num_labeled"]), int(r["split"])) for r in data["runs"]}
    needed = {(m, labeled, split) for methods in by_setting.values() for m in (BASELINE, *methods)
              for labeled, splits in VERDICT_RUNS.items() for split in splits}
    return needed <= runs


def committed_lengths(out: Path) -> set[int]:
    """The lengths whose paired difference over all of splits 0-3 is in the committed length.json."""
    path = out / "length.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    return {r["iterations"] for r in rows if r["arm"] == "L0" and r["splits"] == list(SPLITS)}


def plan(selection: dict, stage: str, schedules: Path, out: Path | None = None) -> list[str]:
    """Experiment lines: (workdir, schedule file, arguments). With ``out``, what its committed results
    already hold is not planned again (a new checkout has no run folders: the committed files are
    what survives a cut-off session)."""
    by_setting = verdict_settings(selection)
    if out is not None and (stage == "verdict" and committed_verdict(out, by_setting)
                            or stage == "repeats" and (out / "repeats.json").is_file()):
        return []
    if stage == "verdict":
        lines = []
        for number, (setting, methods) in enumerate(by_setting.items()):
            if number:   # the baseline's finished runs of the first setting's folder, reused here
                lines.append(f"share verdict_{next(iter(by_setting)).lower()} verdict_{setting.lower()}")
            for labeled, splits in VERDICT_RUNS.items():
                lines.append(f"verdict_{setting.lower()} {SETTINGS[setting]} --methods {BASELINE} {' '.join(methods)} "
                             f"--labeled {labeled} --splits {' '.join(map(str, splits))} --evaluate test")
        return lines
    if stage == "repeats":   # the verdict's trainings at 1 labeled x splits 0-3, scored on their validation scans
        return [f"verdict_{setting.lower()} {SETTINGS[setting]} --methods {BASELINE} {' '.join(methods)} {ONE_LABELED} "
                "--evaluate validation" for setting, methods in by_setting.items()]
    best = selection["ranking"][0]
    lines = []
    for iterations in LENGTHS:
        if out is not None and iterations in committed_lengths(out):
            continue
        name = length_schedule(schedules, best["setting"], iterations)
        lines.append(f"length_{iterations} {name} --methods {BASELINE} {best['name']} {ONE_LABELED} --evaluate test")
    return lines


def write_schedule(schedules: Path, name: str, description: str, base: dict, finetune: dict | None = None,
                   semisupervised: dict | None = None) -> str:
    """``base`` with some values of its sections changed, as ``schedules/<name>.json`` (kept if it
    exists: a resumed stage reads the same schedule); returns the file name."""
    schedule = {**base, "name": name, "description": description,
                "finetune": {**base["finetune"], **(finetune or {})},
                "semisupervised": {**base["semisupervised"], **(semisupervised or {})}}
    path = schedules / f"{name}.json"
    if not path.is_file():
        write_json(path, schedule)
    return path.name


def length_schedule(schedules: Path, setting: str, iterations: int) -> str:
    epochs = LENGTHS[iterations]
    base = json.loads((schedules / SETTINGS[setting]).read_text())
    return write_schedule(schedules, f"acdc_semi_{setting.lower()}_len{iterations}",
                          f"issue #30 length study: setting {setting} at {iterations} fine-tuning iterations "
                          f"({epochs} epochs of 20 at batch 8)", base, finetune={"num_epochs_default": epochs})


# ------------------------------------------------------------------------------------- length arms
# benchmarks/README.md, "Length arms": each arm changes one value of the best method's length-2000
# schedule (L0); they run only if the gain at 2,000 iterations is below the gain at 1,000 (the trigger as
# amended on 2026-12-07, "The gain fell from 1,000 to 2,000 iterations"; it was: below the gain at 400)
ARM_HYPOTHESES = {
    "L1": "the unlabeled term at full weight for most of a long run pulls against a supervised signal that keeps improving",
    "L2": "at length, the unlabeled term outweighs one labeled scan",
    "L3": "the teacher follows the student too closely in a long run",
    "L4": "the unlabeled batch's share of each step's gradient is too large",
    "L5": "at length the confident pixels are almost all background, so the unlabeled term pulls the student toward background",
}
ARM_DECAY = 0.998              # L3's EMA decay; dropped where the setting's decay is at least this
UNLABELED_WEIGHT_KEYS = ("unlabeled_weight", "consistency_weight")   # FixMatch-style; Mean Teacher family


def arm_changes(method: str, schedule: dict) -> dict[str, dict[str, object] | None]:
    """``{arm: {semisupervised key: value}}`` for L1-L5 on ``method`` under the length-2000
    ``schedule`` (None: the arm does not apply, see ``arm_skipped``). A value the schedule does not
    set is read from the method's trainer class (its default)."""
    from spcl_nnunet.experiment.methods import METHODS as REGISTRY, trainer_class

    trainer = trainer_class(REGISTRY[method].trainer)
    semi = schedule["semisupervised"]

    def value(key: str):
        return semi[key] if key in semi else getattr(trainer, key)

    weight_key = next(k for k in UNLABELED_WEIGHT_KEYS if hasattr(trainer, k))
    batch_key = "unlabeled_batch_size" if hasattr(trainer, "unlabeled_batch_size") else "num_scans_per_batch"
    epochs = schedule["finetune"]["num_epochs_default"]
    return {
        # the same share of the training as 3 of 20 epochs
        "L1": {"rampup_epochs": round(value("rampup_epochs") * epochs / 20)},
        "L2": {weight_key: value(weight_key) / 2},
        "L3": {"ema_decay": ARM_DECAY} if value("ema_decay") < ARM_DECAY else None,
        "L4": {batch_key: value(batch_key) // 2},
        # pseudo-label methods only (FixMatchTrainer's L_u^bal)
        "L5": {"class_balanced_pseudo_labels": True} if hasattr(trainer, "class_balanced_pseudo_labels") else None,
    }


def arm_skipped(changes: dict[str, dict | None], schedule: dict) -> dict[str, str]:
    """Why each arm of ``arm_changes`` that does not apply was dropped."""
    reasons = {"L3": f"ema_decay is already {schedule['semisupervised'].get('ema_decay')} >= {ARM_DECAY}: a longer "
                     "EMA horizon than the arm's",
               "L5": "the method has no pseudo-labels to balance"}
    return {arm: reasons[arm] for arm, change in changes.items() if change is None}


def gain_shrinks(rows: list[dict]) -> bool:
    """The amended trigger: the paired mean difference at 2,000 iterations below the one at 1,000."""
    by = {row["iterations"]: row["mean_difference"] for row in rows}
    shorter, longest = sorted(LENGTHS)[-2:]
    if shorter not in by or longest not in by:
        raise SystemExit(f"the length study has no paired difference at {shorter} and {longest} iterations yet "
                         "(run 'acdc_semisupervised.sh length' and 'report')")
    return by[longest] < by[shorter]


def arms_plan(root: Path, out: Path, selection: dict, schedules: Path) -> list[str]:
    """L0 (the length-2000 runs, scored on their validation scans, with the baseline's) and the
    arms that apply, each in its own folder; nothing when the gain does not shrink."""
    best = selection["ranking"][0]
    if not gain_shrinks(length_study(root, out, selection)):
        return []
    reference = length_schedule(schedules, best["setting"], max(LENGTHS))
    base = json.loads((schedules / reference).read_text())
    lines = unscored_lines(root, out, f"length_{max(LENGTHS)}", reference, (BASELINE, best["name"]))
    for arm, change in arm_changes(best["name"], base).items():
        if change is None:
            continue
        changed = ", ".join(f"{k} {v}" for k, v in change.items())
        name = write_schedule(schedules, f"{reference[:-len('.json')]}_{arm.lower()}",
                              f"issue #30 length arm {arm} ({ARM_HYPOTHESES[arm]}): {reference} with {changed}",
                              base, semisupervised=change)
        lines += unscored_lines(root, out, f"arm_{arm.lower()}", name, (best["name"],))
    return lines


def unscored_lines(root: Path, out: Path, name: str, schedule: str, methods: tuple[str, ...]) -> list[str]:
    """Experiment lines for the runs of ``methods`` x splits 0-3 of folder ``name`` that have no validation
    score yet (in the folder or in progress.log): one line per set of missing splits, so that a stage
    resumed from a new checkout trains only what no session finished."""
    scored = scored_runs(root, out, name)
    missing: dict[tuple[int, ...], list[str]] = {}
    for method in methods:
        splits = tuple(s for s in SPLITS if s not in scored.get(method, {}))
        if splits:
            missing.setdefault(splits, []).append(method)
    return [f"{name} {schedule} --methods {' '.join(group)} --labeled 1 --splits {' '.join(map(str, splits))} "
            "--evaluate validation" for splits, group in missing.items()]


def scored_runs(root: Path, out: Path, name: str) -> dict[str, dict[int, float]]:
    """``{method: {split: validation Dice}}`` of the experiment folder ``root/name`` (its
    validation_results.json); a run missing there (its folder lost with a checkout) from its "finished ...
    validation Dice" line in progress.log's sections ``=== <name>`` (2 decimals). Empty: none scored."""
    folder, log = root / name, out / "progress.log"
    scores = method_scores(load_validation_records(folder)) if (folder / "validation_results.json").is_file() else {}
    for method, by_split in (logged_scores(log.read_text(), name) if log.is_file() else {}).items():
        for split, dice in by_split.items():
            scores.setdefault(method, {}).setdefault(split, dice)
    return scores


def validation_scores(root: Path, out: Path, name: str) -> dict[str, dict[int, float]]:
    """``scored_runs``, refusing a folder with none."""
    scores = scored_runs(root, out, name)
    if not scores:
        folder, log = root / name, out / "progress.log"
        raise SystemExit(f"no validation scores of {name}: neither {folder / 'validation_results.json'} nor a "
                         f"finished validation run in {log}'s sections '=== {name}'")
    return scores


def choose_arm(root: Path, out: Path, selection: dict, schedules: Path) -> dict:
    """The committed rule over L0 and the arms that ran (validation scans), reference L0."""
    best = selection["ranking"][0]["name"]
    reference = json.loads((schedules / length_schedule(schedules, selection["ranking"][0]["setting"],
                                                        max(LENGTHS))).read_text())
    l0 = validation_scores(root, out, f"length_{max(LENGTHS)}")
    candidates = {"L0": l0[best]}
    changes = arm_changes(best, reference)
    for arm, change in changes.items():
        if change is not None:
            candidates[arm] = validation_scores(root, out, f"arm_{arm.lower()}")[best]
    unfinished = {arm: missing for arm, scores in {**candidates, "baseline (L0's)": l0.get(BASELINE, {})}.items()
                  if (missing := [s for s in SPLITS if s not in scores])}
    if unfinished:   # the committed rule compares every arm on the same splits 0-3
        raise SystemExit("the length arms are not finished, no arm is chosen: no validation Dice yet for "
                         + "; ".join(f"{arm} split(s) {', '.join(map(str, missing))}" for arm, missing in unfinished.items())
                         + f" (run 'acdc_semisupervised.sh arms'; scores are read from {root} and {out / 'progress.log'})")
    decision = choose_on_validation(candidates, "L0", l0[BASELINE])
    result = {"rule": "benchmarks/README.md, Issue #30, Length arms (committed before any length run)",
              "evaluated_on": "validation", "method": best, "reference_schedule": reference["name"],
              "changes": {arm: change for arm, change in changes.items() if change is not None},
              "skipped": arm_skipped(changes, reference), "hypotheses": ARM_HYPOTHESES,
              # each run's validation Dice, for the per-split table of docs/results.md
              "scores": {name: {str(s): d for s, d in sorted(by.items())}
                         for name, by in {BASELINE: l0[BASELINE], **candidates}.items()}, **decision}
    write_json(out / "arms.json", result)
    rows = ["| arm | change | hypothesis | mean validation Dice | − L0, points [95 % CI] | − baseline, points |",
            "|---|---|---|---|---|---|"]
    for arm in decision["candidates"]:
        versus = decision["versus_reference"].get(arm)
        ci = versus["ci95"] if versus else None
        rows.append(f"| {arm} | {', '.join(f'{k} {v}' for k, v in result['changes'].get(arm, {}).items()) or 'none'} | "
                    f"{ARM_HYPOTHESES.get(arm, 'the reference')} | {100 * decision['mean'][arm]:.2f} | "
                    + (f"{100 * versus['mean_difference']:+.2f}" + (f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else "")
                       if versus else "") + f" | {100 * decision['versus_baseline'][arm]['mean_difference']:+.2f} |")
    write_text(out / "arms.md", f"# Issue #30: length arms of {best} at {max(LENGTHS)} iterations (1 labeled x splits "
                                 "0-3, validation scans)\n\n" + "\n".join(rows) + f"\n\nchosen: {decision['chosen']} "
                                 f"({decision['reason']})\n")
    return result


def committed_row(out: Path, iterations: int, arm: str) -> dict | None:
    """The committed length.json's row of ``arm`` at ``iterations``, or None."""
    committed = out / "length.json"
    rows = json.loads(committed.read_text()) if committed.is_file() else []
    return next((row for row in rows if row["iterations"] == iterations and row["arm"] == arm), None)


def committed_baseline(out: Path, iterations: int) -> dict[int, float] | None:
    """The baseline's test Dice at ``iterations`` (1 labeled x splits 0-3) from the committed L0 row; None
    unless every split is there. The arms change only the ``semisupervised`` section, which the baseline
    trainer does not read, so these are the baseline runs of a fix at that length too."""
    row = committed_row(out, iterations, "L0") or {}
    scores = {int(s): d for s, d in row.get("scores", {}).get(BASELINE, {}).items()}
    return scores if set(SPLITS) <= set(scores) else None


def fix_plan(out: Path, selection: dict, schedules: Path) -> list[str]:
    """When an arm won: the best method with the arm's change at 400 and 2,000 iterations on the
    test scans, 1 labeled x splits 0-3, against the baseline runs of the verdict and the length study
    (shared: the arms change only the semisupervised section): their committed test scores where
    length.json holds every split (``committed_baseline``: nothing to train), else their trainings
    copied from the source folder ("share" line) or trained. At 2,000 iterations the arm's own trainings
    (folder ``arm_l<n>``, the same schedule) are copied in and predicted on the test scans, as L0's
    validation and test scores come from the same trainings; a run missing there is trained."""
    if not (out / "arms.json").is_file():
        return []
    arms = json.loads((out / "arms.json").read_text())
    if arms["chosen"] == "L0":
        return []
    best = selection["ranking"][0]
    lines = []
    for iterations, source in ((400, f"verdict_{best['setting'].lower()}"), (max(LENGTHS), f"length_{max(LENGTHS)}")):
        base_name = SETTINGS[best["setting"]] if iterations == 400 else length_schedule(schedules, best["setting"], iterations)
        base = json.loads((schedules / base_name).read_text())
        # the arm's rule at this length (L1's ramp-up is a share of the epochs: 3 of 20 at 400 iterations)
        change = arm_changes(best["name"], base)[arms["chosen"]]
        if all(base["semisupervised"].get(k) == v for k, v in change.items()):
            print(f"arm {arms['chosen']} changes nothing at {iterations} iterations: {source} is that run",
                  file=sys.stderr)
            continue
        name = write_schedule(schedules, f"{base_name[:-len('.json')]}_{arms['chosen'].lower()}",
                              f"issue #30: the chosen length arm {arms['chosen']} at {iterations} iterations", base,
                              semisupervised=change)
        if iterations == max(LENGTHS):
            lines.append(f"share arm_{arms['chosen'].lower()} fix_{iterations} {best['name']}")
        if committed_baseline(out, iterations) is not None:
            lines.append(f"fix_{iterations} {name} --methods {best['name']} {ONE_LABELED} --evaluate test")
            continue
        lines.append(f"share {source} fix_{iterations}")
        lines.append(f"fix_{iterations} {name} --methods {BASELINE} {best['name']} {ONE_LABELED} --evaluate test")
    return lines


def single_runs(lines: list[str]) -> list[str]:
    """Each experiment line split into one line per method x split (its other arguments kept), so that
    a driver can run each training as soon as a core is free and log it when it finishes; "share"
    lines are kept as they are."""
    out = []
    for line in lines:
        workdir, schedule, *args = line.split()
        if workdir == "share":
            out.append(line)
            continue
        options: dict[str, list[str]] = {}
        for token in args:
            if token.startswith("--"):
                options[token] = []
                current = options[token]
            else:
                current.append(token)
        rest = " ".join(f"{k} {' '.join(v)}" for k, v in options.items() if k not in ("--methods", "--splits"))
        out += [f"{workdir} {schedule} --methods {method} --splits {split} {rest}"
                for split in options["--splits"] for method in options["--methods"]]
    return out


def share_runs(source: Path, target: Path, method: str = BASELINE) -> list[str]:
    """Copy ``method``'s finished trainings (``runs/<method>/fold_F``: checkpoint_final.pth and
    nnU-Net's final validation; not the test predictions, which the target's experiment makes from
    its own copy) from one experiment folder into another that has none of that fold yet. For the
    baseline between verdict folders: its trainer reads only a schedule's ``finetune`` section, which
    settings A, B and C share, so its runs are the same runs under any of them. For a chosen length arm:
    its arm folder's trainings are the fix's at 2,000 iterations (the same schedule file). Returns the
    folds copied."""
    copied = []
    for run in sorted((source / "runs" / method).glob("fold_*")):
        trainings = list(run.glob("Dataset*/*__nnUNetPlans__2d/fold_*"))
        finished = [t for t in trainings if (t / "checkpoint_final.pth").is_file()
                    and (t / "validation" / "summary.json").is_file()]
        destination = target / "runs" / method / run.name
        if len(finished) != 1 or destination.exists():
            continue
        tmp = destination.parent / f".{run.name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(run, tmp, ignore=shutil.ignore_patterns("test_predictions", ".test_predictions.tmp"))
        tmp.rename(destination)
        copied.append(run.name)
    return copied


def test_records(folder: Path) -> list[dict]:
    data = json.loads((folder / "results.json").read_text())
    if data.get("evaluated_on") != "test":
        raise SystemExit(f"{folder / 'results.json'}: expected test-scan scores, got {data.get('evaluated_on')!r}")
    return data["runs"]


def length_runs(folder: Path, out: Path, iterations: int, arm: str, methods: tuple[str, ...]) -> dict[str, dict[int, dict]]:
    """Each method's test run per split (1 labeled scan, splits 0-3) at one length, from the first source
    that has it: the run folder's results.json; the committed length.json (a run whose folder a new
    checkout lacks); the ``finished`` line in progress.log's section ``=== <folder name>`` (Dice to 2
    decimals, for a run whose folder was lost before any report); for a length arm's baseline, last, the
    committed L0 row's (the same runs: a fix trains none where that row has them). A record from the log
    has ``"from_log": True``, kept when length.json carries it on."""
    runs: dict[str, dict[int, dict]] = {m: {} for m in methods}

    def add(method: str, split: int, record: dict) -> None:
        if method in runs and split in SPLITS:
            runs[method].setdefault(split, record)

    if (folder / "results.json").is_file():
        for record in test_records(folder):
            if int(record["num_labeled"]) == 1:
                add(record["method"], int(record["split"]), record)
    row = committed_row(out, iterations, arm) or {}
    for method, by_split in row.get("scores", {}).items():
        logged = row.get("from_log", {}).get(method, [])
        for split, dice in by_split.items():
            add(method, int(split), {"mean_dice": dice, "from_log": int(split) in logged,
                                     "committed_mask_ratio": row.get("last_epoch_mask_ratio"),
                                     "committed_mask_runs": row.get("mask_ratio_runs", row.get("n"))})
    log = out / "progress.log"
    for method, by_split in logged_scores(log.read_text(), folder.name, FINISHED_TEST).items() if log.is_file() else ():
        for split, dice in by_split.items():
            add(method, split, {"mean_dice": dice, "from_log": True})
    reference = committed_row(out, iterations, "L0") if arm != "L0" else None
    for split, dice in (reference or {}).get("scores", {}).get(BASELINE, {}).items():   # a fix's (fix_plan)
        add(BASELINE, int(split), {"mean_dice": dice,
                                   "from_log": int(split) in reference.get("from_log", {}).get(BASELINE, [])})
    return runs


def length_study(root: Path, out: Path, selection: dict, variant: str | None = None) -> list[dict]:
    """Paired difference (best method - baseline, 1 labeled scan, splits 0-3) at each length: 400
    iterations from the verdict's runs, the others from the length runs; with ``variant`` (a chosen
    length arm) from the fix runs at 400 and 2,000 iterations. Runs come from ``length_runs``."""
    best = selection["ranking"][0]
    if variant is None:
        folders = {400: root / f"verdict_{best['setting'].lower()}", **{n: root / f"length_{n}" for n in LENGTHS}}
    else:
        folders = {n: root / f"fix_{n}" for n in (400, max(LENGTHS))}
    rows = []
    for iterations, folder in folders.items():
        by = length_runs(folder, out, iterations, variant or "L0", (BASELINE, best["name"]))
        gain = paired_difference(by[best["name"]], by[BASELINE])
        if gain is None:
            continue
        method_runs = [by[best["name"]][s] for s in gain["splits"]]
        # the mask ratio over the runs whose checkpoint is here; else the committed row's
        with_checkpoint = [r for r in method_runs if Path(r.get("checkpoint", {}).get("path", "")).is_file()]
        mask, mask_runs = (last_epoch_mask_ratio(with_checkpoint), len(with_checkpoint)) if with_checkpoint else \
            (method_runs[0].get("committed_mask_ratio"), method_runs[0].get("committed_mask_runs"))
        from_log = {m: sorted(s for s in gain["splits"] if by[m][s].get("from_log")) for m in by}
        rows.append({"iterations": iterations, "method": best["name"], "setting": best["setting"],
                     "arm": variant or "L0",
                     "baseline_mean": sum(r["mean_dice"] for r in by[BASELINE].values()) / len(by[BASELINE]),
                     "method_mean": sum(r["mean_dice"] for r in method_runs) / gain["n"],
                     # each split's test Dice, for the per-split table of docs/results.md
                     "scores": {m: {str(s): by[m][s]["mean_dice"] for s in gain["splits"]} for m in by},
                     **({"from_log": {m: v for m, v in from_log.items() if v}} if any(from_log.values()) else {}),
                     "last_epoch_mask_ratio": mask, "mask_ratio_runs": mask_runs if mask is not None else None,
                     **gain})
    return rows


def last_epoch_mask_ratio(runs: list[dict]) -> float | None:
    """Mean over the runs of the share of unlabeled pixels whose pseudo-label passed the threshold in the
    last epoch (the FixMatch-style trainer's ``mask_ratio`` in nnU-Net's logger, saved in the checkpoint);
    None for a method that does not log it or a run without its checkpoint (gone, or not recorded)."""
    import torch

    values = []
    for run in runs:
        path = Path(run.get("checkpoint", {}).get("path", ""))
        if not path.is_file():
            return None
        # mmap: only the logger is read, not the weights
        logged = torch.load(path, map_location="cpu", weights_only=False, mmap=True)["logging"].get("mask_ratio")
        if not logged:
            return None
        values.append(float(logged[-1]))
    return sum(values) / len(values)


def repeat_noise(root: Path, out: Path) -> dict:
    """The verdict's runs at 1 labeled scan x splits 0-3 train again what the selection trained (same
    method, setting, split and schedule; only the random state differs). d = verdict run - selection
    run, both on the fold's validation scans. If both are draws of one distribution with sd sigma,
    sd(d) = sqrt(2) sigma; a paired method - baseline difference then carries seed noise of sd sqrt(2)
    sigma on every split, so the half-width of its 95 % t-interval over n splits is at least
    t_{0.975, n-1} sqrt(2) sigma / sqrt(n) even if the method changes nothing."""
    from scipy.stats import t

    from spcl_nnunet.experiment.results import mean_std

    selection = json.loads((out / "selection.json").read_text())
    stored = read_scores(out)["settings"]
    folders = {method: setting for setting, methods in verdict_settings(selection).items() for method in methods}
    # the baseline reads only the schedule's finetune section, the same in every setting: its verdict runs are
    # in the first chosen setting's folder
    folders[BASELINE] = selection["ranking"][0]["setting"]
    rows = []
    for entry in [{"name": BASELINE, "setting": "A"}, *selection["ranking"][:2]]:
        first = {int(s): v for s, v in stored[entry["setting"]]["scores"][entry["name"]].items()}
        folder = root / f"verdict_{folders[entry['name']].lower()}"
        again = method_scores(load_validation_records(folder)).get(entry["name"], {})
        rows += [{"method": entry["name"], "setting": entry["setting"], "split": split, "selection_run": first[split],
                  "verdict_run": again[split], "difference": again[split] - first[split]}
                 for split in sorted(set(first) & set(again) & set(SPLITS))]
    if len(rows) < 2:
        raise SystemExit("fewer than two repeated runs: run the verdict, then the experiment with --evaluate "
                         "validation on its folder (benchmarks/README.md, \"Issue #30\")")
    mean, sd = mean_std([r["difference"] for r in rows])
    sigma = sd / 2 ** 0.5
    floor = {n: float(t.ppf(0.975, n - 1)) * 2 ** 0.5 * sigma / n ** 0.5 for n in (4, 8)}
    result = {"evaluated_on": "validation", "pairs": rows, "mean_difference": mean, "sd_difference": sd,
              "run_sd": sigma, "max_abs_difference": max(abs(r["difference"]) for r in rows),
              "null_half_width": {str(n): h for n, h in floor.items()},
              "note": "run_sd = sd of the differences / sqrt(2); null_half_width[n]: the half-width of the 95 % "
                      "t-interval of a paired difference over n splits from this noise alone"}
    write_json(out / "repeats.json", result)
    lines = ["| method | setting | split | selection run | verdict run | difference |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['setting']} | {r['split']} | {100 * r['selection_run']:.2f} | "
              f"{100 * r['verdict_run']:.2f} | {100 * r['difference']:+.2f} |" for r in rows]
    text = ("\n".join(lines) + f"\n\n{len(rows)} repeated runs: differences mean {100 * mean:+.2f}, sd {100 * sd:.2f}, "
            f"largest {100 * result['max_abs_difference']:.2f} points; one run's sd {100 * sigma:.2f} points. "
            "From this noise alone a paired difference has a 95 % half-width of about "
            + " and ".join(f"{100 * h:.1f} points over {n} splits" for n, h in floor.items()) + ".\n")
    write_text(out / "repeats.md", "# Issue #30: runs trained twice (1 labeled scan, validation scans)\n\n" + text)
    print(text)
    return result


def report(root: Path, out: Path) -> None:
    selection = json.loads((out / "selection.json").read_text())
    first = selection["ranking"][0]["setting"]
    for setting in dict.fromkeys(e["setting"] for e in selection["ranking"][:2]):
        folder = root / f"verdict_{setting.lower()}"
        for name in ("results.json", "results.md", "results.csv"):
            if (folder / name).is_file():   # the best method's setting as results.*, another as results_setting_x.*
                target = out / (name if setting == first else name.replace("results", f"results_setting_{setting.lower()}"))
                shutil.copyfile(folder / name, target)
                print(f"copied {folder / name} -> {target}")
    arms = json.loads((out / "arms.json").read_text()) if (out / "arms.json").is_file() else None
    rows = length_study(root, out, selection)
    if arms is not None and arms["chosen"] != "L0":
        rows += length_study(root, out, selection, arms["chosen"])
    write_json(out / "length.json", rows)
    # results.json (the experiment's, of the best method's setting) also holds the other tables' numbers
    if (out / "results.json").is_file():
        results = json.loads((out / "results.json").read_text())
        results["issue30"] = {"selection": selection, "length_study": rows, "arms": arms,
                              "repeats": json.loads((out / "repeats.json").read_text())
                              if (out / "repeats.json").is_file() else None,
                              "note": "added by benchmarks/semisupervised_selection.py --report; the same as "
                                      "selection.json, length.json, arms.json and repeats.json beside this file"}
        write_json(out / "results.json", results)
    lines = ["| fine-tuning iterations | schedule | baseline mean Dice | method - baseline, points [95 % CI] | above / below "
             "| pixels past the threshold, last epoch |", "|---|---|---|---|---|---|"]
    for row in rows:
        ci = row["ci95"]
        mask = row.get("last_epoch_mask_ratio")
        lines.append(f"| {row['iterations']} | {'setting ' + row['setting'] if row['arm'] == 'L0' else 'arm ' + row['arm']} | "
                     f"{100 * row['baseline_mean']:.2f} | {100 * row['mean_difference']:+.2f} "
                     + (f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else "") + f" | {row['above']} / {row['below']} | "
                     + (f"{100 * mask:.2f} %" if mask is not None else "–")
                     + (f" ({row['mask_ratio_runs']} of {row['n']} runs)" if mask is not None
                        and row.get("mask_ratio_runs") not in (None, row["n"]) else "") + " |")
    logged = [f"{row['iterations']} iterations" + ("" if row["arm"] == "L0" else f" (arm {row['arm']})") + ": "
              + "; ".join(f"{m} split(s) {', '.join(map(str, splits))}" for m, splits in row["from_log"].items())
              for row in rows if row.get("from_log")]
    if logged:
        lines += ["", "Runs whose Dice is the \"finished\" line of progress.log (2 decimals; their run folders were "
                      "lost with the checkout of a session that was cut off): " + ". ".join(logged) + "."]
    write_text(out / "length.md", f"# Issue #30: {selection['best']} against the baseline by training length "
                                   "(1 labeled scan, splits 0-3, test scans)\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    if rows:
        import matplotlib

        matplotlib.use("agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for arm in dict.fromkeys(r["arm"] for r in rows):
            part = [r for r in rows if r["arm"] == arm]
            x = [r["iterations"] for r in part]
            y = [100 * r["mean_difference"] for r in part]
            low = [100 * (r["mean_difference"] - r["ci95"][0]) if r["ci95"] else 0 for r in part]
            high = [100 * (r["ci95"][1] - r["mean_difference"]) if r["ci95"] else 0 for r in part]
            ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4,
                        label=f"setting {part[0]['setting']}" if arm == "L0" else f"arm {arm}")
        if len({r["arm"] for r in rows}) > 1:
            ax.legend()
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title("1 labeled scan, splits 0-3, 18 test scans; bars: 95 % t-interval", fontsize=8)
        ax.set_xlabel("fine-tuning iterations (batch 8)")
        ax.set_ylabel(f"{selection['best']} - baseline (Dice points)")
        fig.tight_layout()
        fig.savefig(out / "length.png", dpi=120)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plan", choices=["verdict", "repeats", "length", "arms", "fix"])
    parser.add_argument("--choose-arm", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--repeats", action="store_true")
    parser.add_argument("--collect", nargs="+", choices=list(SETTINGS), metavar="SETTING")
    parser.add_argument("--from-log", nargs="+", choices=list(SETTINGS), metavar="SETTING")
    parser.add_argument("--share-runs", nargs="+", metavar="FROM TO [METHOD]",
                        help="experiment folders under --root: METHOD's (default: the baseline's) finished trainings "
                             "of FROM copied into TO")
    args = parser.parse_args()
    schedules = Path(__file__).resolve().parent / "schedules"
    if args.collect or args.from_log:
        if args.collect:
            collect(args.root, args.out, args.collect)
        if args.from_log:
            recover_from_log(args.out, args.from_log)
        return
    if args.share_runs:
        if len(args.share_runs) not in (2, 3):
            parser.error(f"--share-runs takes FROM TO [METHOD], got {args.share_runs}")
        source, target = (args.root / name for name in args.share_runs[:2])
        method = args.share_runs[2] if len(args.share_runs) == 3 else BASELINE
        copied = share_runs(source, target, method)
        print(f"{method} trainings of {source} reused in {target}: {', '.join(copied) or 'none new'}")
        return
    if args.report:
        report(args.root, args.out)
        return
    if args.repeats:
        repeat_noise(args.root, args.out)
        return
    if args.plan or args.choose_arm:
        selection = json.loads((args.out / "selection.json").read_text())
        if args.choose_arm:
            result = choose_arm(args.root, args.out, selection, schedules)
            print((args.out / "arms.md").read_text() + f"chosen: {result['chosen']}")
            return
        if args.plan == "arms":
            lines = arms_plan(args.root, args.out, selection, schedules)
            if not lines:
                print("the gain at 2000 iterations is not below the gain at 1000: no length arms", file=sys.stderr)
        elif args.plan == "fix":
            lines = fix_plan(args.out, selection, schedules)
            if not lines:
                print("no arm beat L0 on the validation scans (or no arms ran): nothing to rerun", file=sys.stderr)
        else:
            lines = plan(selection, args.plan, schedules, args.out)
            if not lines:
                print(f"{args.plan}: its results are committed in {args.out}; nothing to run", file=sys.stderr)
        for line in single_runs(lines):
            print(line)
        return
    selection = select(args.out)
    write_json(args.out / "selection.json", selection)
    text = table(selection)
    write_text(args.out / "selection.md", "# Issue #30: selection on the validation scans (1 labeled x splits 0-3)\n\n"
                                           + text)
    print(text + f"verdict: {', '.join(selection['verdict_methods'])}; length study: {selection['best']}")


if __name__ == "__main__":
    main()

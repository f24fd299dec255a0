"""Tables and plot of an experiment from its per-run records (pure functions; no nnU-Net).

A record is the dict each finished run stores beside its predictions (``run.json``): method,
label, trainers, fold, labeled count, split, checkpoint, prediction folder, the path of
nnU-Net's ``summary.json`` and the Dice values exactly as read from it (``dice``: per class,
``mean_dice``: nnU-Net's ``foreground_mean``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spcl_nnunet.experiment.files import atomic_write, write_json, write_text

STD_NOTE = "std over splits with ddof = 1 (sample standard deviation); n/a with a single split"
BASELINE_METHOD = "baseline"
# the scratch baselines every other method is compared with: the paper's recipe, nnU-Net's recipe
BASELINE_METHODS = (BASELINE_METHOD, "nnunet")


def dice_from_summary(summary: Mapping[str, Any], labels: Mapping[int, str]) -> tuple[dict[str, float], float]:
    """(per-class Dice, mean Dice) exactly as nnU-Net's ``summary.json`` holds them:
    ``mean[str(label)]["Dice"]`` and ``foreground_mean["Dice"]``."""
    per_class = {name: summary["mean"][str(value)]["Dice"] for value, name in sorted(labels.items())}
    return per_class, summary["foreground_mean"]["Dice"]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std of no values")
    mean = sum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def mean_std_cell(values: Sequence[float]) -> str:
    """``mean (std)`` in % with 2 decimals."""
    mean, std = mean_std(values)
    return f"{percent(mean)} ({percent(std)})"


def sort_records(records: Iterable[Mapping[str, Any]], method_order: Sequence[str] = ()) -> list[dict]:
    """Records by method (``method_order`` first, then by name), labeled count, split."""
    rank = {name: i for i, name in enumerate(method_order)}
    return sorted((dict(r) for r in records),
                  key=lambda r: (rank.get(r["method"], len(rank)), r["method"], r["num_labeled"], r["split"]))


def class_names(records: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for record in records:
        names += [c for c in record["dice"] if c not in names]
    return names


def _methods(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for record in records:
        seen.setdefault(record["method"], record["label"])
    return list(seen.items())


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def baseline_difference_cell(runs: Mapping[int, Mapping[str, Any]], baseline: Mapping[int, Mapping[str, Any]]) -> str:
    """Mean over the splits both have of (method - baseline) mean Dice, in points, with the split count:
    a comparison that stays fair while some splits are missing ("–" when none is shared)."""
    shared = sorted(set(runs) & set(baseline))
    if not shared:
        return "–"
    difference = sum(runs[s]["mean_dice"] - baseline[s]["mean_dice"] for s in shared) / len(shared)
    return f"{100 * difference:+.2f} ({len(shared)} split{'s' if len(shared) != 1 else ''})"


def paired_difference(runs: Mapping[int, Mapping[str, Any]], baseline: Mapping[int, Mapping[str, Any]]
                      ) -> dict[str, Any] | None:
    """Paired comparison of a method with the baseline over the splits both have (None: none shared).

    d_s = mean Dice of the method - mean Dice of the baseline on split s (fractions). Returns the
    splits, n, the mean difference, the 95 % t-interval over splits, mean +- t_{0.975, n-1} * sd / sqrt(n)
    with the sample sd (ddof = 1; None for one split), and how many splits lie above, below and
    level with the baseline."""
    shared = sorted(set(runs) & set(baseline))
    if not shared:
        return None
    differences = [runs[s]["mean_dice"] - baseline[s]["mean_dice"] for s in shared]
    mean, sd = mean_std(differences)
    interval = None
    if sd is not None:
        from scipy.stats import t

        half = float(t.ppf(0.975, len(shared) - 1)) * sd / math.sqrt(len(shared))
        interval = [mean - half, mean + half]
    return {"splits": shared, "n": len(shared), "differences": differences, "mean_difference": mean,
            "ci95": interval, "above": sum(d > 0 for d in differences), "below": sum(d < 0 for d in differences),
            "level": sum(d == 0 for d in differences)}


def paired_comparisons(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``paired_difference`` of every method against each baseline (``BASELINE_METHODS``) at every
    labeled count that has both (``results.json``'s ``paired_comparison``; ``against`` names the
    baseline)."""
    out = []
    for count in sorted({r["num_labeled"] for r in records}):
        at_count = [r for r in records if r["num_labeled"] == count]
        for reference in BASELINE_METHODS:
            baseline = {r["split"]: r for r in at_count if r["method"] == reference}
            for method, label in _methods(at_count):
                if method in BASELINE_METHODS or not baseline:
                    continue
                paired = paired_difference({r["split"]: r for r in at_count if r["method"] == method}, baseline)
                if paired is not None:
                    out.append({"method": method, "label": label, "num_labeled": count, "against": reference,
                                **paired})
    return out


def paired_markdown(comparisons: Sequence[Mapping[str, Any]]) -> str:
    """The paired comparisons as a table (Dice points)."""
    if not comparisons:
        return "No method shares a split with the baseline."
    rows = []
    for c in comparisons:
        interval = "n/a" if c["ci95"] is None else f"[{100 * c['ci95'][0]:+.2f}, {100 * c['ci95'][1]:+.2f}]"
        rows.append([c["label"], c.get("against", BASELINE_METHOD), str(c["num_labeled"]), str(c["n"]),
                     f"{100 * c['mean_difference']:+.2f}", interval,
                     f"{c['above']} / {c['below']}" + (f" ({c['level']} level)" if c["level"] else "")])
    return _table(["method", "baseline", "labeled", "splits", "mean − baseline", "95 % CI (t over splits)",
                   "splits above / below"], rows)


def table3_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """Table 3 form: per labeled count, one row per method with each split's mean Dice, then
    mean (std) over splits per class and overall (3D Dice, %); with a baseline at that count, the
    difference from it on the same splits."""
    classes = class_names(records)
    parts = []
    for count in sorted({r["num_labeled"] for r in records}):
        at_count = [r for r in records if r["num_labeled"] == count]
        splits = sorted({r["split"] for r in at_count})
        baseline = {r["split"]: r for r in at_count if r["method"] == BASELINE_METHOD}
        column = "fold" if any(r.get("folds") == "cross_validation" for r in at_count) else "split"
        header = ["method"] + [f"{column} {s}" for s in splits] + [f"{c} mean (std)" for c in classes] + \
            ["mean (std)"] + (["− baseline, same splits"] if baseline else [])
        rows = []
        for method, label in _methods(at_count):
            runs = {r["split"]: r for r in at_count if r["method"] == method}
            row = [label] + [percent(runs[s]["mean_dice"]) if s in runs else "–" for s in splits]
            row += [mean_std_cell([r["dice"][c] for r in runs.values()]) if all(c in r["dice"] for r in runs.values())
                    else "–" for c in classes]
            row.append(mean_std_cell([r["mean_dice"] for r in runs.values()]))
            if baseline:
                row.append("" if method == BASELINE_METHOD else baseline_difference_cell(runs, baseline))
            rows.append(row)
        parts.append(f"### {count} labeled scan{'s' if count != 1 else ''}\n\n{_table(header, rows)}")
    return "\n\n".join(parts)


def dice_table(records: Sequence[Mapping[str, Any]]) -> str:
    """One row per record: its label, the Dice (%) of each class and their mean (the demo's table)."""
    classes = class_names(records)
    rows = [[r["label"], *[percent(r["dice"][c]) if c in r["dice"] else "–" for c in classes], percent(r["mean_dice"])]
            for r in records]
    return _table(["method", *classes, "mean"], rows)


def table2_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """Table 2 form: the learning curve, mean (std) over splits of the mean Dice per labeled count."""
    counts = sorted({r["num_labeled"] for r in records})
    header = ["method"] + [f"{c} labeled" for c in counts]
    rows = []
    for method, label in _methods(records):
        row = [label]
        for count in counts:
            values = [r["mean_dice"] for r in records if r["method"] == method and r["num_labeled"] == count]
            row.append(mean_std_cell(values) if values else "–")
        rows.append(row)
    return _table(header, rows)


def results_markdown(records: Sequence[Mapping[str, Any]], title: str, scans: str = "test",
                     notes: Sequence[str] = ()) -> str:
    source = ("nnU-Net's final validation of each run (`validation/summary.json`: the fold table's validation "
              "scans, final weights)" if scans == "validation" else "nnU-Net's evaluation (`summary.json` of each run)")
    return (f"# {title}\n\n" + "".join(f"{note}\n\n" for note in notes) + f"3D Dice (%) on the {scans} scans, from {source}; "
            f"{STD_NOTE}.\n\n## Per labeled count (Table 3 form)\n\nSplit columns: the mean Dice over the classes of "
            f"that split's run.\n\n{table3_markdown(records)}\n\n## Learning curve (Table 2 form)\n\n"
            f"Mean (std) over splits of the mean Dice over the classes.\n\n{table2_markdown(records)}\n\n"
            f"## Paired comparison with the baseline\n\nPer labeled count, over the splits both have: the mean "
            f"of (method − baseline) mean Dice in points, its 95 % confidence interval (t-interval over "
            f"splits, n/a with one split) and the number of splits above / below the baseline.\n\n"
            f"{paired_markdown(paired_comparisons(records))}\n")


def results_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """One row per run: identification, per-class and mean Dice (fractions, as in summary.json,
    written with Python's shortest exact float repr)."""
    classes = class_names(records)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "label", "trainer", "pretrainer", "fold", "num_labeled", "split",
                     *[f"dice_{c}" for c in classes], "dice_mean", "summary"])
    for r in records:
        writer.writerow([r["method"], r["label"], r["trainer"], r["pretrainer"] or "", r["fold"], r["num_labeled"],
                         r["split"], *[repr(float(r["dice"].get(c, float("nan")))) for c in classes],
                         repr(float(r["mean_dice"])), r["summary"]])
    return out.getvalue()


def plot_learning_curve(records: Sequence[Mapping[str, Any]], path: Path, scans: str = "test") -> None:
    """Mean Dice (%) vs labeled scans, one line per method, error bars = std over splits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method, label in _methods(records):
        counts = sorted({r["num_labeled"] for r in records if r["method"] == method})
        stats = [mean_std([r["mean_dice"] for r in records if r["method"] == method and r["num_labeled"] == c])
                 for c in counts]
        ax.errorbar(counts, [100 * m for m, _ in stats], yerr=[100 * (s or 0.0) for _, s in stats], marker="o",
                    capsize=3, label=label)
    counts = sorted({r["num_labeled"] for r in records})
    if counts and counts[-1] / max(counts[0], 1) > 8:
        ax.set_xscale("log")
    ax.set_xticks(counts)
    ax.set_xticklabels([str(c) for c in counts])
    ax.set_xlabel("labeled scans")
    ax.set_ylabel("3D Dice (%), mean over classes")
    ax.set_title(f"{scans} Dice vs labeled scans (error bars: std over splits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def write_results(workdir: Path, records: Sequence[Mapping[str, Any]], header: Mapping[str, Any],
                  title: str, scans: str = "test", notes: Sequence[str] = ()) -> list[Path]:
    """results.json, results.csv, results.md and learning_curve.png in ``workdir`` (scores of the
    test scans); ``validation_results.*`` and ``validation_learning_curve.png`` for the validation
    scans' scores (``scans="validation"``)."""
    prefix = "" if scans == "test" else f"{scans}_"
    paths = [workdir / f"{prefix}{name}" for name in ("results.json", "results.csv", "results.md",
                                                       "learning_curve.png")]
    write_json(paths[0], {**header, "runs": list(records), "paired_comparison": paired_comparisons(records)})
    write_text(paths[1], results_csv(records))
    write_text(paths[2], results_markdown(records, title, scans, notes))
    plot_learning_curve(records, paths[3], scans)
    return paths

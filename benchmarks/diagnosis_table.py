"""Issue #19's arms table: collect every finished arm of ``benchmarks/diagnosis.sh`` and apply the
committed selection rule (validation scans only).

    .venv/bin/python benchmarks/diagnosis_table.py [--root quality_runs/acdc_diagnosis]
                                                   [--out benchmarks/results/acdc_diagnosis]

Writes ``<out>/<arm>/validation_results.{json,md}`` (each arm's own tables, copied), ``<out>/arms.json``
(rows, selection) and ``<out>/arms.md``. Run it again as arms finish: arms without a
``validation_results.json`` are left out and named.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from spcl_nnunet.experiment.arms import ARMS, arm_markdown, arm_rows, load_arm_records, selection_from_arms
from spcl_nnunet.experiment.results import write_json, write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("quality_runs/acdc_diagnosis"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/acdc_diagnosis"))
    args = parser.parse_args(argv)
    arms, missing = {}, []
    for arm in ARMS:
        folder = args.root / "arms" / arm
        if (folder / "validation_results.json").is_file():
            arms[arm] = load_arm_records(folder)
            (args.out / arm).mkdir(parents=True, exist_ok=True)
            for name in ("validation_results.json", "validation_results.md"):
                shutil.copyfile(folder / name, args.out / arm / name)
        else:
            missing.append(arm)
    if not arms:
        print(f"no finished arm under {args.root / 'arms'}", file=sys.stderr)
        return 1
    rows, selection = arm_rows(arms), selection_from_arms(arms)
    write_json(args.out / "arms.json", {"root": str(args.root), "arms_missing": missing, "rows": rows,
                                        "selection": selection})
    text = ["# Issue #19: the arms on the validation scans", "",
            "Mean validation Dice (nnU-Net's foreground_mean, %) per split; paired differences in points as "
            "mean [95 % t-interval over splits] (splits above/below).", "", arm_markdown(rows), ""]
    if selection is not None:
        text += [f"**Selection rule:** chosen arm ({selection['chosen']}): {selection['reason']}.", ""]
    if missing:
        text += [f"Not run yet: {', '.join(missing)}.", ""]
    write_text(args.out / "arms.md", "\n".join(text))
    print("\n".join(text))
    print(json.dumps({"written": str(args.out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

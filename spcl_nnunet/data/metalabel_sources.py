"""``meta_labels.json`` for any raw nnU-Net dataset: case-level meta-labels from patterns over the
case id and/or a CSV table (``spcl_nnunet metalabels``).

- A pattern is a Python regular expression searched in the case id; the meta-label's value is its
  first capture group (the whole match when it has none). ``patient`` defaults to the case id
  (each case its own patient).
- A CSV has a ``case`` column and one column per meta-label (a ``patient`` column included).
- The label-less cases are those ``spcl_nnunet add-unlabeled`` recorded in ``unlabeled.json``.

It refuses, naming the case, pattern, file or meta-label: a case that a pattern does not match, a
CSV row for a case that is not in ``imagesTr``, a case the CSV lacks, an empty CSV value, a
meta-label given twice, and a meta-label with one value for every case (it cannot tell slices of
different scans apart). Slice position is computed by the trainers, as for every dataset.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from spcl_nnunet.data.metalabels import POSITION_KEY, MetaLabels, _preview

PATIENT_KEY = "patient"
CASE_COLUMN = "case"


def parse_pattern_options(options: Sequence[str]) -> dict[str, str]:
    """``["NAME=REGEX", ...]`` -> ``{NAME: REGEX}``; a malformed option or a bad regex is a ValueError."""
    patterns: dict[str, str] = {}
    for option in options:
        name, sep, pattern = option.partition("=")
        name = name.strip()
        if not sep or not name or not pattern:
            raise ValueError(f"--label {option!r}: expected NAME=REGEX (e.g. phase='_(ED|ES)$')")
        if name in patterns:
            raise ValueError(f"--label: meta-label {name!r} is given twice")
        patterns[name] = pattern
    for name, pattern in patterns.items():
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"meta-label {name!r}: {pattern!r} is not a valid regular expression ({err})") from err
    return patterns


def values_from_pattern(name: str, pattern: str, case_ids: Sequence[str]) -> dict[str, str]:
    """The meta-label ``name`` of every case: first capture group (or whole match) of ``pattern``."""
    regex = re.compile(pattern)
    values, unmatched = {}, []
    for case in case_ids:
        match = regex.search(case)
        value = (match.group(1) if regex.groups else match.group(0)) if match else None
        if not value:
            unmatched.append(case)
        else:
            values[case] = value
    if unmatched:
        raise ValueError(f"meta-label {name!r}: pattern {pattern!r} does not match {len(unmatched)} case id(s) "
                         f"(or captures an empty value): {_preview(unmatched)}")
    return values


def values_from_csv(path: Path, case_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{meta-label: {case: value}}`` from a CSV with a ``case`` column; every case must have a row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"meta-label table {path} not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if CASE_COLUMN not in columns:
            raise ValueError(f"{path}: expected a {CASE_COLUMN!r} column (the case ids of imagesTr) and one column "
                             f"per meta-label; got columns {columns}")
        names = [c for c in columns if c != CASE_COLUMN]
        if not names:
            raise ValueError(f"{path}: no meta-label column besides {CASE_COLUMN!r}")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    known = set(case_ids)
    seen: dict[str, int] = {}
    table: dict[str, dict[str, str]] = {name: {} for name in names}
    for line, row in enumerate(rows, start=2):
        case = row[CASE_COLUMN]
        if case not in known:
            raise ValueError(f"{path}, line {line}: case {case!r} is not a case of imagesTr")
        if case in seen:
            raise ValueError(f"{path}, line {line}: case {case!r} is listed again (first on line {seen[case]})")
        seen[case] = line
        for name in names:
            if not row.get(name):
                raise ValueError(f"{path}, line {line}: case {case!r} has no value for meta-label {name!r}")
            table[name][case] = row[name]
    missing = known - set(seen)
    if missing:
        raise ValueError(f"{path} has no row for {len(missing)} case(s) of imagesTr: {_preview(missing)}")
    return table


def derive_meta_labels(case_ids: Sequence[str], slice_partitions: int, patient_pattern: str | None = None,
                       patterns: Mapping[str, str] | None = None, csv_path: Path | None = None,
                       unlabeled: Sequence[str] = ()) -> MetaLabels:
    """Meta-labels of ``case_ids`` from the patterns and the CSV (see the module docstring)."""
    case_ids = sorted(case_ids)
    if not case_ids:
        raise ValueError("the dataset has no training case (imagesTr is empty)")
    if not isinstance(slice_partitions, int) or slice_partitions < 1:
        raise ValueError(f"--slice-partitions must be a whole number >= 1, got {slice_partitions!r}")
    sources: dict[str, tuple[str, dict[str, str]]] = {}    # meta-label -> (where from, values)

    def add(name: str, where: str, values: dict[str, str]) -> None:
        if name == POSITION_KEY:
            raise ValueError(f"{where}: the meta-label name {POSITION_KEY!r} is reserved for the slice position, "
                             f"which is computed from the slice index")
        if name in sources:
            raise ValueError(f"meta-label {name!r} is given twice: by {sources[name][0]} and by {where}")
        sources[name] = (where, values)

    if patient_pattern is not None:
        add(PATIENT_KEY, f"--patient {patient_pattern!r}", values_from_pattern(PATIENT_KEY, patient_pattern, case_ids))
    for name, pattern in (patterns or {}).items():
        add(name, f"--label {name}={pattern!r}", values_from_pattern(name, pattern, case_ids))
    if csv_path is not None:
        for name, values in values_from_csv(Path(csv_path), case_ids).items():
            add(name, f"{csv_path} column {name!r}", values)
    if PATIENT_KEY not in sources:
        sources[PATIENT_KEY] = ("the default (each case its own patient)", {case: case for case in case_ids})
    for name, (where, values) in sources.items():
        distinct = set(values.values())
        if len(distinct) == 1 and len(case_ids) > 1:
            raise ValueError(f"meta-label {name!r} ({where}) has the same value {distinct.pop()!r} for all "
                             f"{len(case_ids)} cases: it cannot tell scans apart; drop it or fix its source")
    stray = sorted(set(unlabeled) - set(case_ids))
    if stray:
        raise ValueError(f"label-less case(s) {_preview(stray)} are not in imagesTr")
    cases = {case: {name: values[case] for name, (_, values) in sources.items()} for case in case_ids}
    return MetaLabels(slice_partitions=slice_partitions, cases=cases, unlabeled=sorted(unlabeled))

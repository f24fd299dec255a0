"""Folds: ``splits_final.json`` plus ``spcl_folds.json``, of one of two kinds.

``cross_validation`` (``spcl_nnunet folds``, for one's own dataset): k-fold cross-validation over
the *labeled* cases, grouped by patient; each fold has its own validation cases, which are never
label-less (placeholder) cases. ``splits_final.json`` holds exactly those labeled cases, so
nnU-Net's stock trainers never train on a placeholder label.

``labeled_subsets`` (the paper's benchmark protocol: converters, ``spcl_nnunet synthetic``,
``spcl_nnunet splits``): a fold is one labeled configuration: ``num_labeled`` scans drawn from the
training pool (draw number ``split``), with a validation set that is the same for every fold.
Each count has ``repeats`` splits (``splits_per_count`` can give a count more or fewer); a count
equal to the size of the training pool ("all labeled") gets a single fold. Folds are numbered in
order, counts ascending and splits ascending within a count (with ``repeats`` splits everywhere:
``fold = count_index * repeats + split``). nnU-Net's ``splits_final.json`` holds, for fold f,
``{"train": <labeled cases of f>, "val": <the fixed validation cases>}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from spcl_nnunet.data.jsonfile import read_json

SPLITS_FILE = "splits_final.json"
FOLDS_FILE = "spcl_folds.json"
FOLDS_VERSION = 1
LABELED_SUBSETS = "labeled_subsets"
CROSS_VALIDATION = "cross_validation"
FOLD_KINDS = (LABELED_SUBSETS, CROSS_VALIDATION)


@dataclass
class FoldSpec:
    """One fold: its training (labeled) cases; a cross-validation fold also has its own ``val``."""

    fold: int
    num_labeled: int
    split: int
    labeled: list[str]
    val: list[str] | None = None      # None: the table's fixed validation cases (labeled subsets)

    def to_json(self) -> dict[str, Any]:
        return {"fold": self.fold, "num_labeled": self.num_labeled, "split": self.split,
                "labeled": list(self.labeled), **({"val": list(self.val)} if self.val is not None else {})}


def _shown(cases: list[str], most: int = 6) -> str:
    """The first ``most`` case ids, then how many more."""
    return ", ".join(cases[:most]) + (f", ... (+{len(cases) - most})" if len(cases) > most else "")


def _text_table(rows: list[tuple[str, str, str, str]]) -> str:
    """Rows of four columns as text: the first three right-aligned, a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [" | ".join([row[0].rjust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]), row[3]])
             for row in rows]
    lines.insert(1, "-+-".join(["-" * w for w in widths] + ["-" * 5]))
    return "\n".join(lines)


@dataclass
class FoldTable:
    """All folds of a dataset and the case sets they are drawn from."""

    seed: int
    val: list[str]
    test: list[str]
    train_pool: list[str]
    labeled_counts: list[int]
    repeats: int
    folds: list[FoldSpec] = field(default_factory=list)
    splits_per_count: dict[int, int] = field(default_factory=dict)   # count -> its number of splits
    kind: str = LABELED_SUBSETS

    @property
    def cross_validation(self) -> bool:
        return self.kind == CROSS_VALIDATION

    def val_of(self, spec: FoldSpec) -> list[str]:
        """The validation cases of fold ``spec``."""
        return list(spec.val) if spec.val is not None else list(self.val)

    def validation_cases(self) -> list[str]:
        """Every case that validates some fold, sorted."""
        return sorted({case for spec in self.folds for case in self.val_of(spec)})

    def group_count(self, spec: FoldSpec) -> int:
        """The labeled count a fold's results are grouped under: its number of labeled scans, or
        for cross-validation every fold's, the labeled cases of the whole table."""
        return len(self.train_pool) if self.cross_validation else spec.num_labeled

    def splits_final(self) -> list[dict[str, list[str]]]:
        """nnU-Net's ``splits_final.json`` content: element f is fold f."""
        return [{"train": list(spec.labeled), "val": self.val_of(spec)} for spec in self.folds]

    def describe(self) -> str:
        """Human-readable table: fold | labeled scans | split | cases."""
        if self.cross_validation:
            return self._describe_cross_validation()
        rows = [("fold", "labeled scans", "split", "cases")]
        rows += [(str(spec.fold), str(spec.num_labeled), str(spec.split), _shown(spec.labeled)) for spec in self.folds]
        return (f"train pool {len(self.train_pool)} scans, val {len(self.val)}, test {len(self.test)}, "
                f"seed {self.seed}\n" + _text_table(rows))

    def _describe_cross_validation(self) -> str:
        rows = [("fold", "train scans", "val scans", "validation cases")]
        rows += [(str(spec.fold), str(len(spec.labeled)), str(len(self.val_of(spec))), _shown(self.val_of(spec)))
                 for spec in self.folds]
        return (f"{len(self.folds)}-fold cross-validation over {len(self.train_pool)} labeled scans, grouped by "
                f"patient; test {len(self.test)}, seed {self.seed}\n" + _text_table(rows))

    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable form written to ``spcl_folds.json``."""
        if self.cross_validation:
            return {"version": FOLDS_VERSION, "kind": CROSS_VALIDATION, "seed": self.seed, "test": list(self.test),
                    "train_pool": list(self.train_pool), "folds": [spec.to_json() for spec in self.folds]}
        return {
            "version": FOLDS_VERSION,
            "seed": self.seed,
            "val": list(self.val),
            "test": list(self.test),
            "train_pool": list(self.train_pool),
            "labeled_counts": list(self.labeled_counts),
            "repeats": self.repeats,
            **({"splits_per_count": {str(c): n for c, n in sorted(self.splits_per_count.items())}}
               if self.splits_per_count else {}),
            "folds": [spec.to_json() for spec in self.folds],
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "fold table") -> "FoldTable":
        """Validate a decoded ``spcl_folds.json``; every error names ``source``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("version") != FOLDS_VERSION:
            raise ValueError(f"{source}: expected \"version\": {FOLDS_VERSION}, got {data.get('version')!r}")
        kind = data.get("kind", LABELED_SUBSETS)
        if kind not in FOLD_KINDS:
            raise ValueError(f"{source}: expected \"kind\" to be one of {', '.join(FOLD_KINDS)}, got {kind!r}")
        if kind == CROSS_VALIDATION:
            return cls._cross_validation_from_json(data, source)
        missing = {"seed", "val", "test", "train_pool", "labeled_counts", "repeats", "folds"} - set(data)
        if missing:
            raise ValueError(f"{source}: missing key(s) {sorted(missing)}")
        seed = _int(data["seed"], "seed", source, minimum=0)
        repeats = _int(data["repeats"], "repeats", source, minimum=1)
        per_count = data.get("splits_per_count", {})
        if not isinstance(per_count, Mapping) or not all(isinstance(k, str) and k.isdigit() for k in per_count):
            raise ValueError(f"{source}: expected \"splits_per_count\" to be an object "
                             f"{{\"<labeled count>\": <splits>}}, got {per_count!r}")
        per_count = {int(k): _int(v, f"splits_per_count[{k}]", source, minimum=1) for k, v in per_count.items()}
        val = _case_list(data["val"], "val", source)
        test = _case_list(data["test"], "test", source)
        pool = _case_list(data["train_pool"], "train_pool", source)
        counts = data["labeled_counts"]
        if not isinstance(counts, list):
            raise ValueError(f"{source}: expected \"labeled_counts\" to be a list of integers, got {counts!r}")
        counts = [_int(c, "labeled_counts", source, minimum=1) for c in counts]
        raw_folds = data["folds"]
        if not isinstance(raw_folds, list):
            raise ValueError(f"{source}: expected \"folds\" to be a list, got {type(raw_folds).__name__}")
        folds = []
        for item in raw_folds:
            if not isinstance(item, Mapping) or set(item) != {"fold", "num_labeled", "split", "labeled"}:
                raise ValueError(f"{source}: expected each fold to be an object with keys fold, num_labeled, "
                                 f"split, labeled; got {item!r}")
            folds.append(FoldSpec(
                fold=_int(item["fold"], "fold", source, minimum=0),
                num_labeled=_int(item["num_labeled"], "num_labeled", source, minimum=1),
                split=_int(item["split"], "split", source, minimum=0),
                labeled=_case_list(item["labeled"], f"labeled of fold {item['fold']}", source),
            ))
        table = cls(seed=seed, val=val, test=test, train_pool=pool, labeled_counts=counts,
                    repeats=repeats, folds=folds, splits_per_count=per_count)
        validate_fold_table(table, source)
        return table

    @classmethod
    def _cross_validation_from_json(cls, data: Mapping[str, Any], source: str) -> "FoldTable":
        missing = {"seed", "test", "train_pool", "folds"} - set(data)
        if missing:
            raise ValueError(f"{source}: missing key(s) {sorted(missing)}")
        extra = set(data) - {"version", "kind", "seed", "test", "train_pool", "folds"}
        if extra:
            raise ValueError(f"{source}: unexpected key(s) {sorted(extra)} in a cross-validation fold table")
        if not isinstance(data["folds"], list):
            raise ValueError(f"{source}: expected \"folds\" to be a list, got {type(data['folds']).__name__}")
        folds = []
        for item in data["folds"]:
            if not isinstance(item, Mapping) or set(item) != {"fold", "num_labeled", "split", "labeled", "val"}:
                raise ValueError(f"{source}: expected each cross-validation fold to be an object with keys fold, "
                                 f"num_labeled, split, labeled, val; got {item!r}")
            folds.append(FoldSpec(fold=_int(item["fold"], "fold", source, minimum=0),
                                  num_labeled=_int(item["num_labeled"], "num_labeled", source, minimum=1),
                                  split=_int(item["split"], "split", source, minimum=0),
                                  labeled=_case_list(item["labeled"], f"labeled of fold {item['fold']}", source),
                                  val=_case_list(item["val"], f"val of fold {item['fold']}", source)))
        return cross_validation_table(folds, _case_list(data["train_pool"], "train_pool", source),
                                      _case_list(data["test"], "test", source),
                                      _int(data["seed"], "seed", source, minimum=0), source)


def _int(value: Any, name: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{source}: expected \"{name}\" to be an integer >= {minimum}, got {value!r}")
    return int(value)


def _case_list(value: Any, name: str, source: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{source}: expected \"{name}\" to be a list of case ids, got {value!r}")
    duplicates = sorted({c for c in value if list(value).count(c) > 1})
    if duplicates:
        raise ValueError(f"{source}: \"{name}\" lists case(s) more than once: {duplicates[:10]}")
    return list(value)


def _expected_layout(pool_size: int, counts: Sequence[int], repeats: int,
                     splits_per_count: Mapping[int, int] | None = None) -> list[tuple[int, int, int]]:
    """(fold, num_labeled, split) of every fold, in fold order."""
    per_count = splits_per_count or {}
    pairs = [(count, split) for count in counts
             for split in range(1 if count == pool_size else per_count.get(count, repeats))]
    return [(fold, count, split) for fold, (count, split) in enumerate(pairs)]


def cross_validation_table(folds: Sequence[FoldSpec], train_pool: Sequence[str], test: Sequence[str], seed: int,
                           source: str) -> FoldTable:
    """A cross-validation fold table, checked: folds numbered 0..k-1 (``split`` = fold), each
    fold's training and validation cases disjoint, non-empty and inside ``train_pool`` (the
    labeled cases), ``num_labeled`` = its training cases, no test case anywhere."""
    pool = set(train_pool)
    if not pool:
        raise ValueError(f"{source}: the training pool (labeled cases) is empty")
    overlap = pool & set(test)
    if overlap:
        raise ValueError(f"{source}: train_pool and test overlap: {sorted(overlap)[:10]}")
    got = [(spec.fold, spec.split) for spec in folds]
    if not folds or got != [(f, f) for f in range(len(folds))]:
        raise ValueError(f"{source}: expected folds numbered 0..k-1 with split = fold, got (fold, split) = {got}")
    for spec in folds:
        if spec.val is None or not spec.val or not spec.labeled:
            raise ValueError(f"{source}: fold {spec.fold} needs training and validation cases (got "
                             f"{len(spec.labeled)} training, {len(spec.val or [])} validation)")
        if spec.num_labeled != len(spec.labeled):
            raise ValueError(f"{source}: fold {spec.fold} lists {len(spec.labeled)} training cases, expected "
                             f"num_labeled = {spec.num_labeled}")
        both = sorted(set(spec.labeled) & set(spec.val))
        if both:
            raise ValueError(f"{source}: fold {spec.fold} has case(s) in both train and val: {both[:10]}")
        stray = sorted((set(spec.labeled) | set(spec.val)) - pool)
        if stray:
            raise ValueError(f"{source}: fold {spec.fold} names case(s) outside train_pool (the labeled cases): "
                             f"{stray[:10]}")
    return FoldTable(seed=seed, val=[], test=sorted(test), train_pool=sorted(pool), labeled_counts=[len(pool)],
                     repeats=len(folds), folds=list(folds), kind=CROSS_VALIDATION)


def validate_fold_table(table: FoldTable, source: str = "fold table") -> None:
    """Check the invariants of a fold table; raise ValueError naming ``source``."""
    if table.cross_validation:
        cross_validation_table(table.folds, table.train_pool, table.test, table.seed, source)
        return
    pool = set(table.train_pool)
    if not pool:
        raise ValueError(f"{source}: the training pool is empty")
    for name, other in (("val", table.val), ("test", table.test)):
        overlap = pool & set(other)
        if overlap:
            raise ValueError(f"{source}: train_pool and {name} overlap: {sorted(overlap)[:10]}")
    overlap = set(table.val) & set(table.test)
    if overlap:
        raise ValueError(f"{source}: val and test overlap: {sorted(overlap)[:10]}")
    counts = list(table.labeled_counts)
    if not counts:
        raise ValueError(f"{source}: \"labeled_counts\" is empty")
    if any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"{source}: expected \"labeled_counts\" strictly increasing, got {counts}")
    if counts[-1] > len(pool):
        raise ValueError(f"{source}: labeled count {counts[-1]} exceeds the training pool size {len(pool)}")
    stray_counts = sorted(set(table.splits_per_count) - set(counts))
    if stray_counts:
        raise ValueError(f"{source}: \"splits_per_count\" names labeled count(s) {stray_counts} that are not in "
                         f"labeled_counts {counts}")
    expected = _expected_layout(len(pool), counts, table.repeats, table.splits_per_count)
    got = [(spec.fold, spec.num_labeled, spec.split) for spec in table.folds]
    if got != expected:
        raise ValueError(f"{source}: expected folds (fold, num_labeled, split) = {expected}, got {got}")
    for spec in table.folds:
        if len(spec.labeled) != spec.num_labeled:
            raise ValueError(f"{source}: fold {spec.fold} lists {len(spec.labeled)} labeled cases, "
                             f"expected num_labeled = {spec.num_labeled}")
        stray = set(spec.labeled) - pool
        if stray:
            raise ValueError(f"{source}: fold {spec.fold} has labeled cases outside train_pool: {sorted(stray)[:10]}")


def split_groups(groups: Mapping[str, Sequence[str]], n_val_groups: int, n_test_groups: int,
                 seed: int) -> tuple[list[str], list[str], list[str]]:
    """Randomly split groups (patients) into train/val/test; return sorted case id lists.

    All cases of a group land on the same side. Groups are shuffled in sorted-name order with
    ``np.random.default_rng(seed)``; the first ``n_test_groups`` go to test, the next
    ``n_val_groups`` to val, the rest to train.
    """
    if n_val_groups < 0 or n_test_groups < 0:
        raise ValueError(f"group counts must be >= 0, got n_val_groups={n_val_groups}, n_test_groups={n_test_groups}")
    names = sorted(groups)
    if n_val_groups + n_test_groups > len(names):
        raise ValueError(f"cannot take {n_val_groups} val + {n_test_groups} test groups out of {len(names)} groups")
    seen: dict[str, str] = {}
    for name in names:
        for case in groups[name]:
            if case in seen:
                raise ValueError(f"case {case!r} is in both group {seen[case]!r} and group {name!r}")
            seen[case] = name
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    test_groups = shuffled[:n_test_groups]
    val_groups = shuffled[n_test_groups:n_test_groups + n_val_groups]
    train_groups = shuffled[n_test_groups + n_val_groups:]

    def cases(chosen: Iterable[str]) -> list[str]:
        return sorted(case for name in chosen for case in groups[name])

    return cases(train_groups), cases(val_groups), cases(test_groups)


def make_fold_table(train_pool: Sequence[str], val: Sequence[str], labeled_counts: Sequence[int],
                    repeats: int, seed: int, test: Sequence[str] = (),
                    splits_per_count: Mapping[int, int] | None = None) -> FoldTable:
    """Draw the labeled cases of every fold.

    For count c and split s, c cases are drawn without replacement from the sorted training pool
    with ``np.random.default_rng([seed, c, s])``, so a fold does not depend on the other counts,
    nor on how many splits there are (more splits add folds and keep the first ones' scans).
    Count c has ``splits_per_count[c]`` splits if given, else ``repeats``; a count equal to the pool
    size ("all labeled") gets a single fold. Counts are sorted.
    """
    source = "make_fold_table"
    pool = sorted(_case_list(list(train_pool), "train_pool", source))
    val_list = sorted(_case_list(list(val), "val", source))
    test_list = sorted(_case_list(list(test), "test", source))
    repeats = _int(repeats, "repeats", source, minimum=1)
    seed = _int(seed, "seed", source, minimum=0)
    counts = sorted(_int(c, "labeled_counts", source, minimum=1) for c in labeled_counts)
    if len(set(counts)) != len(counts):
        raise ValueError(f"{source}: labeled_counts has duplicates: {list(labeled_counts)}")
    for count in counts:
        if count > len(pool):
            raise ValueError(f"{source}: labeled count {count} exceeds the training pool size {len(pool)}")
    folds = []
    per_count = {_int(c, "splits_per_count", source, minimum=1): _int(n, f"splits_per_count[{c}]", source, minimum=1)
                 for c, n in (splits_per_count or {}).items()}
    for fold, count, split in _expected_layout(len(pool), counts, repeats, per_count):
        rng = np.random.default_rng([seed, count, split])
        chosen = rng.choice(len(pool), size=count, replace=False)
        folds.append(FoldSpec(fold=fold, num_labeled=count, split=split,
                              labeled=sorted(pool[i] for i in chosen)))
    table = FoldTable(seed=seed, val=val_list, test=test_list, train_pool=pool, labeled_counts=counts,
                      repeats=repeats, folds=folds, splits_per_count=per_count)
    validate_fold_table(table, source)
    return table


def write_fold_files(folder: str | os.PathLike[str], table: FoldTable) -> tuple[Path, Path]:
    """Write ``splits_final.json`` and ``spcl_folds.json`` into ``folder``.

    Both files are first written to temporary siblings; only when both are complete are they
    moved into place with ``os.replace``. Temporary files are removed on error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write fold files: folder {folder} does not exist")
    validate_fold_table(table, f"fold table to be written to {folder}")
    contents = {folder / SPLITS_FILE: table.splits_final(), folder / FOLDS_FILE: table.to_json()}
    temps: dict[Path, str] = {}
    try:
        for target, data in contents.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
            temps[target] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2)
                handle.write("\n")
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the file ordinary permissions
        for target, tmp in temps.items():
            os.replace(tmp, target)
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
    return folder / SPLITS_FILE, folder / FOLDS_FILE


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"fold file not found: {path}")
    return read_json(path)


def load_fold_table(folder: str | os.PathLike[str]) -> FoldTable:
    """Read ``spcl_folds.json`` from ``folder`` and check ``splits_final.json`` agrees with it."""
    folder = Path(folder)
    folds_path = folder / FOLDS_FILE
    splits_path = folder / SPLITS_FILE
    table = FoldTable.from_json(_read_json(folds_path), source=str(folds_path))
    check_splits_agree(_read_json(splits_path), table, splits_path)
    return table


def check_splits_agree(splits: Any, table: FoldTable, splits_path: Path) -> None:
    """``splits_final.json``'s content is exactly the table's folds (case order aside)."""
    expected = table.splits_final()
    if not isinstance(splits, list) or len(splits) != len(expected):
        got = len(splits) if isinstance(splits, list) else type(splits).__name__
        raise ValueError(f"{splits_path}: expected a list of {len(expected)} folds as in {FOLDS_FILE}, got {got}")
    for fold, (entry, want) in enumerate(zip(splits, expected)):
        if not isinstance(entry, Mapping) or not {"train", "val"} <= set(entry):
            raise ValueError(f"{splits_path}: fold {fold}: expected an object with \"train\" and \"val\"")
        for key in ("train", "val"):
            if not isinstance(entry[key], list) or sorted(entry[key]) != sorted(want[key]):
                raise ValueError(f"{splits_path}: fold {fold}: \"{key}\" disagrees with {FOLDS_FILE} "
                                 f"(expected {len(want[key])} cases {sorted(want[key])[:5]}...)")

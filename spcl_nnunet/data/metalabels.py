"""Meta-label sidecar ``meta_labels.json`` of a raw nnU-Net dataset.

The file lives in ``$nnUNet_raw/DatasetXXX_Name/`` and has this exact format::

    {"version": 1,
     "slice_partitions": 3,
     "cases": {"<case id>": {"patient": "patient001", "phase": "ED"}, ...},
     "unlabeled": ["<case id whose label file is only a placeholder>", ...]}

``cases`` lists exactly the imagesTr case identifiers. The keys inside a case are case-level
meta-labels (free names, string values). The slice-position meta-label is not stored per case:
it is computed from the slice index with :func:`slice_partition`, and its name ``"position"``
is reserved (it must not be used as a case key).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from spcl_nnunet.data.jsonfile import read_json

META_LABELS_FILE = "meta_labels.json"
META_LABELS_VERSION = 1
POSITION_KEY = "position"
_MAX_LISTED = 10


def _preview(items: Iterable[str]) -> str:
    """Comma-separated list of at most ``_MAX_LISTED`` items, with a count of the rest."""
    items = sorted(items)
    shown = ", ".join(items[:_MAX_LISTED])
    rest = len(items) - _MAX_LISTED
    return shown + (f" ... and {rest} more" if rest > 0 else "")


@dataclass
class MetaLabels:
    """Case-level meta-labels of one dataset plus its slice-partition count S."""

    slice_partitions: int
    cases: dict[str, dict[str, str]]
    unlabeled: list[str] = field(default_factory=list)

    def keys(self) -> list[str]:
        """Meta-label names present in every case, sorted.

        The slice-position meta-label (reserved name ``"position"``) is not a case key and is
        therefore never listed here.
        """
        if not self.cases:
            return []
        common = set.intersection(*(set(meta) for meta in self.cases.values()))
        return sorted(common)

    def check_cases(self, case_ids: Iterable[str], source: str) -> None:
        """Raise ValueError unless the meta-labelled cases are exactly ``case_ids``.

        ``source`` names where ``case_ids`` come from (a folder or file) for the message.
        """
        wanted = set(case_ids)
        have = set(self.cases)
        missing = wanted - have
        unknown = have - wanted
        if not missing and not unknown:
            return
        parts = []
        if missing:
            parts.append(f"{len(missing)} case(s) of {source} have no meta-labels: {_preview(missing)}")
        if unknown:
            parts.append(f"{len(unknown)} meta-labelled case(s) are not in {source}: {_preview(unknown)}")
        raise ValueError("; ".join(parts))

    def encode(self, key: str, case_ids: Iterable[str]) -> dict[str, int]:
        """Map each case to the integer class of its value of meta-label ``key``.

        Classes are the sorted unique values of ``key`` over all cases of this table (not only
        ``case_ids``), so the encoding of a case does not depend on which subset is asked for.
        """
        values = {case: meta[key] for case, meta in self.cases.items() if key in meta}
        classes = {value: index for index, value in enumerate(sorted(set(values.values())))}
        encoded = {}
        for case in case_ids:
            if case not in self.cases:
                raise ValueError(f"case {case!r} has no meta-labels (asked for meta-label {key!r})")
            if case not in values:
                raise ValueError(f"case {case!r} has no meta-label {key!r}; it has {sorted(self.cases[case])}")
            encoded[case] = classes[values[case]]
        return encoded

    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable form written to ``meta_labels.json`` (sorted case keys)."""
        return {
            "version": META_LABELS_VERSION,
            "slice_partitions": self.slice_partitions,
            "cases": {case: dict(sorted(self.cases[case].items())) for case in sorted(self.cases)},
            "unlabeled": sorted(self.unlabeled),
        }

    @classmethod
    def from_json(cls, data: Any, source: str = "meta-labels") -> "MetaLabels":
        """Validate a decoded ``meta_labels.json``; every error names ``source``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        extra = set(data) - {"version", "slice_partitions", "cases", "unlabeled"}
        if extra:
            raise ValueError(f"{source}: unexpected top-level key(s) {sorted(extra)}")
        version = data.get("version")
        if version != META_LABELS_VERSION:
            raise ValueError(f"{source}: expected \"version\": {META_LABELS_VERSION}, got {version!r}")
        partitions = data.get("slice_partitions")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"{source}: expected \"slice_partitions\" to be an integer >= 1, got {partitions!r}")
        cases = _validate_cases(data.get("cases"), source)
        unlabeled = data.get("unlabeled", [])
        if not isinstance(unlabeled, list) or not all(isinstance(c, str) for c in unlabeled):
            raise ValueError(f"{source}: expected \"unlabeled\" to be a list of case ids, got {unlabeled!r}")
        if len(set(unlabeled)) != len(unlabeled):
            raise ValueError(f"{source}: \"unlabeled\" lists a case more than once")
        stray = set(unlabeled) - set(cases)
        if stray:
            raise ValueError(f"{source}: \"unlabeled\" cases must also be in \"cases\"; not there: {_preview(stray)}")
        return cls(slice_partitions=partitions, cases=cases, unlabeled=sorted(unlabeled))


def _validate_cases(cases: Any, source: str) -> dict[str, dict[str, str]]:
    """Check the ``cases`` mapping: non-empty, case id -> {name: string value}, no reserved name."""
    if not isinstance(cases, Mapping) or not cases:
        raise ValueError(f"{source}: expected \"cases\" to be a non-empty object of case id -> meta-labels")
    result: dict[str, dict[str, str]] = {}
    for case, meta in cases.items():
        if not isinstance(meta, Mapping):
            raise ValueError(f"{source}: case {case!r}: expected an object of meta-label -> string, got {meta!r}")
        for key, value in meta.items():
            if key == POSITION_KEY:
                raise ValueError(f"{source}: case {case!r}: meta-label name {POSITION_KEY!r} is reserved for "
                                 f"the slice position (computed from the slice index), not a case key")
            if not isinstance(value, str):
                raise ValueError(f"{source}: case {case!r}: meta-label {key!r} must be a string, got {value!r}")
        result[case] = dict(meta)
    return result


def load_meta_labels(path: str | os.PathLike[str]) -> MetaLabels:
    """Read and validate a ``meta_labels.json`` file (or the one inside a dataset folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / META_LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"meta-label file not found: {path}")
    data = read_json(path)
    return MetaLabels.from_json(data, source=str(path))


def save_meta_labels(meta: MetaLabels, path: str | os.PathLike[str]) -> Path:
    """Validate ``meta`` and write it atomically to ``path`` (a file or a dataset folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / META_LABELS_FILE
    data = meta.to_json()
    MetaLabels.from_json(data, source=f"meta-labels to be written to {path}")
    write_json_atomic(path, data)
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON via a temporary sibling file and ``os.replace``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path.name}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_partitions(num_slices: int, partitions: int) -> None:
    if num_slices < 1:
        raise ValueError(f"num_slices must be >= 1, got {num_slices}")
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")


def slice_partition(index: int, num_slices: int, partitions: int) -> int:
    """Partition of slice ``index`` when ``num_slices`` consecutive slices are cut into
    ``partitions`` equal groups: ``floor(index * partitions / num_slices)``."""
    _check_partitions(num_slices, partitions)
    if not 0 <= index < num_slices:
        raise ValueError(f"slice index must be in [0, {num_slices}), got {index}")
    return (index * partitions) // num_slices


def slice_partitions(num_slices: int, partitions: int) -> np.ndarray:
    """Partition of every slice ``0..num_slices-1`` (vectorised :func:`slice_partition`)."""
    _check_partitions(num_slices, partitions)
    return (np.arange(num_slices, dtype=np.int64) * partitions) // num_slices

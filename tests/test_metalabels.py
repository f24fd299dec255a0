"""Tests of the meta-label sidecar and slice partitions."""

import json
from pathlib import Path

import numpy as np
import pytest

from spcl_nnunet.data.metalabels import (META_LABELS_FILE, MetaLabels, load_meta_labels, save_meta_labels,
                                    slice_partition, slice_partitions)


def _meta() -> MetaLabels:
    cases = {
        "patient002_ES": {"patient": "patient002", "phase": "ES"},
        "patient001_ED": {"patient": "patient001", "phase": "ED"},
        "patient001_ES": {"patient": "patient001", "phase": "ES"},
        "patient002_ED": {"patient": "patient002", "phase": "ED", "group": "DCM"},
    }
    return MetaLabels(slice_partitions=3, cases=cases, unlabeled=["patient002_ES"])


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_round_trip(tmp_path: Path) -> None:
    meta = _meta()
    written = save_meta_labels(meta, tmp_path)
    assert written == tmp_path / META_LABELS_FILE
    loaded = load_meta_labels(written)
    assert loaded == MetaLabels(3, meta.cases, ["patient002_ES"])
    data = json.loads(written.read_text())
    assert data["version"] == 1
    assert list(data["cases"]) == sorted(meta.cases)
    assert loaded.keys() == ["patient", "phase"]
    assert load_meta_labels(tmp_path) == loaded          # a dataset folder works too
    assert [p.name for p in tmp_path.iterdir()] == [META_LABELS_FILE]   # no temp files left


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        load_meta_labels(tmp_path / "nothere.json")


@pytest.mark.parametrize("change, expected", [
    ({"version": 2}, "version"),
    ({"slice_partitions": 0}, "slice_partitions"),
    ({"slice_partitions": "3"}, "slice_partitions"),
    ({"cases": {}}, "non-empty"),
    ({"cases": {"a": {"phase": 1}}}, "string"),
    ({"cases": {"a": {"position": "base"}}}, "reserved"),
    ({"unlabeled": ["ghost"]}, "ghost"),
])
def test_validation_errors_name_the_file(tmp_path: Path, change: dict, expected: str) -> None:
    data = _meta().to_json()
    data.update(change)
    path = _write(tmp_path / "bad_meta.json", data)
    with pytest.raises(ValueError, match=expected) as info:
        load_meta_labels(path)
    assert "bad_meta.json" in str(info.value)


def test_invalid_json_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        load_meta_labels(path)


def test_save_refuses_reserved_key(tmp_path: Path) -> None:
    meta = MetaLabels(3, {"a": {"position": "x"}}, [])
    with pytest.raises(ValueError, match="reserved"):
        save_meta_labels(meta, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_check_cases() -> None:
    meta = _meta()
    meta.check_cases(["patient001_ED", "patient001_ES", "patient002_ED", "patient002_ES"], "imagesTr")
    with pytest.raises(ValueError) as info:
        meta.check_cases(["patient001_ED", "patient001_ES", "patient002_ED", "patient003_ED"], "/x/imagesTr")
    message = str(info.value)
    assert "/x/imagesTr" in message and "patient003_ED" in message and "patient002_ES" in message


def test_check_cases_lists_at_most_ten() -> None:
    meta = MetaLabels(1, {"a": {"k": "v"}}, [])
    with pytest.raises(ValueError) as info:
        meta.check_cases(["a"] + [f"case{i:02d}" for i in range(25)], "folder")
    assert "case09" in str(info.value) and "case10" not in str(info.value) and "15 more" in str(info.value)


def test_encode() -> None:
    meta = _meta()
    assert meta.encode("phase", ["patient001_ED", "patient002_ES"]) == {"patient001_ED": 0, "patient002_ES": 1}
    assert meta.encode("patient", meta.cases) == {"patient001_ED": 0, "patient001_ES": 0,
                                                   "patient002_ED": 1, "patient002_ES": 1}
    with pytest.raises(ValueError, match="group"):
        meta.encode("group", ["patient001_ED"])
    with pytest.raises(ValueError, match="nobody"):
        meta.encode("phase", ["nobody"])


def test_keys_only_common() -> None:
    assert _meta().keys() == ["patient", "phase"]


def test_slice_partition_hand_cases() -> None:
    assert [slice_partition(i, 10, 3) for i in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert slice_partitions(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert slice_partitions(2, 3).tolist() == [0, 1]          # fewer slices than partitions
    assert slice_partitions(9, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert slice_partitions(5, 1).tolist() == [0] * 5
    for n in range(1, 20):
        for s in range(1, 8):
            parts = slice_partitions(n, s)
            assert parts.dtype.kind == "i"
            assert parts.tolist() == [slice_partition(i, n, s) for i in range(n)]
            assert np.all(np.diff(parts) >= 0) and parts.max() < s


@pytest.mark.parametrize("index, n, s", [(-1, 10, 3), (10, 10, 3), (0, 0, 3), (0, 10, 0)])
def test_slice_partition_bounds(index: int, n: int, s: int) -> None:
    with pytest.raises(ValueError):
        slice_partition(index, n, s)


def test_slice_partitions_bounds() -> None:
    with pytest.raises(ValueError):
        slice_partitions(0, 3)
    with pytest.raises(ValueError):
        slice_partitions(5, 0)

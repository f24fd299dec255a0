"""MM-WHS CT converter on small generated trees in the official layout (``ct_train/ct_train_1001_image.nii.gz``
+ ``_label.nii.gz``, the seven MM-WHS label values, macOS ``._`` junk next to the real files)."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_helpers import check, command, loader_line, nnunet_env, plan_and_preprocess, run, smoke_pretraining, tail
from spcl_nnunet.conversion import mmwhs
from spcl_nnunet.conversion.common import ConversionError, DatasetSpec
from spcl_nnunet.data.metalabels import load_meta_labels
from spcl_nnunet.data.splits import load_fold_table

SPACING = (0.45, 0.45, 1.25)
ORIGIN = (12.5, -30.25, 100.0)
DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
# 8x8 pattern of MM-WHS label values, upsampled to the in-plane size
PATTERN = np.zeros((8, 8), dtype=np.uint16)
PATTERN[1:3, 1:3] = 205
PATTERN[1:3, 4:7] = 420
PATTERN[4:6, 1:3] = 500
PATTERN[4:6, 4:6] = 820
PATTERN[6, 1:4] = 550
PATTERN[6, 5:7] = 600
PATTERN[7, 0:3] = 850
SMALL = DatasetSpec(name="MMWHS", description="test", reference="test", channel_names={"0": "CT"},
                    labels=mmwhs.SPEC.labels, slice_partitions=7, n_val_groups=1, n_test_groups=1,
                    labeled_counts=(1, 2))


def _write(path: Path, array: np.ndarray) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(DIRECTION)
    sitk.WriteImage(image, str(path), True)


def _junk(path: Path) -> None:
    """macOS AppleDouble file ``._name`` (not a NIfTI image)."""
    path.with_name("._" + path.name).write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64))


def make_mmwhs(root: Path, subjects=range(1001, 1021), size: tuple[int, int, int] = (4, 16, 16)) -> Path:
    """``root/ct_train/`` with one image + label per subject; returns ``root``."""
    folder = root / "ct_train"
    folder.mkdir(parents=True)
    for subject in subjects:
        rng = np.random.default_rng(subject)
        label = np.broadcast_to(np.kron(PATTERN, np.ones((size[1] // 8, size[2] // 8), dtype=np.uint16)), size)
        label = np.ascontiguousarray(label)
        image = (rng.normal(0, 40, size) + np.where(label > 0, 150 + label // 10, -500)).astype(np.int16)
        _write(folder / f"ct_train_{subject}_image.nii.gz", image)
        _write(folder / f"ct_train_{subject}_label.nii.gz", label)
        _junk(folder / f"ct_train_{subject}_image.nii.gz")
        _junk(folder / f"ct_train_{subject}_label.nii.gz")
    (root / "._ct_train").write_bytes(b"\x00\x05\x16\x07junk")
    return root


def _empty(raw: Path) -> bool:
    return not raw.exists() or not any(raw.iterdir())


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mmwhs")
    source = make_mmwhs(root / "download")
    folder, table = mmwhs.convert(source, root / "raw", 951, seed=0)
    return source, folder, table


def test_layout_counts_and_sidecars(converted) -> None:
    source, folder, table = converted
    assert folder.name == "Dataset951_MMWHS"
    tr = sorted(p.name for p in (folder / "imagesTr").iterdir())
    ts = sorted(p.name for p in (folder / "imagesTs").iterdir())
    assert len(tr) == 14 and len(ts) == 6
    assert len(list((folder / "labelsTr").iterdir())) == 14 and len(list((folder / "labelsTs").iterdir())) == 6
    assert not [p for p in folder.rglob("*") if p.name.startswith("._")]
    cases = {name[: -len("_0000.nii.gz")] for name in tr + ts}
    assert cases == {f"mmwhs_{s}" for s in range(1001, 1021)}
    assert (len(table.train_pool), len(table.val), len(table.test)) == (10, 4, 6)
    assert [(f.num_labeled, f.split) for f in table.folds] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert sorted(table.test) == sorted(n[: -len("_0000.nii.gz")] for n in ts)
    assert load_fold_table(folder).to_json() == table.to_json()

    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["name"] == "MMWHS" and dataset["channel_names"] == {"0": "CT"}
    assert dataset["labels"] == {"background": 0, "LVM": 1, "LAC": 2, "LVC": 3, "AA": 4}
    assert dataset["numTraining"] == 14 and dataset["file_ending"] == ".nii.gz"

    meta = load_meta_labels(folder)
    assert meta.slice_partitions == 7 and meta.unlabeled == []
    assert set(meta.cases) == set(table.train_pool) | set(table.val)
    assert all(meta.cases[c] == {"patient": c.split("_")[1]} for c in meta.cases)


def test_labels_mapped_and_geometry_kept(converted) -> None:
    source, folder, table = converted
    for case in ("mmwhs_1001", table.test[0], table.val[0], table.train_pool[0]):
        suffix = "Ts" if case in table.test else "Tr"
        subject = case.split("_")[1]
        src_image = sitk.ReadImage(str(source / "ct_train" / f"ct_train_{subject}_image.nii.gz"))
        src_label = sitk.ReadImage(str(source / "ct_train" / f"ct_train_{subject}_label.nii.gz"))
        src_label = sitk.GetArrayFromImage(src_label)
        image = sitk.ReadImage(str(folder / f"images{suffix}" / f"{case}_0000.nii.gz"))
        label = sitk.ReadImage(str(folder / f"labels{suffix}" / f"{case}.nii.gz"))
        for out in (image, label):
            assert out.GetSize() == src_image.GetSize()
            assert np.allclose(out.GetSpacing(), SPACING) and np.allclose(out.GetOrigin(), ORIGIN)
            assert np.allclose(out.GetDirection(), DIRECTION)
        assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(src_image))
        array = sitk.GetArrayFromImage(label)
        assert np.issubdtype(array.dtype, np.integer)
        expected = np.zeros_like(array)
        for value, target in ((205, 1), (420, 2), (500, 3), (820, 4)):
            expected[src_label == value] = target
        assert np.array_equal(array, expected)
        assert set(np.unique(array)) == {0, 1, 2, 3, 4}


def test_default_split_is_seeded(converted, tmp_path: Path) -> None:
    source, _, table = converted
    # ct_train/ itself as input, same seed -> same split; another seed -> another split
    _, again = mmwhs.convert(source / "ct_train", tmp_path / "raw", 952, seed=0)
    assert again.to_json() == table.to_json()
    _, other = mmwhs.convert(source / "ct_train", tmp_path / "raw", 953, seed=1)
    assert (other.val, other.test) != (table.val, table.test)


# ------------------------------------------------------------------------------------------ bad input
def _missing_label(folder: Path) -> str:
    (folder / "ct_train_1003_label.nii.gz").unlink()
    return "ct_train_1003_label.nii.gz"


def _orphan_label(folder: Path) -> str:
    (folder / "ct_train_1003_image.nii.gz").unlink()
    return "ct_train_1003_label.nii.gz"


def _shape_mismatch(folder: Path) -> str:
    _write(folder / "ct_train_1002_label.nii.gz", np.zeros((5, 16, 16), dtype=np.uint16))
    return "ct_train_1002_label.nii.gz"


def _spacing_mismatch(folder: Path) -> str:
    label = sitk.ReadImage(str(folder / "ct_train_1004_label.nii.gz"))
    label.SetSpacing((0.45, 0.45, 2.5))
    sitk.WriteImage(label, str(folder / "ct_train_1004_label.nii.gz"), True)
    return "ct_train_1004_label.nii.gz"


def _stray_value(folder: Path) -> str:
    path = folder / "ct_train_1004_label.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    array[0, 0, :3] = 421
    _write(path, array)
    return "ct_train_1004_label.nii.gz"


def _unreadable(folder: Path) -> str:
    (folder / "ct_train_1005_image.nii.gz").write_bytes(b"not a nifti file at all")
    return "ct_train_1005_image.nii.gz"


def _four_d(folder: Path) -> str:
    image = sitk.GetImageFromArray(np.zeros((2, 4, 16, 16), dtype=np.int16), isVector=False)
    sitk.WriteImage(image, str(folder / "ct_train_1001_image.nii.gz"), True)
    return "ct_train_1001_image.nii.gz"


@pytest.mark.parametrize("breakage", [_missing_label, _orphan_label, _shape_mismatch, _spacing_mismatch,
                                      _stray_value, _unreadable, _four_d])
def test_bad_input_names_file_and_leaves_nothing(tmp_path: Path, breakage) -> None:
    source = make_mmwhs(tmp_path / "download", subjects=range(1001, 1006))
    name = breakage(source / "ct_train")
    raw = tmp_path / "raw"
    with pytest.raises(ConversionError, match=name):
        mmwhs.convert(source, raw, 954, spec=SMALL)
    assert _empty(raw)


@pytest.mark.parametrize("layout", ["empty", "missing", "msd"])
def test_wrong_folder_is_refused(tmp_path: Path, layout: str) -> None:
    source = tmp_path / "download"
    if layout != "missing":
        source.mkdir()
    if layout == "msd":
        (source / "Task04_Hippocampus" / "imagesTr").mkdir(parents=True)
        (source / "Task04_Hippocampus" / "dataset.json").write_text("{}")
    raw = tmp_path / "raw"
    with pytest.raises(ConversionError, match="ct_train_1001_image.nii.gz"):
        mmwhs.convert(source, raw, 955)
    assert _empty(raw)


def test_unknown_values_as_background_option(tmp_path: Path) -> None:
    source = make_mmwhs(tmp_path / "download", subjects=range(1001, 1006))
    _stray_value(source / "ct_train")
    with pytest.warns(UserWarning, match=r"ct_train_1004_label\.nii\.gz.*421"):
        folder, table = mmwhs.convert(source, tmp_path / "raw", 956, spec=SMALL, unknown_labels_as_background=True)
    suffix = "Ts" if "mmwhs_1004" in table.test else "Tr"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"labels{suffix}" / "mmwhs_1004.nii.gz")))
    assert array[0, 0, :3].tolist() == [0, 0, 0] and set(np.unique(array)) == {0, 1, 2, 3, 4}


def test_overwrite(tmp_path: Path) -> None:
    source = make_mmwhs(tmp_path / "download", subjects=range(1001, 1006))
    raw = tmp_path / "raw"
    folder, first = mmwhs.convert(source, raw, 957, spec=SMALL, seed=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        mmwhs.convert(source, raw, 957, spec=SMALL, seed=3)
    assert load_fold_table(folder).to_json() == first.to_json()
    # a failing overwrite keeps the old dataset
    _unreadable(source / "ct_train")
    with pytest.raises(ConversionError):
        mmwhs.convert(source, raw, 957, spec=SMALL, seed=3, overwrite=True)
    assert load_fold_table(folder).to_json() == first.to_json()
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset957_MMWHS"]
    shutil.rmtree(source)
    make_mmwhs(source, subjects=range(1001, 1006))
    _, second = mmwhs.convert(source, raw, 957, spec=SMALL, seed=3, overwrite=True)
    assert load_fold_table(folder).to_json() == second.to_json()
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset957_MMWHS"]


def test_options_of_other_converters_are_refused(tmp_path: Path) -> None:
    source = make_mmwhs(tmp_path / "download", subjects=range(1001, 1006))
    with pytest.raises(ConversionError, match="--with-unlabeled"):
        mmwhs.convert(source, tmp_path / "raw", 958, spec=SMALL, with_unlabeled=True)
    assert _empty(tmp_path / "raw")


def test_cli_and_script(converted, tmp_path: Path) -> None:
    source, _, table = converted
    raw = tmp_path / "raw"
    env = nnunet_env(raw, tmp_path / "pre", tmp_path / "res")
    proc = run([command("spcl_nnunet"), "convert", "mmwhs", "-i", source, "-d", "959"], env)
    assert proc.returncode == 0, proc.stdout
    assert "fold | labeled scans" in proc.stdout and "train pool 10 scans, val 4, test 6" in proc.stdout
    assert load_fold_table(raw / "Dataset959_MMWHS").to_json() == table.to_json()
    again = run([command("spcl_nnunet"), "convert", "mmwhs", "-i", source, "-d", "959"], env)
    assert again.returncode == 2 and "--overwrite" in again.stdout
    script = Path(__file__).resolve().parents[1] / "dataset_conversion" / "convert_mmwhs.py"
    unset = nnunet_env(None, tmp_path / "pre", tmp_path / "res")
    proc = run([sys.executable, script, "-i", source, "-d", "960"], unset)
    assert proc.returncode == 2 and "nnUNet_raw is not set" in proc.stdout
    proc = run([sys.executable, script, "-i", source, "-d", "959", "--overwrite", "--seed", "2"], env)
    assert proc.returncode == 0, proc.stdout
    assert load_fold_table(raw / "Dataset959_MMWHS").seed == 2


@pytest.mark.e2e
def test_e2e_plan_prepare_pretrain(tmp_path: Path) -> None:
    source = make_mmwhs(tmp_path / "download", subjects=range(1001, 1009), size=(8, 32, 32))
    raw, pre, results = tmp_path / "raw", tmp_path / "pre", tmp_path / "results"
    spec = DatasetSpec(name="MMWHS", description="test", reference="test", channel_names={"0": "CT"},
                       labels=mmwhs.SPEC.labels, slice_partitions=7, n_val_groups=2, n_test_groups=2,
                       labeled_counts=(1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mmwhs.convert(source, raw, 961, spec=spec)
    env = nnunet_env(raw, pre, results)
    plan_and_preprocess(961, env, "--verify_dataset_integrity")
    check(run([command("spcl_nnunet"), "prepare", "-d", "961"], env))
    pool, loaders, proc = smoke_pretraining(961, results, "Dataset961_MMWHS", env)
    # by hand: 8 subjects - 2 validation - 2 test = 4 pool scans. Each is (z, y, x) = (8, 32, 32) with the
    # largest spacing (1.25) on z, so nnU-Net's 2d configuration keeps z first: 8 slices, 4 x 8 = 32. Slice i
    # of 8 is in partition i * 7 // 8 = 0, 0, 1, 2, 3, 4, 5, 6: per scan [2, 1, 1, 1, 1, 1, 1]. The smoke
    # schedule's batch: 2 scans x 7 partitions x 2 views
    assert pool == ["pre-training pool: 4 training scans (validation scans excluded)"], tail(proc)
    assert loaders == [loader_line(4, 32, [8, 4, 4, 4, 4, 4, 4]), loader_line(2, 16, [4, 2, 2, 2, 2, 2, 2])], \
        tail(proc)

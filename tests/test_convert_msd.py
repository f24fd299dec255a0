"""MSD Hippocampus and Spleen converters on small generated task folders in the official layout
(``TaskXX_Name/dataset.json`` with its real keys, ``imagesTr``/``labelsTr``/``imagesTs``, macOS ``._``
junk next to the real files and folders, non-contiguous and non-zero-padded case ids)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_helpers import check, command, loader_line, nnunet_env, plan_and_preprocess, run, smoke_pretraining, tail
from spcl_nnunet.conversion import hippocampus, spleen
from spcl_nnunet.conversion.common import ConversionError, DatasetSpec, SourceCase, split_cases
from spcl_nnunet.data.metalabels import load_meta_labels
from spcl_nnunet.data.splits import load_fold_table, make_fold_table

SCRIPTS = Path(__file__).resolve().parents[1] / "dataset_conversion"
HIPPO_IDS = [367, 304, 204, 1, 3, 17, 25, 88, 101, 150, 201, 260, 333, 394]  # the release's order is not sorted
SPLEEN_IDS = [2, 3, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 31, 32, 33,
              38, 40, 41, 44, 45, 46, 47, 49, 52, 53, 56, 59, 60, 61, 62, 63]
JUNK = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)


def _spec(base: DatasetSpec, n_val: int, n_test: int, counts: tuple[int, ...]) -> DatasetSpec:
    return DatasetSpec(name=base.name, description="test", reference="test", channel_names=base.channel_names,
                       labels=base.labels, slice_partitions=base.slice_partitions, n_val_groups=n_val,
                       n_test_groups=n_test, labeled_counts=counts)


HIPPO_SMALL = _spec(hippocampus.SPEC, 2, 3, (1, 2, 4))
SPLEEN_SMALL = _spec(spleen.SPEC, 1, 1, (2, 4))


def _write(path: Path, array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0), direction=None) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), True)
    path.with_name("._" + path.name).write_bytes(JUNK)


def make_msd(root: Path, task: str, ids: list[int], *, size=(4, 16, 12), n_test: int = 3) -> Path:
    """``root/<task>/`` as unpacked from the MSD tarball (Hippocampus or Spleen); returns ``root``."""
    hippo = "Hippocampus" in task
    folder = root / task
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True)
        (folder / f"._{sub}").write_bytes(JUNK)
    (root / f"._{task}").write_bytes(JUNK)
    prefix = "hippocampus" if hippo else "spleen"
    name = (lambda i: f"{prefix}_{i:03d}") if hippo else (lambda i: f"{prefix}_{i}")
    spacing = (1.0, 1.0, 1.0) if hippo else (0.79, 0.79, 5.0)
    origin = (0.0, 0.0, 0.0) if hippo else (-200.5, 180.25, -350.0)
    direction = None if hippo else (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    for i in ids:
        rng = np.random.default_rng(i)
        label = np.zeros(size, dtype=np.uint8)
        z, y, x = (s // 4 for s in size)
        label[z:-z or None, y:2 * y, x:3 * x] = 1
        if hippo:
            label[z:-z or None, 2 * y:3 * y, x:3 * x] = 2
            image = (rng.normal(100, 20, size) + 200 * label).astype(np.float32)
        else:
            image = rng.integers(-1024, 1500, size).astype(np.int16)
            image[label == 1] = rng.integers(80, 160, int(label.sum()))
        _write(folder / "imagesTr" / f"{name(i)}.nii.gz", image, spacing, origin, direction)
        _write(folder / "labelsTr" / f"{name(i)}.nii.gz", label, spacing, origin, direction)
    test_ids = [max(ids) + 1 + k for k in range(n_test)]
    for i in test_ids:
        _write(folder / "imagesTs" / f"{name(i)}.nii.gz", np.zeros(size, dtype=np.float32), spacing, origin, direction)
    dataset = {
        "name": "Hippocampus" if hippo else "Spleen",
        "description": "Left and right hippocampus segmentation" if hippo else "Spleen Segmentation",
        "reference": "Vanderbilt University Medical Center" if hippo else "Memorial Sloan Kettering Cancer Center",
        "licence": "CC-BY-SA 4.0",
        "relase": "1.0 04/05/2018",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"} if hippo else {"0": "CT"},
        "labels": ({"0": "background", "1": "Anterior", "2": "Posterior"} if hippo
                   else {"0": "background", "1": "spleen"}),
        "numTraining": len(ids),
        "numTest": n_test,
        "training": [{"image": f"./imagesTr/{name(i)}.nii.gz", "label": f"./labelsTr/{name(i)}.nii.gz"} for i in ids],
        "test": [f"./imagesTs/{name(i)}.nii.gz" for i in test_ids],
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=4))
    (folder / "._dataset.json").write_bytes(JUNK)
    return root


def _empty(raw: Path) -> bool:
    return not raw.exists() or not any(raw.iterdir())


def _case(folder: Path, table, case: str) -> tuple[sitk.Image, sitk.Image]:
    suffix = "Ts" if case in table.test else "Tr"
    return (sitk.ReadImage(str(folder / f"images{suffix}" / f"{case}_0000.nii.gz")),
            sitk.ReadImage(str(folder / f"labels{suffix}" / f"{case}.nii.gz")))


# -------------------------------------------------------------------------------------- paper split sizes
@pytest.mark.parametrize("spec, n, sizes, folds", [
    (hippocampus.SPEC, 260, (223, 12, 25), [(1, s) for s in range(3)] + [(2, s) for s in range(3)]
     + [(4, s) for s in range(3)]),
    (spleen.SPEC, 41, (34, 2, 5), [(2, s) for s in range(3)] + [(4, s) for s in range(3)]),
])
def test_default_split_sizes(spec: DatasetSpec, n: int, sizes, folds) -> None:
    cases = [SourceCase(case_id=f"c_{i}", image=Path("x"), label=Path("y"), meta={}, group=f"c_{i}")
             for i in range(2, 2 + 3 * n, 3)]
    train, val, test = split_cases(cases, spec, seed=0)
    assert (len(train), len(val), len(test)) == sizes
    table = make_fold_table(train, val, spec.labeled_counts, spec.repeats, 0, test=test)
    assert [(f.num_labeled, f.split) for f in table.folds] == folds
    assert (spec.slice_partitions, dict(spec.channel_names)) == \
        ((3, {"0": "MRI"}) if spec is hippocampus.SPEC else (5, {"0": "CT"}))


# -------------------------------------------------------------------------------------- Hippocampus
@pytest.fixture(scope="module")
def hippo(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hippo")
    source = make_msd(root / "download", "Task04_Hippocampus", HIPPO_IDS)
    folder, table = hippocampus.convert(source, root / "raw", 941, spec=HIPPO_SMALL)
    return source, folder, table


def test_hippocampus_layout_labels_geometry(hippo) -> None:
    source, folder, table = hippo
    assert folder.name == "Dataset941_Hippocampus"
    ids = {f"hippocampus_{i:03d}" for i in HIPPO_IDS}
    tr = {p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTr").iterdir()}
    ts = {p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTs").iterdir()}
    assert tr | ts == ids and len(ts) == 3 and len(tr) == 11 and ts == set(table.test)
    assert (len(table.train_pool), len(table.val)) == (9, 2)
    assert not [p for p in folder.rglob("*") if p.name.startswith("._")]
    assert len(table.folds) == 9
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "anterior": 1, "posterior": 2}
    assert dataset["channel_names"] == {"0": "MRI"} and dataset["numTraining"] == 11
    assert dataset["name"] == "Hippocampus"
    assert "intensity_clip" not in dataset
    meta = load_meta_labels(folder)
    assert meta.slice_partitions == 3 and set(meta.cases) == tr and all(m == {} for m in meta.cases.values())
    for case in ("hippocampus_367", "hippocampus_001", table.test[0]):
        image, label = _case(folder, table, case)
        src = sitk.ReadImage(str(source / "Task04_Hippocampus" / "imagesTr" / f"{case}.nii.gz"))
        src_label = sitk.ReadImage(str(source / "Task04_Hippocampus" / "labelsTr" / f"{case}.nii.gz"))
        for out in (image, label):
            assert out.GetSize() == src.GetSize() and np.allclose(out.GetSpacing(), src.GetSpacing())
            assert np.allclose(out.GetOrigin(), src.GetOrigin()) and np.allclose(out.GetDirection(), src.GetDirection())
        assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(src))
        assert np.array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(src_label))
        assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1, 2}


def test_hippocampus_task_folder_as_input_and_overwrite(hippo, tmp_path: Path) -> None:
    source, _, table = hippo
    raw = tmp_path / "raw"
    folder, again = hippocampus.convert(source / "Task04_Hippocampus", raw, 942, spec=HIPPO_SMALL)
    assert again.to_json() == table.to_json()
    with pytest.raises(FileExistsError, match="overwrite"):
        hippocampus.convert(source, raw, 942, spec=HIPPO_SMALL, seed=5)
    _, other = hippocampus.convert(source, raw, 942, spec=HIPPO_SMALL, seed=5, overwrite=True)
    assert load_fold_table(folder).to_json() == other.to_json() and other.seed == 5
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset942_Hippocampus"]


# -------------------------------------------------------------------------------------- Spleen
@pytest.fixture(scope="module")
def spleen_full(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("spleen")
    source = make_msd(root / "download", "Task09_Spleen", SPLEEN_IDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 41 cases: no count warning
        folder, table = spleen.convert(source, root / "raw", 943)
    return source, folder, table


def test_spleen_full_release_split_and_clipping(spleen_full) -> None:
    source, folder, table = spleen_full
    assert (len(table.train_pool), len(table.val), len(table.test)) == (34, 2, 5)
    assert [(f.num_labeled, f.split) for f in table.folds] == [(2, 0), (2, 1), (2, 2), (4, 0), (4, 1), (4, 2)]
    ids = {f"spleen_{i}" for i in SPLEEN_IDS}
    assert {p.name[: -len("_0000.nii.gz")] for p in (folder / "imagesTr").iterdir()} == ids - set(table.test)
    assert len(list((folder / "imagesTs").iterdir())) == 5 and len(list((folder / "labelsTs").iterdir())) == 5
    assert not [p for p in folder.rglob("*") if p.name.startswith("._")]
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["intensity_clip"] == [-100, 400] and dataset["labels"] == {"background": 0, "spleen": 1}
    assert dataset["channel_names"] == {"0": "CT"} and dataset["numTraining"] == 36
    meta = load_meta_labels(folder)
    assert meta.slice_partitions == 5 and len(meta.cases) == 36
    for case in ("spleen_2", "spleen_63", table.test[0]):
        image, label = _case(folder, table, case)
        src = sitk.ReadImage(str(source / "Task09_Spleen" / "imagesTr" / f"{case}.nii.gz"))
        array, src_array = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(src)
        assert src_array.min() < -100 and src_array.max() > 400
        assert array.dtype == src_array.dtype == np.int16
        assert np.array_equal(array, np.clip(src_array, -100, 400))
        for out in (image, label):
            assert out.GetSize() == src.GetSize() and np.allclose(out.GetSpacing(), src.GetSpacing())
            assert np.allclose(out.GetOrigin(), src.GetOrigin()) and np.allclose(out.GetDirection(), src.GetDirection())
        assert set(np.unique(sitk.GetArrayFromImage(label))) == {0, 1}


def test_spleen_without_clipping(spleen_full, tmp_path: Path) -> None:
    source, _, table = spleen_full
    folder, _ = spleen.convert(source, tmp_path / "raw", 944, intensity_clip=None)
    assert "intensity_clip" not in json.loads((folder / "dataset.json").read_text())
    image, _ = _case(folder, table, "spleen_2")
    src = sitk.ReadImage(str(source / "Task09_Spleen" / "imagesTr" / "spleen_2.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(src))


# -------------------------------------------------------------------------------------- bad input
def _missing_label(task: Path) -> str:
    (task / "labelsTr" / "hippocampus_017.nii.gz").unlink()
    return "labelsTr/hippocampus_017.nii.gz"


def _missing_image(task: Path) -> str:
    (task / "imagesTr" / "hippocampus_003.nii.gz").unlink()
    return "imagesTr/hippocampus_003.nii.gz"


def _shape_mismatch(task: Path) -> str:
    _write(task / "labelsTr" / "hippocampus_025.nii.gz", np.zeros((5, 16, 12), dtype=np.uint8), (1.0, 1.0, 1.0))
    return "labelsTr/hippocampus_025.nii.gz"


def _unexpected_value(task: Path) -> str:
    path = task / "labelsTr" / "hippocampus_088.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    array[0, 0, 0] = 3
    _write(path, array, (1.0, 1.0, 1.0))
    return r"labelsTr/hippocampus_088.nii.gz holds unexpected label value\(s\) \[3\]"


def _unreadable(task: Path) -> str:
    (task / "imagesTr" / "hippocampus_204.nii.gz").write_bytes(b"\x1f\x8b broken gzip")
    return "imagesTr/hippocampus_204.nii.gz"


def _no_dataset_json(task: Path) -> str:
    (task / "dataset.json").unlink()
    return "Task04_Hippocampus/dataset.json"


def _broken_dataset_json(task: Path) -> str:
    (task / "dataset.json").write_text('{"name": "Hippocampus", "training": [')
    return "Task04_Hippocampus/dataset.json"


def _wrong_task(task: Path) -> str:
    data = json.loads((task / "dataset.json").read_text())
    data.update(name="Spleen", modality={"0": "CT"}, labels={"0": "background", "1": "spleen"})
    (task / "dataset.json").write_text(json.dumps(data))
    return "dataset.json describes task 'Spleen'"


def _duplicate_case(task: Path) -> str:
    data = json.loads((task / "dataset.json").read_text())
    data["training"].append(data["training"][0])
    (task / "dataset.json").write_text(json.dumps(data))
    return "lists case hippocampus_367 more than once"


@pytest.mark.parametrize("breakage", [_missing_label, _missing_image, _shape_mismatch, _unexpected_value,
                                      _unreadable, _no_dataset_json, _broken_dataset_json, _wrong_task,
                                      _duplicate_case])
def test_bad_input_names_file_and_leaves_nothing(tmp_path: Path, breakage) -> None:
    source = make_msd(tmp_path / "download", "Task04_Hippocampus", HIPPO_IDS[:8], n_test=0)
    expected = breakage(source / "Task04_Hippocampus")
    raw = tmp_path / "raw"
    with pytest.raises(ConversionError, match=expected):
        hippocampus.convert(source, raw, 945, spec=_spec(hippocampus.SPEC, 1, 1, (1, 2)))
    assert _empty(raw)


@pytest.mark.parametrize("layout", ["empty", "missing", "other_task", "mmwhs"])
def test_wrong_folder_is_refused(tmp_path: Path, layout: str) -> None:
    source = tmp_path / "download"
    if layout != "missing":
        source.mkdir()
    if layout == "other_task":
        make_msd(source, "Task09_Spleen", SPLEEN_IDS[:4], n_test=0)
    if layout == "mmwhs":
        (source / "ct_train").mkdir()
    raw = tmp_path / "raw"
    with pytest.raises(ConversionError, match="Task04_Hippocampus") as err:
        hippocampus.convert(source, raw, 946)
    if layout == "other_task":
        assert "found: Task09_Spleen" in str(err.value)
        with pytest.raises(ConversionError, match="Task09_Spleen/dataset.json describes task 'Spleen'"):
            hippocampus.convert(source / "Task09_Spleen", raw, 946)
    else:
        with pytest.raises(ConversionError, match="Task09_Spleen"):
            spleen.convert(source, raw, 946)
    assert _empty(raw)


def test_options_of_other_converters_are_refused(tmp_path: Path) -> None:
    source = make_msd(tmp_path / "download", "Task04_Hippocampus", HIPPO_IDS[:4], n_test=0)
    with pytest.raises(ConversionError, match="--include-official-test"):
        hippocampus.convert(source, tmp_path / "raw", 947, include_official_test=True)
    with pytest.raises(ConversionError, match="--with-unlabeled"):
        spleen.convert(source, tmp_path / "raw", 947, with_unlabeled=True)
    assert _empty(tmp_path / "raw")


def test_fewer_cases_than_the_release_warns(tmp_path: Path) -> None:
    source = make_msd(tmp_path / "download", "Task09_Spleen", SPLEEN_IDS[:12], n_test=0)
    with pytest.warns(UserWarning, match="lists 12 training cases, the official release 41"):
        _, table = spleen.convert(source, tmp_path / "raw", 948)
    assert (len(table.train_pool), len(table.val), len(table.test)) == (5, 2, 5)


def test_cli_and_scripts(hippo, spleen_full, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    env = nnunet_env(raw, tmp_path / "pre", tmp_path / "res")
    spl_source, _, spl_table = spleen_full
    proc = run([command("spcl_nnunet"), "convert", "spleen", "-i", spl_source, "-d", "949"], env)
    assert proc.returncode == 0, proc.stdout
    assert "train pool 34 scans, val 2, test 5" in proc.stdout and "fold | labeled scans" in proc.stdout
    assert load_fold_table(raw / "Dataset949_Spleen").to_json() == spl_table.to_json()
    proc = run([command("spcl_nnunet"), "convert", "hippocampus", "-i", hippo[0], "-d", "950"], env)
    assert proc.returncode == 2 and "cannot take 12 val + 25 test groups out of 14" in proc.stdout
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset949_Spleen"]
    unset = nnunet_env(None, tmp_path / "pre", tmp_path / "res")
    proc = run([sys.executable, SCRIPTS / "convert_hippocampus.py", "-i", hippo[0], "-d", "950"], unset)
    assert proc.returncode == 2 and "nnUNet_raw is not set" in proc.stdout
    proc = run([sys.executable, SCRIPTS / "convert_spleen.py", "-i", spl_source / "Task09_Spleen", "-d", "949",
                "--overwrite", "--seed", "1", "--no-clip"], env)
    assert proc.returncode == 0, proc.stdout
    folder = raw / "Dataset949_Spleen"
    assert load_fold_table(folder).seed == 1
    assert "intensity_clip" not in json.loads((folder / "dataset.json").read_text())


# -------------------------------------------------------------------------------------- end to end
@pytest.mark.e2e
@pytest.mark.parametrize("task, module, ids, spec, pool_partitions, val_partitions", [
    # by hand: each scan is (z, y, x) = (8, 32, 32); nnU-Net's 2d configuration slices the axis of largest
    # spacing, and for isotropic Hippocampus the first axis (argmax of equal spacings), z: 8 slices a scan.
    # Slice i of 8 is in partition i * 3 // 8: 0, 0, 0, 1, 1, 1, 2, 2 -> [3, 3, 2] a scan. 8 cases - 2
    # validation - 2 test = 4 pool scans (the official imagesTs are not used). Spleen's chain is not run to
    # the pre-training: its slices (z, 5 partitions of 8 slices) count as PROMISE12's chain counts them and
    # its CT planning is MMWHS's; nnU-Net's integrity check of its output is test_spleen_passes_nnunet_integrity
    ("Task04_Hippocampus", hippocampus, HIPPO_IDS[:8], _spec(hippocampus.SPEC, 2, 2, (1, 2)), [12, 12, 8], [6, 6, 4]),
])
def test_e2e_plan_prepare_pretrain(tmp_path: Path, task: str, module, ids, spec, pool_partitions,
                                   val_partitions) -> None:
    source = make_msd(tmp_path / "download", task, ids, size=(8, 32, 32), n_test=1)
    raw, pre, results = tmp_path / "raw", tmp_path / "pre", tmp_path / "results"
    folder, _ = module.convert(source, raw, 962, spec=spec)
    env = nnunet_env(raw, pre, results)
    plan_and_preprocess(962, env, "--verify_dataset_integrity")
    check(run([command("spcl_nnunet"), "prepare", "-d", "962"], env))
    pool, loaders, proc = smoke_pretraining(962, results, folder.name, env)
    assert pool == ["pre-training pool: 4 training scans (validation scans excluded)"], tail(proc)
    assert len(pool_partitions) == len(val_partitions) == spec.slice_partitions
    assert loaders == [loader_line(4, 32, pool_partitions), loader_line(2, 16, val_partitions)], tail(proc)


def test_spleen_passes_nnunet_integrity(tmp_path: Path) -> None:
    """The converted Spleen dataset (CT, official test scans as imagesTs) passes nnU-Net's own
    ``verify_dataset_integrity``."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    source = make_msd(tmp_path / "download", "Task09_Spleen", SPLEEN_IDS[:8], size=(8, 32, 32), n_test=1)
    folder, _ = spleen.convert(source, tmp_path / "raw", 963, spec=_spec(spleen.SPEC, 2, 2, (2, 4)))
    verify_dataset_integrity(str(folder), num_processes=1)

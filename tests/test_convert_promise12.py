"""PROMISE12 converter on small generated raw trees that copy the download's layout.

The fake trees have the real names (``TrainingData_Part1..3/CaseXX.mhd`` + ``.raw``,
``CaseXX_segmentation.mhd`` + ``.raw``, ``TestData/CaseXX.mhd`` without segmentations), MetaImage
headers written by SimpleITK (``ElementDataFile = CaseXX.raw``), MET_SHORT images, MET_UCHAR labels
0/1 and tiny volumes (16x16x6).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_helpers import check, command, loader_line, nnunet_env, plan_and_preprocess, run, smoke_pretraining, tail
from spcl_nnunet.conversion.common import ConversionError
from spcl_nnunet.conversion.promise12 import PARTS, convert
from spcl_nnunet.data.metalabels import load_meta_labels
from spcl_nnunet.data.splits import load_fold_table

# small fake downloads hold fewer cases than the real one (tested once below)
pytestmark = pytest.mark.filterwarnings("ignore:found \\d+ PROMISE12 training cases:UserWarning")
REPO = Path(__file__).resolve().parents[1]
DIRECTION = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _spacing(number: int) -> tuple[float, float, float]:
    return (0.625 - 0.01 * (number % 3), 0.625 - 0.01 * (number % 3), 3.6 - 0.1 * (number % 4))


def _origin(number: int) -> tuple[float, float, float]:
    return (-80.0 + number, -90.5, 12.25 * (number % 5))


def _volume(array: np.ndarray, number: int) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(_spacing(number))
    image.SetOrigin(_origin(number))
    image.SetDirection(DIRECTION)
    return image


def make_case(folder: Path, name: str, number: int, with_segmentation: bool = True,
              size: tuple[int, int, int] = (6, 16, 16)) -> None:
    """``folder/CaseXX.mhd/.raw`` (+ ``CaseXX_segmentation.mhd/.raw``): a prostate-like ellipsoid."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(number)
    z, y, x = size
    zz, yy, xx = np.mgrid[:z, :y, :x]
    inside = ((zz - z / 2) / (z / 3)) ** 2 + ((yy - y / 2) / (y / 4)) ** 2 + ((xx - x / 2) / (x / 5)) ** 2 < 1
    label = inside.astype(np.uint8)
    image = (label * 200 + rng.normal(300, 40, size)).clip(0).astype(np.int16)
    sitk.WriteImage(_volume(image, number), str(folder / f"{name}.mhd"))
    if with_segmentation:
        sitk.WriteImage(_volume(label, number), str(folder / f"{name}_segmentation.mhd"))


def make_promise12(root: Path, n_train: int = 50, n_test: int = 0, **kwargs) -> Path:
    """A fake PROMISE12 download in ``root`` (training cases spread over the three parts)."""
    for part, numbers in zip(PARTS, np.array_split(np.arange(n_train), 3)):
        for number in numbers:
            make_case(root / part, f"Case{number:02d}", int(number), **kwargs)
    for number in range(n_test):
        make_case(root / "TestData", f"Case{number:02d}", 1000 + number, with_segmentation=False, **kwargs)
    return root


def _part_of(raw: Path, name: str) -> Path:
    return next(raw / p for p in PARTS if (raw / p / f"{name}.mhd").is_file())


def _cases(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir())


def _leftovers(raw_root: Path) -> list[str]:
    return sorted(p.name for p in raw_root.iterdir()) if raw_root.exists() else []


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """17 training cases (the fewest the split accepts) and 2 TestData cases."""
    return make_promise12(tmp_path_factory.mktemp("promise_small"), n_train=17, n_test=2)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory):
    """All 50 training and 30 TestData cases, one folder below RAW_DIR; with the unlabeled ones."""
    root = tmp_path_factory.mktemp("promise_full")
    make_promise12(root / "PROMISE12", n_train=50, n_test=30)
    junk = root / "__MACOSX/PROMISE12/TrainingData_Part1"           # macOS zip junk: never read
    junk.mkdir(parents=True)
    for folder in (junk, root / "PROMISE12/TrainingData_Part2", root / "PROMISE12/TestData"):
        (folder / "._Case20.mhd").write_bytes(b"\x00\x05\x16\x07")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)     # the full download: no warning
        folder, table = convert(root, tmp_path_factory.mktemp("nnunet_raw_full"), 28, with_unlabeled=True)
    return root / "PROMISE12", folder, table


# ---------------------------------------------------------------------------- the paper's protocol
def test_full_download_with_unlabeled(full) -> None:
    raw, folder, table = full
    assert folder.name == "Dataset028_PROMISE12"
    train = _cases(folder / "imagesTr", "_0000.nii.gz")
    test = _cases(folder / "imagesTs", "_0000.nii.gz")
    assert _cases(folder / "labelsTr", ".nii.gz") == train and _cases(folder / "labelsTs", ".nii.gz") == test
    unlabeled = [f"unlabeled_Case{n:02d}" for n in range(30)]
    assert len(table.train_pool) == 40 and len(table.val) == 4 and len(table.test) == 6
    assert sorted(table.train_pool + table.val + unlabeled) == train and sorted(table.test) == test
    assert sorted(table.train_pool + table.val + table.test) == [f"Case{n:02d}" for n in range(50)]
    assert [(f.fold, f.num_labeled, f.split) for f in table.folds] == [
        (3 * i + s, n, s) for i, n in enumerate((3, 5, 7)) for s in range(3)]
    meta = load_meta_labels(folder)
    assert meta.slice_partitions == 5 and meta.unlabeled == unlabeled
    assert meta.cases == {c: {"patient": c} for c in train}
    assert not set(unlabeled) & set(table.val + table.test + table.train_pool)
    assert not any(set(unlabeled) & set(f.labeled) for f in table.folds)
    info = json.loads((folder / "dataset.json").read_text())
    assert info["numTraining"] == 74 and info["name"] == "PROMISE12"
    assert info["channel_names"] == {"0": "T2"} and info["labels"] == {"background": 0, "prostate": 1}
    source = sitk.ReadImage(str(raw / "TestData/Case07.mhd"))
    image = sitk.ReadImage(str(folder / "imagesTr/unlabeled_Case07_0000.nii.gz"))
    placeholder = sitk.ReadImage(str(folder / "labelsTr/unlabeled_Case07.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(source))
    assert not sitk.GetArrayFromImage(placeholder).any() and placeholder.GetSize() == source.GetSize()
    assert np.allclose(placeholder.GetSpacing(), source.GetSpacing())
    assert load_fold_table(folder).to_json() == table.to_json()


def test_cases_labels_meta_and_geometry(small_raw: Path, tmp_path: Path) -> None:
    folder, table = convert(small_raw, tmp_path / "raw", 29, seed=5)
    train = _cases(folder / "imagesTr", "_0000.nii.gz")
    test = _cases(folder / "imagesTs", "_0000.nii.gz")
    assert len(train) == 11 and len(test) == 6 and len(table.train_pool) == 7
    assert [(f.num_labeled, f.split) for f in table.folds] == [(3, 0), (3, 1), (3, 2), (5, 0), (5, 1), (5, 2), (7, 0)]
    meta = load_meta_labels(folder)
    assert meta.unlabeled == [] and meta.cases == {c: {"patient": c} for c in train}
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 11
    for case in train[:3] + test[:3]:
        number, sub = int(case[4:]), "Tr" if case in train else "Ts"
        for seg in (False, True):
            source = sitk.ReadImage(str(_part_of(small_raw, case) / f"{case}{'_segmentation' if seg else ''}.mhd"))
            name = f"labels{sub}/{case}.nii.gz" if seg else f"images{sub}/{case}_0000.nii.gz"
            out = sitk.ReadImage(str(folder / name))
            assert out.GetSize() == source.GetSize() == (16, 16, 6)
            assert np.allclose(out.GetSpacing(), _spacing(number)) and np.allclose(out.GetOrigin(), _origin(number))
            assert np.allclose(out.GetDirection(), DIRECTION)
            assert np.array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(source))
            if seg:
                assert out.GetPixelID() == sitk.sitkUInt8 and set(np.unique(sitk.GetArrayFromImage(out))) == {0, 1}
    assert _leftovers(tmp_path / "raw") == [folder.name]


def test_overwrite(small_raw: Path, tmp_path: Path) -> None:
    raw_root = tmp_path / "raw"
    folder, table = convert(small_raw, raw_root, 30)
    with pytest.raises(FileExistsError, match="overwrite"):
        convert(small_raw, raw_root, 30, with_unlabeled=True)
    assert len(list((folder / "imagesTr").iterdir())) == 11
    folder2, table2 = convert(small_raw, raw_root, 30, overwrite=True, with_unlabeled=True)
    assert folder2 == folder and len(list((folder / "imagesTr").iterdir())) == 13
    assert table2.to_json() == table.to_json()          # the unlabeled cases do not move the split
    assert _leftovers(raw_root) == [folder.name]


# ---------------------------------------------------------------------------- bad input
def _remove(path_of):
    def mutate(raw: Path) -> Path:
        path = path_of(raw)
        path.unlink()
        return path
    return mutate


def _truncate(raw: Path) -> Path:
    path = raw / PARTS[2] / "Case15.raw"
    path.write_bytes(path.read_bytes()[:100])
    return raw / PARTS[2] / "Case15.mhd"


def _rewrite(name: str, change):
    def mutate(raw: Path) -> Path:
        path = _part_of(raw, name) / f"{name}_segmentation.mhd"
        image = sitk.ReadImage(str(path))
        sitk.WriteImage(change(image), str(path))
        return path
    return mutate


def _relabel(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image)
    array[array == 1] = 255
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _respace(image: sitk.Image) -> sitk.Image:
    image.SetSpacing((0.3, 0.3, 3.6))
    return image


def _duplicate(raw: Path) -> Path:
    for suffix in (".mhd", ".raw", "_segmentation.mhd", "_segmentation.raw"):
        shutil.copy(raw / PARTS[0] / f"Case02{suffix}", raw / PARTS[1] / f"Case02{suffix}")
    return raw / PARTS[1]


BAD = {
    "missing segmentation": (_remove(lambda raw: raw / PARTS[1] / "Case08_segmentation.mhd"), "segmentation of"),
    "missing segmentation raw": (_remove(lambda raw: raw / PARTS[2] / "Case16_segmentation.raw"),
                                 "names it as its ElementDataFile"),
    "truncated raw": (_truncate, "cannot read"),
    "unexpected label": (_rewrite("Case13", _relabel), r"unexpected label value\(s\) \[255\]"),
    "shape mismatch": (_rewrite("Case10", lambda im: im[:, :, :5]), "expected the same grid"),
    "spacing mismatch": (_rewrite("Case11", _respace), "expected the same spacing"),
    "case in two parts": (_duplicate, "expected each case once"),
    "missing part": (lambda raw: (shutil.rmtree(raw / PARTS[2]), raw)[1], r"lacks \['TrainingData_Part3'\]"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_rejected_and_leaves_nothing(name: str, small_raw: Path, tmp_path: Path) -> None:
    raw = tmp_path / "download"
    shutil.copytree(small_raw, raw)
    mutate, message = BAD[name]
    path = mutate(raw)
    raw_root = tmp_path / "nnunet_raw"
    raw_root.mkdir()
    with pytest.raises(ConversionError) as err:
        convert(raw, raw_root, 40)
    assert str(path) in str(err.value) and err.match(message)
    assert _leftovers(raw_root) == []


def test_wrong_or_empty_folders(small_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="does not exist"):
        convert(tmp_path / "nowhere", tmp_path / "raw", 41)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match=r"no PROMISE12 TrainingData_Part1..3.*accepted layouts"):
        convert(tmp_path / "empty", tmp_path / "raw", 41)
    few = make_promise12(tmp_path / "few", n_train=9)
    with pytest.raises(ConversionError, match=r"holds 9 training cases.*at least 17"):
        convert(few, tmp_path / "raw", 41)
    with pytest.raises(ConversionError, match=r"with_unlabeled: missing .*TestData"):
        convert(few, tmp_path / "raw", 41, with_unlabeled=True)
    assert _leftovers(tmp_path / "raw") == []


def test_partial_download_warns_and_foreign_options_are_refused(small_raw: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"found 17 PROMISE12 training cases .* paper uses 50"):
        convert(small_raw, tmp_path / "raw", 42)
    with pytest.raises(ConversionError, match=r"--include-official-test do not apply to PROMISE12"):
        convert(small_raw, tmp_path / "raw", 43, include_official_test=True)
    assert _leftovers(tmp_path / "raw") == ["Dataset042_PROMISE12"]


# ---------------------------------------------------------------------------- command line
def test_cli_and_script(small_raw: Path, tmp_path: Path) -> None:
    env = nnunet_env(tmp_path / "raw", tmp_path / "pre", tmp_path / "res")
    proc = check(run([command("spcl_nnunet"), "convert", "promise12", "-i", small_raw, "-d", "34",
                      "--with-unlabeled"], env))
    assert "Dataset034_PROMISE12" in proc.stdout and "train pool 7 scans, val 4, test 6" in proc.stdout
    assert load_meta_labels(tmp_path / "raw/Dataset034_PROMISE12").unlabeled == ["unlabeled_Case00",
                                                                                 "unlabeled_Case01"]
    script = [command("python"), REPO / "dataset_conversion/convert_promise12.py", "-i", small_raw, "-d", "34"]
    proc = run(script, env)
    assert proc.returncode != 0 and "already exists" in proc.stdout, tail(proc)
    proc = check(run(script + ["--overwrite", "--seed", "2"], env))
    assert "| labeled scans |" in proc.stdout
    assert load_meta_labels(tmp_path / "raw/Dataset034_PROMISE12").unlabeled == []
    proc = run(script, nnunet_env(None, tmp_path / "pre", tmp_path / "res"))
    assert proc.returncode != 0 and "nnUNet_raw is not set" in proc.stdout, tail(proc)


# ---------------------------------------------------------------------------- nnU-Net end to end
@pytest.mark.e2e
def test_plan_prepare_and_pretrain_smoke(tmp_path: Path) -> None:
    raw = make_promise12(tmp_path / "download", n_train=17, n_test=2, size=(8, 32, 32))
    env = nnunet_env(tmp_path / "raw", tmp_path / "pre", tmp_path / "results")
    check(run([command("spcl_nnunet"), "convert", "promise12", "-i", raw, "-d", "37", "--with-unlabeled"], env))
    plan_and_preprocess(37, env, "--verify_dataset_integrity")
    check(run([command("spcl_nnunet"), "prepare", "-d", "37"], env))
    pool, loaders, proc = smoke_pretraining(37, tmp_path / "results", "Dataset037_PROMISE12", env)
    # by hand: 7 training-pool scans + 2 label-less TestData scans; the 4 validation scans excluded. Each
    # scan is (z, y, x) = (8, 32, 32) with the largest spacing (3.3 to 3.6 mm) on z: 8 slices, 9 x 8 = 72.
    # Slice i of 8 is in partition i * 5 // 8 = 0, 0, 1, 1, 2, 3, 3, 4: [2, 2, 1, 2, 1] a scan
    assert pool == ["pre-training pool: 9 training scans (validation scans excluded)"], tail(proc)
    assert loaders == [loader_line(9, 72, [18, 18, 9, 18, 9]), loader_line(4, 32, [8, 8, 4, 8, 4])], tail(proc)

"""ACDC converter on small generated raw trees that copy the download's layout.

The fake trees have the real names (``training/patient001/patient001_frame01.nii.gz`` + ``_gt``, the
``_4d`` cine file, ``Info.cfg`` with ED/ES/Group/Height/NbFrame/Weight lines; the re-release nested
under ``database/`` with its citation file), tiny volumes (16x16x3) and ACDC's label values.
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
from spcl_nnunet.conversion.acdc import convert
from spcl_nnunet.conversion.common import ConversionError
from spcl_nnunet.data.metalabels import load_meta_labels
from spcl_nnunet.data.splits import load_fold_table

# small fake downloads hold fewer cases than the real one (tested once below)
pytestmark = pytest.mark.filterwarnings("ignore:found \\d+ ACDC training patients:UserWarning")
REPO = Path(__file__).resolve().parents[1]
DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")


def _origin(number: int) -> tuple[float, float, float]:
    return (-10.0 - number, 20.5, 3.0 + 0.25 * number)


def _spacing(number: int) -> tuple[float, float, float]:
    return (1.5625, 1.5625, 5.0 + number % 6)


def _volume(array: np.ndarray, number: int) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(_spacing(number))
    image.SetOrigin(_origin(number))
    image.SetDirection(DIRECTION)
    return image


def _label(rng: np.random.Generator, shape: tuple[int, int, int], es: bool) -> np.ndarray:
    """RV (1) beside a ring of myocardium (2) around the LV cavity (3)."""
    z, y, x = shape
    yy, xx = np.mgrid[:y, :x]
    cy, cx = y / 2 + rng.uniform(-1, 1), x / 2 + rng.uniform(-1, 1)
    r = np.hypot(yy - cy, xx - cx)
    cavity = (2.0 if es else 3.0) * y / 16
    plane = np.zeros((y, x), np.uint8)
    plane[r < cavity + 2 * y / 16] = 2
    plane[r < cavity] = 3
    plane[(np.abs(yy - cy) < 2 * y / 16) & (xx < cx - cavity - 2 * y / 16) & (xx > cx - cavity - 5 * y / 16)] = 1
    return np.repeat(plane[None], z, axis=0)


def _write(image: sitk.Image, path: Path) -> None:
    sitk.WriteImage(image, str(path), True)


def make_patient(folder: Path, number: int, with_gt: bool = True, size: tuple[int, int, int] = (3, 16, 16),
                 n_frames: int = 12) -> None:
    """``folder/patientXXX/``: Info.cfg, the 4D cine file, the ED and ES frames (+ ``_gt``)."""
    patient = f"patient{number:03d}"
    pdir = folder / patient
    pdir.mkdir(parents=True)
    rng = np.random.default_rng(number)
    ed, es = 1, n_frames - number % 4
    (pdir / "Info.cfg").write_text(
        f"ED: {ed}\nES: {es}\nGroup: {GROUPS[number % 5]}\nHeight: {160 + number % 30}.0\n"
        f"NbFrame: {n_frames}\nWeight: {60 + number % 40}.0\n")
    frames = {}
    for frame in range(1, n_frames + 1):
        label = _label(rng, size, es=frame == es)
        frames[frame] = (label, (label * 60 + rng.normal(40, 10, size)).clip(0).astype(np.int16))
    cine = sitk.GetImageFromArray(np.stack([frames[f][1] for f in range(1, n_frames + 1)]), isVector=False)
    cine.SetSpacing(_spacing(number) + (1.0,))
    _write(cine, pdir / f"{patient}_4d.nii.gz")
    for frame in (ed, es):
        label, image = frames[frame]
        _write(_volume(image, number), pdir / f"{patient}_frame{frame:02d}.nii.gz")
        if with_gt:
            _write(_volume(label, number), pdir / f"{patient}_frame{frame:02d}_gt.nii.gz")


def make_acdc(root: Path, n_train: int, n_test: int = 0, test_gt: bool = True, rerelease: bool = False,
              **kwargs) -> Path:
    """A fake ACDC download in ``root``; returns the folder to pass as RAW_DIR (= root)."""
    base = root / "database" if rerelease else root
    for number in range(1, n_train + 1):
        make_patient(base / "training", number, **kwargs)
    for number in range(101, 101 + n_test):
        make_patient(base / "testing", number, with_gt=test_gt, **kwargs)
    if rerelease:
        (base / "MANDATORY_CITATION.md").write_text("Please cite Bernard et al., IEEE TMI 2018.\n")
    return root


def frame_file(raw: Path, number: int, phase: str, gt: bool = False, split: str = "training") -> Path:
    pdir = raw / split / f"patient{number:03d}"
    info = dict(line.split(": ") for line in (pdir / "Info.cfg").read_text().splitlines())
    return pdir / f"patient{number:03d}_frame{int(info[phase]):02d}{'_gt' if gt else ''}.nii.gz"


def _cases(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir())


def _leftovers(raw_root: Path) -> list[str]:
    return sorted(p.name for p in raw_root.iterdir()) if raw_root.exists() else []


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Official 2017 layout: 17 training patients (the fewest the split accepts), 2 testing ones
    without ground truth (as in the 2017 release)."""
    return make_acdc(tmp_path_factory.mktemp("acdc_small"), n_train=17, n_test=2, test_gt=False)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """Re-release layout one folder below RAW_DIR, all 100 training patients, 3 testing patients
    with ground truth; converted with the official test set."""
    root = tmp_path_factory.mktemp("acdc_full")
    make_acdc(root / "ACDC", n_train=100, n_test=3, rerelease=True)
    junk = root / "__MACOSX/ACDC/database/training/patient001"      # macOS zip junk: never read
    junk.mkdir(parents=True)
    (junk / "._patient001_frame01.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    (root / "ACDC/database/training/patient002/._patient002_frame01.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    raw_root = tmp_path_factory.mktemp("nnunet_raw_full")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)     # the full download: no warning
        folder, table = convert(root, raw_root, 27, include_official_test=True)
    return root / "ACDC" / "database", folder, table


@pytest.fixture(scope="module")
def small(small_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    return convert(small_raw, tmp_path_factory.mktemp("nnunet_raw_small"), 31, seed=3)


# ---------------------------------------------------------------------------- the paper's protocol
def test_full_download_gives_the_documented_split(full) -> None:
    raw, folder, table = full
    assert folder.name == "Dataset027_ACDC"
    train = _cases(folder / "imagesTr", "_0000.nii.gz")
    test = _cases(folder / "imagesTs", "_0000.nii.gz")
    assert _cases(folder / "labelsTr", ".nii.gz") == train and _cases(folder / "labelsTs", ".nii.gz") == test
    assert len(table.train_pool) == 174 and len(table.val) == 8 and len(table.test) == 18
    assert sorted(table.train_pool + table.val) == train
    official = [c for c in test if c.startswith("official_")]
    assert official == [f"official_patient{n}_{ph}" for n in (101, 102, 103) for ph in ("ED", "ES")]
    assert sorted(table.test) == sorted(set(test) - set(official))      # never mixed into the paper's test set
    patients = {c.rsplit("_", 1)[0] for c in train + table.test}
    assert patients == {f"patient{n:03d}" for n in range(1, 101)}
    for cases in (table.train_pool, table.val, table.test):              # both phases on the same side
        assert {c.replace("_ED", "_ES") for c in cases} == {c.replace("_ED", "_ES") for c in cases if "_ES" in c}
    sides = [{c.rsplit("_", 1)[0] for c in s} for s in (table.train_pool, table.val, table.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert [(f.fold, f.num_labeled, f.split) for f in table.folds] == [
        (3 * i + s, n, s) for i, n in enumerate((1, 2, 4, 8)) for s in range(3)] + [(12, 174, 0)]
    assert table.folds[-1].labeled == sorted(table.train_pool)
    info = json.loads((folder / "dataset.json").read_text())
    assert info["official_test_cases"] == official and info["numTraining"] == 182
    assert load_fold_table(folder).to_json() == table.to_json()


def test_cases_labels_meta_and_geometry(small, small_raw: Path) -> None:
    folder, table = small
    train = _cases(folder / "imagesTr", "_0000.nii.gz")
    test = _cases(folder / "imagesTs", "_0000.nii.gz")
    assert len(train) == 8 + 8 and len(test) == 18 and len(table.train_pool) == 8
    assert table.labeled_counts == [1, 2, 4, 8]                         # 8 = "all" here: one fold
    assert len(table.folds) == 10 and table.folds[-1].num_labeled == 8
    assert not any("4d" in c or c.startswith("official") for c in train + test)
    meta = load_meta_labels(folder)
    assert meta.slice_partitions == 3 and meta.unlabeled == []
    assert meta.cases == {c: {"patient": c.rsplit("_", 1)[0], "phase": c.rsplit("_", 1)[1]} for c in train}
    info = json.loads((folder / "dataset.json").read_text())
    assert info["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3} and info["name"] == "ACDC"
    assert info["channel_names"] == {"0": "cineMRI"} and info["numTraining"] == 16
    assert "official_test_cases" not in info
    for case in train[:3] + test[:3]:
        number, phase = int(case[7:10]), case[-2:]
        sub = "Tr" if case in train else "Ts"
        for gt in (False, True):
            source = sitk.ReadImage(str(frame_file(small_raw, number, phase, gt=gt)))
            out = sitk.ReadImage(str(folder / f"{'labels' if gt else 'images'}{sub}" /
                                     (f"{case}.nii.gz" if gt else f"{case}_0000.nii.gz")))
            assert out.GetSize() == source.GetSize() == (16, 16, 3)
            assert np.allclose(out.GetSpacing(), _spacing(number)) and np.allclose(out.GetOrigin(), _origin(number))
            assert np.allclose(out.GetDirection(), DIRECTION)
            assert np.array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(source))
            if gt:
                assert out.GetPixelID() == sitk.sitkUInt8
                assert set(np.unique(sitk.GetArrayFromImage(out))) == {0, 1, 2, 3}
    assert _leftovers(folder.parent) == [folder.name]
    assert folder.stat().st_mode & 0o777 == 0o755


def test_seed_changes_split_reproducibly(small_raw: Path, small, tmp_path: Path) -> None:
    _, table = small
    _, again = convert(small_raw, tmp_path / "a", 31, seed=3)
    _, other = convert(small_raw, tmp_path / "b", 31, seed=4)
    assert again.to_json() == table.to_json()
    assert (other.test, other.val) != (table.test, table.val)


# ---------------------------------------------------------------------------- options, overwrite
def test_official_test_needs_ground_truth(small_raw: Path, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"patient101_frame01_gt\.nii\.gz.*re-release"):
        convert(small_raw, tmp_path / "raw", 32, include_official_test=True)
    assert _leftovers(tmp_path / "raw") == []


def test_official_test_needs_testing_folder(tmp_path: Path) -> None:
    raw = make_acdc(tmp_path / "dl", n_train=17)
    with pytest.raises(ConversionError, match=r"testing"):
        convert(raw, tmp_path / "raw", 32, include_official_test=True)


def test_overwrite(small_raw: Path, tmp_path: Path) -> None:
    raw_root = tmp_path / "raw"
    folder, _ = convert(small_raw, raw_root, 33)
    (folder / "stale.txt").write_text("from an earlier conversion")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert(small_raw, raw_root, 33)
    assert (folder / "stale.txt").exists()
    folder2, _ = convert(small_raw, raw_root, 33, overwrite=True, seed=1)
    assert folder2 == folder and not (folder / "stale.txt").exists()
    assert _leftovers(raw_root) == [folder.name]


# ---------------------------------------------------------------------------- bad input
def _drop_es(raw: Path) -> Path:
    info = raw / "training/patient005/Info.cfg"
    info.write_text("\n".join(line for line in info.read_text().splitlines() if not line.startswith("ES")) + "\n")
    return info


def _corrupt(raw: Path) -> Path:
    path = frame_file(raw, 16, "ES")
    path.write_bytes(b"not a nifti file")
    return path


def _relabel(raw: Path) -> Path:
    path = frame_file(raw, 12, "ED", gt=True)
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 4
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path), True)
    return path


def _reshape(raw: Path) -> Path:
    path = frame_file(raw, 9, "ES", gt=True)
    image = sitk.ReadImage(str(path))
    sitk.WriteImage(image[:, :, :2], str(path), True)
    return path


def _respace(raw: Path) -> Path:
    path = frame_file(raw, 9, "ED", gt=True)
    image = sitk.ReadImage(str(path))
    image.SetSpacing((1.5625, 1.5625, 2.0))
    sitk.WriteImage(image, str(path), True)
    return path


def _remove(path_of):
    def mutate(raw: Path) -> Path:
        path = path_of(raw)
        path.unlink()
        return path
    return mutate


BAD = {
    "missing Info.cfg": (_remove(lambda raw: raw / "training/patient003/Info.cfg"), "Info.cfg with 'ED"),
    "Info.cfg without ES": (_drop_es, "no 'ES:' line"),
    "missing frame": (_remove(lambda raw: frame_file(raw, 7, "ES")), "ES frame"),
    "missing gt": (_remove(lambda raw: frame_file(raw, 17, "ED", gt=True)), "ground truth"),
    "unreadable frame": (_corrupt, "cannot read"),
    "unexpected label": (_relabel, r"unexpected label value\(s\) \[4\]"),
    "shape mismatch": (_reshape, "expected the same grid"),
    "spacing mismatch": (_respace, "expected the same spacing"),
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


def test_wrong_or_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="does not exist"):
        convert(tmp_path / "nowhere", tmp_path / "raw", 41)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match=r"no ACDC training/ folder.*accepted layouts.*database/training"):
        convert(tmp_path / "empty", tmp_path / "raw", 41)
    (tmp_path / "empty/training").mkdir()
    with pytest.raises(ConversionError, match=r"holds no patientXXX folders"):
        convert(tmp_path / "empty", tmp_path / "raw", 41)
    few = make_acdc(tmp_path / "few", n_train=5)
    with pytest.raises(ConversionError, match=r"holds 5 patients.*at least 17"):
        convert(few, tmp_path / "raw", 41)
    assert _leftovers(tmp_path / "raw") == []


def test_partial_download_warns_and_foreign_options_are_refused(small_raw: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"found 17 ACDC training patients .* paper uses 100"):
        convert(small_raw, tmp_path / "raw", 42)
    with pytest.raises(ConversionError, match=r"--with-unlabeled do not apply to ACDC"):
        convert(small_raw, tmp_path / "raw", 43, with_unlabeled=True)
    assert _leftovers(tmp_path / "raw") == ["Dataset042_ACDC"]


# ---------------------------------------------------------------------------- command line
def test_cli_and_script(small_raw: Path, tmp_path: Path) -> None:
    env = nnunet_env(tmp_path / "raw", tmp_path / "pre", tmp_path / "res")
    proc = check(run([command("spcl_nnunet"), "convert", "acdc", "-i", small_raw, "-d", "34"], env))
    assert "Dataset034_ACDC" in proc.stdout and "train pool 8 scans, val 8, test 18" in proc.stdout
    script = [command("python"), REPO / "dataset_conversion/convert_acdc.py", "-i", small_raw, "-d", "34"]
    proc = run(script, env)
    assert proc.returncode != 0 and "already exists" in proc.stdout, tail(proc)
    proc = check(run(script + ["--overwrite", "--seed", "2"], env))
    assert "Dataset034_ACDC" in proc.stdout and "| labeled scans |" in proc.stdout
    assert load_fold_table(tmp_path / "raw/Dataset034_ACDC").seed == 2
    proc = run(script, nnunet_env(None, tmp_path / "pre", tmp_path / "res"))
    assert proc.returncode != 0 and "nnUNet_raw is not set" in proc.stdout, tail(proc)
    proc = run([command("spcl_nnunet"), "convert", "acdc", "-i", tmp_path, "-d", "35"], env)
    assert proc.returncode == 2 and "accepted layouts" in proc.stdout, tail(proc)


# ---------------------------------------------------------------------------- nnU-Net end to end
@pytest.mark.e2e
def test_plan_prepare_and_pretrain_smoke(tmp_path: Path) -> None:
    raw = make_acdc(tmp_path / "download", n_train=17, size=(6, 32, 32), n_frames=10)
    env = nnunet_env(tmp_path / "raw", tmp_path / "pre", tmp_path / "results")
    check(run([command("spcl_nnunet"), "convert", "acdc", "-i", raw, "-d", "36"], env))
    plan_and_preprocess(36, env, "--verify_dataset_integrity")
    check(run([command("spcl_nnunet"), "prepare", "-d", "36"], env))
    pool, loaders, proc = smoke_pretraining(36, tmp_path / "results", "Dataset036_ACDC", env)
    # by hand: the 17 patients' split leaves 4 pool patients = 8 scans (ED + ES) and 8 validation scans. Each
    # scan is (z, y, x) = (6, 32, 32) with the largest spacing (5 + n % 6 mm) on z: nnU-Net's 2d configuration
    # keeps each case's 6 slices, 8 x 6 = 48. Slice i of 6 is in partition i * 3 // 6 = 0, 0, 1, 1, 2, 2:
    # [2, 2, 2] a scan. The smoke schedule's batch: 2 scans x 3 partitions x 2 views
    assert pool == ["pre-training pool: 8 training scans (validation scans excluded)"], tail(proc)
    assert loaders == [loader_line(8, 48, [16, 16, 16]), loader_line(8, 48, [16, 16, 16])], tail(proc)

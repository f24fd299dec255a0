"""Slice-position partitions on the axis nnU-Net's 2d configuration really slices.

Hand cases of ``preprocessed_slice_partitions`` plus a real-axis test: a raw dataset whose thick
(slice) axis is the *last* numpy axis and whose first two (or last two) slices are all zero, run
through ``nnUNetv2_plan_and_preprocess -c 2d`` (transpose_forward moves the thick axis first,
crop-to-nonzero removes the zero slices). Each slice's intensity encodes its original index, so
the original index of every preprocessed slice is recovered from the data, not from nnU-Net's
properties.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_helpers import nnunet_env, plan_and_preprocess
from spcl_nnunet.data.metalabels import slice_partitions
from spcl_nnunet.contrastive.slices import partition_counts, partitions_for_cases, preprocessed_slice_partitions


def _props(total: int, start: int, stop: int) -> dict:
    # nnU-Net's layout: tuple shape, bbox as a list of [start, stop) per (transposed) axis
    return {"shape_before_cropping": (total, 40, 40), "bbox_used_for_cropping": [[start, stop], [3, 37], [0, 40]]}


# ---------------------------------------------------------------------------- hand cases
def test_no_crop_is_floor_of_index_times_s_over_n() -> None:
    got = preprocessed_slice_partitions(9, _props(9, 0, 9), 3)
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    for n in range(1, 15):
        for s in range(1, 7):
            np.testing.assert_array_equal(preprocessed_slice_partitions(n, _props(n, 0, n), s),
                                          slice_partitions(n, s))


def test_crop_at_start_keeps_positions_of_the_uncropped_scan() -> None:
    # slices 0 and 1 were cropped away: preprocessed slice i is original slice i + 2 of 9
    got = preprocessed_slice_partitions(7, _props(9, 2, 9), 3)
    np.testing.assert_array_equal(got, [0, 1, 1, 1, 2, 2, 2])
    # not the partitions of the 7 cropped slices on their own
    assert not np.array_equal(got, slice_partitions(7, 3))


def test_crop_at_end() -> None:
    np.testing.assert_array_equal(preprocessed_slice_partitions(6, _props(8, 0, 6), 3), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(preprocessed_slice_partitions(6, _props(8, 0, 6), 2), [0, 0, 0, 0, 1, 1])


def test_crop_at_both_ends_general_formula() -> None:
    for total in range(3, 13):
        for start in range(total):
            for stop in range(start + 1, total + 1):
                for s in (1, 2, 3, 5):
                    got = preprocessed_slice_partitions(stop - start, _props(total, start, stop), s)
                    want = (np.arange(start, stop) * s) // total
                    np.testing.assert_array_equal(got, want, err_msg=f"{total=} {start=} {stop=} {s=}")


def test_resampled_first_axis_maps_slice_centres_back() -> None:
    # 5 slices for 10 original ones: centres at original 1, 3, 5, 7, 9
    np.testing.assert_array_equal(preprocessed_slice_partitions(5, _props(10, 0, 10), 2), [0, 0, 1, 1, 1])
    # upsampled: 4 slices for 2 original ones -> each original slice twice
    np.testing.assert_array_equal(preprocessed_slice_partitions(4, _props(2, 0, 2), 2), [0, 0, 1, 1])


def test_accepts_numpy_properties() -> None:
    props = {"shape_before_cropping": np.array([9, 20, 20]),
             "bbox_used_for_cropping": np.array([[2, 9], [0, 20], [0, 20]])}
    np.testing.assert_array_equal(preprocessed_slice_partitions(7, props, 3), [0, 1, 1, 1, 2, 2, 2])


@pytest.mark.parametrize("props", [
    {},
    {"shape_before_cropping": (9, 40, 40)},
    {"bbox_used_for_cropping": [[0, 9], [0, 40], [0, 40]]},
    {"shape_before_cropping": (), "bbox_used_for_cropping": [[0, 9]]},
    {"shape_before_cropping": None, "bbox_used_for_cropping": [[0, 9]]},
])
def test_missing_properties_name_the_case(props: dict) -> None:
    with pytest.raises(ValueError, match="patient042_ED") as err:
        preprocessed_slice_partitions(9, props, 3, case_id="patient042_ED")
    assert "nnUNetv2_plan_and_preprocess" in str(err.value)


@pytest.mark.parametrize("num_slices, total, start, stop", [
    (9, 9, 0, 10),     # crop beyond the scan
    (5, 9, 6, 4),      # empty / reversed crop
    (5, 9, -1, 4),     # negative start
    (0, 9, 0, 9),      # no slices
])
def test_inconsistent_geometry_names_the_case(num_slices: int, total: int, start: int, stop: int) -> None:
    with pytest.raises(ValueError, match="case_x"):
        preprocessed_slice_partitions(num_slices, _props(total, start, stop), 3, case_id="case_x")


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="slice_partitions"):
        preprocessed_slice_partitions(9, _props(9, 0, 9), 0)


def test_partitions_for_cases_and_counts() -> None:
    out = partitions_for_cases({"a": 7, "b": 6}, {"a": _props(9, 2, 9), "b": _props(8, 0, 6)}, 3)
    np.testing.assert_array_equal(out["a"], [0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(out["b"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(partition_counts(out.values(), 3), [4, 6, 3])
    with pytest.raises(ValueError, match="'b'"):
        partitions_for_cases({"a": 7, "b": 6}, {"a": _props(9, 2, 9), "b": {}}, 3)


# ---------------------------------------------------------------------------- real nnU-Net axis
AXIS_ID = 991
# case -> (number of slices along the thick axis, where the two all-zero slices are)
AXIS_CASES = {"case_a": (9, "start"), "case_b": (10, "start"), "case_c": (8, "end"), "case_d": (11, "start")}
NY, NX = 34, 30


def _write_axis_dataset(raw_root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Raw dataset whose thick axis is the last numpy axis. Returns the folder and, per case,
    the intensity code of every original slice (-1 for the all-zero slices)."""
    folder = raw_root / f"Dataset{AXIS_ID}_SliceAxis"
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:NY, 0:NX]
    body = ((yy - 17) / 13.0) ** 2 + ((xx - 15) / 11.0) ** 2 <= 1
    organ = ((yy - 17) / 5.0) ** 2 + ((xx - 15) / 4.0) ** 2 <= 1
    codes = {}
    for case, (nz, zero_at) in AXIS_CASES.items():
        image = np.zeros((NY, NX, nz), np.float32)   # numpy (y, x, z): z, the thick axis, last
        label = np.zeros((NY, NX, nz), np.uint8)
        zero = {0, 1} if zero_at == "start" else {nz - 2, nz - 1}
        # slice intensities are a permutation of the slice index (not monotonic in it), so a
        # flipped or reordered axis would be caught too
        code = rng.permutation(nz)
        for k in range(nz):
            if k in zero:
                code[k] = -1
                continue
            image[..., k][body] = (code[k] + 1) * 10 + rng.uniform(0.0, 1.0, int(body.sum()))
            label[..., k][organ] = 1
        codes[case] = code
        for array, path in ((image, folder / "imagesTr" / f"{case}_0000.nii.gz"),
                            (label, folder / "labelsTr" / f"{case}.nii.gz")):
            itk = sitk.GetImageFromArray(array)
            itk.SetSpacing((5.0, 1.0, 1.0))   # SimpleITK (x, y, z) order: numpy's last axis is 5 mm
            sitk.WriteImage(itk, str(path), True)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 1},
        "numTraining": len(AXIS_CASES), "file_ending": ".nii.gz"}))
    return folder, codes


@pytest.fixture(scope="module")
def axis_dataset(tmp_path_factory: pytest.TempPathFactory):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    root = tmp_path_factory.mktemp("slice_axis")
    raw_folder, codes = _write_axis_dataset(root / "raw")
    plan_and_preprocess(AXIS_ID, nnunet_env(root / "raw", root / "preprocessed", root / "results"))
    pre = root / "preprocessed" / raw_folder.name
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    data_folder = pre / plans["configurations"]["2d"]["data_identifier"]
    dataset = infer_dataset_class(str(data_folder))(str(data_folder))
    return plans, dataset, codes


def _original_indices(data: np.ndarray, seg: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Original slice index of each preprocessed slice, from the intensity rank: nnU-Net's
    normalisation is one increasing affine map per case, so the order of the slices' mean body
    intensities is the order of their codes."""
    means = np.array([data[0, i][seg[0, i] >= 0].mean() for i in range(data.shape[1])])
    rank = np.argsort(np.argsort(means))
    nonzero = np.flatnonzero(code >= 0)
    by_code = nonzero[np.argsort(code[nonzero])]        # original indices sorted by intensity
    assert len(means) == len(nonzero), "cropping did not remove exactly the all-zero slices"
    return by_code[rank]


@pytest.mark.e2e
def test_transpose_forward_moves_the_thick_axis_first(axis_dataset) -> None:
    plans, _, _ = axis_dataset
    assert plans["transpose_forward"] != [0, 1, 2]
    assert plans["transpose_forward"][0] == 2


@pytest.mark.e2e
def test_cropping_removed_the_zero_slices(axis_dataset) -> None:
    _, dataset, _ = axis_dataset
    assert sorted(dataset.identifiers) == sorted(AXIS_CASES)
    for case, (nz, zero_at) in AXIS_CASES.items():
        data, seg, _, props = dataset.load_case(case)
        assert data.shape[1] == nz - 2
        assert tuple(props["shape_before_cropping"])[0] == nz
        assert tuple(props["shape_before_cropping"][1:]) == (NY, NX)
        start, stop = props["bbox_used_for_cropping"][0]
        assert (start, stop) == ((2, nz) if zero_at == "start" else (0, nz - 2))


@pytest.mark.e2e
@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 5])
def test_partitions_match_original_slice_index(axis_dataset, partitions: int) -> None:
    _, dataset, codes = axis_dataset
    for case, (nz, _) in AXIS_CASES.items():
        data, seg, _, props = dataset.load_case(case)
        data, seg = np.asarray(data), np.asarray(seg)
        original = _original_indices(data, seg, codes[case])
        assert set(original) == set(np.flatnonzero(codes[case] >= 0))
        want = (original * partitions) // nz
        got = preprocessed_slice_partitions(data.shape[1], props, partitions, case)
        np.testing.assert_array_equal(got, want, err_msg=f"{case}: original slice indices {original.tolist()}")


@pytest.mark.e2e
def test_case_slice_counts_reports_preprocessed_slices(axis_dataset) -> None:
    from spcl_nnunet.training.dataloading import case_slice_counts

    _, dataset, _ = axis_dataset
    counts, properties = case_slice_counts(dataset)
    assert counts == {case: nz - 2 for case, (nz, _) in AXIS_CASES.items()}
    for case in AXIS_CASES:
        data, _, _, props = dataset.load_case(case)
        assert counts[case] == data.shape[1]
        assert properties[case]["bbox_used_for_cropping"] == props["bbox_used_for_cropping"]
    parts = partitions_for_cases(counts, properties, 3)
    assert {case: len(p) for case, p in parts.items()} == counts

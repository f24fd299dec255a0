"""Embedded synthetic short-axis cine-MRI dataset that looks like ACDC.

:func:`generate_synthetic_dataset` writes a complete nnU-Net raw dataset
``Dataset{ID:03d}_SyntheticCardiac`` (images, labels, ``dataset.json``, ``meta_labels.json``,
``splits_final.json`` and ``spcl_folds.json``). Every patient has an ED and an ES scan.

Conventions: numpy arrays are (z, y, x); slice index 0 is the most basal slice, the last one the
most apical. Labels: 0 background, 1 RV, 2 myocardium (LV), 3 LV blood pool. Anatomy is drawn in
units of the image size, so any ``image_size`` gives a full-FOV-like picture. 0-2 slices beyond
the heart at either end (atria above the base, nothing below the apex) make the slice position
an informative but noisy meta-label, as in ACDC.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from spcl_nnunet.metalabels import MetaLabels, save_meta_labels
from spcl_nnunet.rawdataset import staged_dataset, target_folder, write_dataset_json
from spcl_nnunet.splits import make_fold_table, split_groups, write_fold_files

DATASET_NAME = "SyntheticCardiac"
LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
PHASES = ("ED", "ES")
FILE_ENDING = ".nii.gz"
SLICE_PARTITIONS = 3


@dataclass(frozen=True)
class _Patient:
    """Per-patient anatomy, contrast and acquisition parameters (lengths in pixels)."""

    shape: tuple[int, int, int]
    thickness: float
    origin: tuple[float, float, float]
    t: np.ndarray            # heart coordinate per slice: 0 base .. 1 apex, <0 above, >1 below
    centre: np.ndarray       # (y, x) of the LV at the base, per slice (drift + breath-hold jitter)
    body: tuple[float, float, float, float]  # centre y, centre x, semi-axis y, semi-axis x
    lung_drop: float
    liver_start: float
    rv_angle: float
    lv_aspect: float
    lv_angle: float
    r_cav: float
    r_epi: float
    wall: float
    cav_end: float
    epi_end: float
    shape_exp: float
    rv_ext: float
    rv_end: float
    es_area: float
    es_myo_gain: float
    es_rv: float
    papillary: tuple[float, float]
    contrast: dict[str, float]
    texture: np.ndarray      # smooth multiplicative tissue texture, (z, y, x)
    bias: np.ndarray         # smooth multiplicative bias field, (z, y, x)
    scale: float
    offset: float
    noise: float
    rician: bool


def _draw_patient(rng: np.random.Generator, image_size: tuple[int, int],
                  slices: tuple[int, int]) -> _Patient:
    """Draw one patient's parameters; the order of draws fixes the dataset for a seed."""
    height, width = image_size
    size = float(min(height, width))
    n = int(rng.integers(slices[0], slices[1] + 1))
    above, below = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    while n - above - below < 3:
        if above >= below and above > 0:
            above -= 1
        else:
            below -= 1
    base = above - 0.5 + rng.uniform(-0.35, 0.35)
    apex = n - below - 0.5 + rng.uniform(-0.35, 0.35)
    t = (np.arange(n) - base) / (apex - base)

    centre0 = np.array([height / 2 + rng.uniform(-0.1, 0.1) * height, width / 2 + rng.uniform(-0.1, 0.1) * width])
    drift = rng.uniform(-0.04, 0.04, size=2) * size
    jitter = rng.normal(0.0, 0.6, size=(n, 2))
    centre = centre0[None, :] + np.clip(t, 0, 1)[:, None] * drift[None, :] + jitter

    scale = rng.uniform(0.8, 1.2)
    r_cav = 0.105 * size * scale
    wall = 0.042 * size * scale * rng.uniform(0.85, 1.15)
    contrast = {
        "tissue": rng.uniform(0.30, 0.45), "fat": rng.uniform(0.60, 0.85), "muscle": rng.uniform(0.20, 0.32),
        "lung": rng.uniform(0.03, 0.08), "liver": rng.uniform(0.35, 0.50), "bone": rng.uniform(0.25, 0.35),
        "blood": rng.uniform(0.72, 0.95), "myo": rng.uniform(0.16, 0.32),
    }
    body = (height / 2 + rng.uniform(-0.03, 0.03) * height, width / 2 + rng.uniform(-0.03, 0.03) * width,
            0.42 * height * rng.uniform(0.92, 1.05), 0.52 * width * rng.uniform(0.92, 1.05))
    origin = (rng.uniform(-200, -100), rng.uniform(-200, -100), rng.uniform(-80, 20))
    thickness = rng.uniform(5.0, 10.0)
    params = dict(
        lung_drop=rng.uniform(0.25, 0.45), liver_start=rng.uniform(0.45, 0.7),
        rv_angle=math.pi + math.radians(rng.uniform(-30, 30)),
        lv_aspect=rng.uniform(0.85, 1.0), lv_angle=rng.uniform(0, math.pi),
        cav_end=rng.uniform(0.86, 0.95), epi_end=rng.uniform(1.08, 1.2), shape_exp=rng.uniform(1.8, 2.6),
        rv_ext=0.09 * size * scale * rng.uniform(0.8, 1.2), rv_end=rng.uniform(0.7, 0.9),
        es_area=rng.uniform(0.55, 0.70), es_myo_gain=rng.uniform(1.0, 1.1), es_rv=rng.uniform(0.5, 0.75),
        papillary=(rng.uniform(-0.6, 0.6), rng.uniform(0.6, 1.4)),
    )
    texture = _smooth_field(rng, (n, height, width), sigma=1.5 * size / 96)
    bias = _bias_field(rng, (n, height, width))
    return _Patient(
        shape=(n, height, width), thickness=thickness, origin=origin, t=t, centre=centre, body=body,
        r_cav=r_cav, r_epi=r_cav + wall, wall=wall, contrast=contrast, texture=texture, bias=bias,
        scale=rng.uniform(150.0, 900.0), offset=rng.uniform(0.0, 0.03), noise=rng.uniform(0.015, 0.06),
        rician=bool(rng.random() < 0.5), **params,
    )


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise smoothed in-plane."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=(0, sigma, sigma))
    return (field - field.mean()) / max(float(field.std()), 1e-8)


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth multiplicative bias: exp of a random quadratic polynomial of normalised (z, y, x)."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, s) if s > 1 else np.zeros(1) for s in shape), indexing="ij")
    c = rng.uniform(-0.25, 0.25, size=6)
    return np.exp(c[0] * x + c[1] * y + c[2] * x * y + c[3] * x ** 2 + c[4] * y ** 2 + 0.5 * c[5] * z)


def _ellipse_sd(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, a: float, b: float,
                angle: float = 0.0) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) to an ellipse with semi-axis ``a``
    along direction ``angle`` (x towards y) and ``b`` across it."""
    a, b = max(a, 1e-3), max(b, 1e-3)
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    d = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    r = np.hypot(u, v)
    return np.where(d > 1e-6, r - r / np.maximum(d, 1e-6), -min(a, b))


def _soft(sd: np.ndarray) -> np.ndarray:
    """Partial-volume coverage of a pixel from its signed distance."""
    return np.clip(0.5 - sd, 0.0, 1.0)


def _profile(t: float, end: float, exponent: float) -> float:
    """Radius factor along the long axis: 1 at the base, 0 from ``end`` on."""
    return math.sqrt(max(0.0, 1.0 - (max(t, 0.0) / end) ** exponent))


def _paint(img: np.ndarray, mask: np.ndarray, value: float) -> None:
    img *= 1.0 - mask
    img += value * mask


def _render_background(p: _Patient, k: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Body, fat, chest-wall muscle, lungs, liver, spine and descending aorta of slice ``k``."""
    c = p.contrast
    n, height, width = p.shape
    size = min(height, width)
    frac = k / max(n - 1, 1)
    by, bx, ay, ax = p.body
    img = np.zeros((height, width))
    _paint(img, _soft(_ellipse_sd(yy, xx, by, bx, ax, ay)), c["fat"])
    _paint(img, _soft(_ellipse_sd(yy, xx, by, bx, ax * 0.91, ay * 0.89)), c["muscle"])
    _paint(img, _soft(_ellipse_sd(yy, xx, by, bx, ax * 0.85, ay * 0.82)), c["tissue"])
    lung = 1.0 - p.lung_drop * frac
    for side in (-1, 1):
        sd = _ellipse_sd(yy, xx, by - 0.03 * height, bx + side * 0.28 * width, 0.13 * width * lung,
                         0.22 * height * lung, math.radians(side * 10))
        _paint(img, _soft(sd), c["lung"])
    if frac > p.liver_start:
        grow = (frac - p.liver_start) / (1 - p.liver_start)
        sd = _ellipse_sd(yy, xx, by + 0.15 * height, bx - 0.22 * width, 0.22 * width * grow + 1,
                         0.18 * height * grow + 1, 0.3)
        _paint(img, _soft(sd), c["liver"])
    _paint(img, _soft(_ellipse_sd(yy, xx, by + 0.34 * height, bx, 0.055 * size, 0.05 * size)), c["bone"])
    _paint(img, _soft(_ellipse_sd(yy, xx, by + 0.26 * height, bx + 0.08 * width, 0.03 * size, 0.03 * size)),
           c["blood"])
    return img


def _lv_radii(p: _Patient, t: float, es: bool) -> tuple[float, float]:
    """Endocardial (cavity) and epicardial radius at heart coordinate ``t``."""
    cav = p.r_cav * _profile(t, p.cav_end, p.shape_exp)
    epi = max(p.r_epi * _profile(t, p.epi_end, p.shape_exp), cav + 0.7 * p.wall)
    if es:
        cav_es = cav * math.sqrt(p.es_area)
        epi = math.sqrt(cav_es ** 2 + (epi ** 2 - cav ** 2) * p.es_myo_gain)
        cav = cav_es
    return cav, epi


def _render_heart(p: _Patient, k: int, es: bool, img: np.ndarray, lab: np.ndarray,
                  yy: np.ndarray, xx: np.ndarray) -> None:
    """Paint LV cavity, myocardium and RV of heart slice ``k`` into ``img`` and ``lab``."""
    c = p.contrast
    t = float(p.t[k])
    cy, cx = p.centre[k]
    cav, epi = _lv_radii(p, t, es)
    stretch = 1.0 / math.sqrt(p.lv_aspect)
    sd_epi = _ellipse_sd(yy, xx, cy, cx, epi * stretch, epi / stretch, p.lv_angle)
    epi_soft = _soft(sd_epi)

    g = _profile(t, p.rv_end, 2.0) * (p.es_rv if es else 1.0)
    rv = np.zeros_like(img, dtype=bool)
    if g > 0.2:
        ext = p.rv_ext * g
        back = 0.25 * epi
        a_par = (epi + ext + back) / 2
        shift = (epi + ext - back) / 2
        a_perp = epi * (0.75 + 0.55 * g)
        ry, rx = cy + shift * math.sin(p.rv_angle), cx + shift * math.cos(p.rv_angle)
        sd_rv = _ellipse_sd(yy, xx, ry, rx, a_par, a_perp, p.rv_angle)
        wall = max(1.0, 0.35 * p.wall)
        _paint(img, _soft(sd_rv - wall) * (1 - epi_soft), c["myo"])      # thin RV free wall, unlabeled
        _paint(img, _soft(sd_rv) * (1 - epi_soft), c["blood"])
        rv = (sd_rv < 0) & (sd_epi >= 0)

    _paint(img, epi_soft, c["myo"])
    lv = np.zeros_like(rv)
    if cav > 0.5:
        sd_cav = _ellipse_sd(yy, xx, cy, cx, cav * stretch, cav / stretch, p.lv_angle)
        _paint(img, _soft(sd_cav), c["blood"])
        lv = sd_cav < 0
        if 0.25 < t < 0.75 and cav > 3.0:                 # papillary muscles, labeled LV as in ACDC
            for side in (-1, 1):
                angle = p.rv_angle + math.pi + side * p.papillary[1] + p.papillary[0]
                py, px = cy + 0.6 * cav * math.sin(angle), cx + 0.6 * cav * math.cos(angle)
                r = max(0.8, 0.14 * cav)
                _paint(img, _soft(_ellipse_sd(yy, xx, py, px, r, r)) * lv, c["myo"])
    lab[rv] = LABELS["RV"]
    lab[sd_epi < 0] = LABELS["MYO"]
    lab[lv] = LABELS["LV"]


def _render_outside(p: _Patient, k: int, img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> None:
    """Unlabeled structures of slices beyond the heart: atria and aortic root above the base,
    a fading partial-volume apex tip just below it."""
    c = p.contrast
    t = float(p.t[k])
    cy, cx = p.centre[k]
    dy, dx = math.sin(p.rv_angle), math.cos(p.rv_angle)
    if t < 0:
        blobs = [(-0.35 * p.r_epi, 0.2 * p.r_epi, 0.85 * p.r_cav),     # left atrium
                 (0.9 * p.r_epi, -0.1 * p.r_epi, 0.75 * p.r_cav),      # right atrium
                 (0.1 * p.r_epi, -0.6 * p.r_epi, 0.4 * p.r_cav)]       # aortic root
        for along, across, radius in blobs:
            by, bx = cy + along * dy + across * dx, cx + along * dx - across * dy
            sd = _ellipse_sd(yy, xx, by, bx, radius, radius * 0.9, p.lv_angle)
            _paint(img, _soft(sd - 1.0), c["myo"])
            _paint(img, _soft(sd), c["blood"])
    elif t < 1.3:
        alpha = 0.5 * (1 - (t - 1) / 0.3)
        r = 0.5 * p.r_epi * _profile(1.0, p.epi_end, p.shape_exp) + 0.5
        _paint(img, alpha * _soft(_ellipse_sd(yy, xx, cy, cx, r, r)), c["myo"])


def _render_scan(p: _Patient, phase: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image (float32) and label (uint8) volumes of one scan, (z, y, x)."""
    n, height, width = p.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    es = phase == "ES"
    image = np.empty((n, height, width))
    label = np.zeros((n, height, width), dtype=np.uint8)
    for k in range(n):
        img = _render_background(p, k, yy, xx)
        if 0.0 <= p.t[k] <= 1.0:
            _render_heart(p, k, es, img, label[k], yy, xx)
        else:
            _render_outside(p, k, img, yy, xx)
        image[k] = img
    image *= 1.0 + 0.06 * p.texture
    image = gaussian_filter(image, sigma=(0, 0.5, 0.5))
    image = (image * p.bias + p.offset) * p.scale
    sigma = p.noise * p.scale
    if p.rician:
        image = np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape))
    else:
        image = np.maximum(image + rng.normal(0, sigma, image.shape), 0.0)
    return image.astype(np.float32), label


def _write_volume(array: np.ndarray, path: Path, p: _Patient, spacing: float) -> None:
    volume = sitk.GetImageFromArray(array)
    volume.SetSpacing((spacing, spacing, p.thickness))
    volume.SetOrigin(p.origin)
    volume.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(volume, str(path), True)


def _check_arguments(dataset_id: int, n_patients: int, seed: int, n_val_patients: int, n_test_patients: int,
                     image_size: tuple[int, int], pixel_spacing: float, slices: tuple[int, int]) -> None:
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset_id must be in 1..999, got {dataset_id}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if n_val_patients < 0 or n_test_patients < 0:
        raise ValueError(f"n_val_patients and n_test_patients must be >= 0, got {n_val_patients}, {n_test_patients}")
    if n_patients < n_val_patients + n_test_patients + 1:
        raise ValueError(f"n_patients={n_patients} must exceed n_val_patients + n_test_patients = "
                         f"{n_val_patients + n_test_patients} (at least one training patient)")
    if len(image_size) != 2 or min(image_size) < 32:
        raise ValueError(f"image_size must be (height, width), each >= 32, got {image_size}")
    if pixel_spacing <= 0:
        raise ValueError(f"pixel_spacing must be > 0, got {pixel_spacing}")
    if len(slices) != 2 or not 3 <= slices[0] <= slices[1]:
        raise ValueError(f"slices must be (min, max) with 3 <= min <= max, got {slices}")


def generate_synthetic_dataset(raw_root: str | os.PathLike[str], dataset_id: int, n_patients: int = 16,
                               seed: int = 0, *, n_val_patients: int = 2, n_test_patients: int = 3,
                               image_size: tuple[int, int] = (96, 96), pixel_spacing: float = 1.5,
                               slices: tuple[int, int] = (8, 12), labeled_counts: Sequence[int] = (1, 2, 4),
                               repeats: int = 3, overwrite: bool = False) -> Path:
    """Write ``raw_root/Dataset{ID:03d}_SyntheticCardiac`` and return its path.

    Patients are split at patient level into train/val/test with
    :func:`spcl_nnunet.splits.split_groups`; train and val scans go to imagesTr/labelsTr, test
    scans to imagesTs/labelsTs. The folder is built in a temporary sibling and renamed into
    place; an existing target is refused unless ``overwrite``. Same arguments, same files.
    """
    _check_arguments(dataset_id, n_patients, seed, n_val_patients, n_test_patients, image_size,
                     pixel_spacing, slices)
    image_size = (int(image_size[0]), int(image_size[1]))
    patients = [f"patient{i + 1:03d}" for i in range(n_patients)]
    groups = {patient: [f"{patient}_{phase}" for phase in PHASES] for patient in patients}
    train, val, test = split_groups(groups, n_val_patients, n_test_patients, seed)
    table = make_fold_table(train, val, labeled_counts, repeats, seed, test=test)
    test_set = set(test)

    with staged_dataset(raw_root, dataset_id, DATASET_NAME, overwrite) as tmp:
        for index, patient in enumerate(patients):
            anatomy = _draw_patient(np.random.default_rng([seed, index]), image_size, slices)
            for phase_index, phase in enumerate(PHASES):
                case = f"{patient}_{phase}"
                image, label = _render_scan(anatomy, phase, np.random.default_rng([seed, index, phase_index]))
                suffix = "Ts" if case in test_set else "Tr"
                _write_volume(image, tmp / f"images{suffix}" / f"{case}_0000{FILE_ENDING}", anatomy, pixel_spacing)
                _write_volume(label, tmp / f"labels{suffix}" / f"{case}{FILE_ENDING}", anatomy, pixel_spacing)
        training = sorted(train + val)
        write_dataset_json(tmp, DATASET_NAME,
                           "Synthetic short-axis cine MRI in the style of ACDC (ED and ES scan per patient; "
                           "slice 0 is basal). Labels: RV, LV myocardium, LV blood pool.",
                           {"0": "cineMRI"}, LABELS, len(training), f"spcl-nnunet synthetic generator, seed {seed}",
                           FILE_ENDING)
        cases = {case: {"patient": case.rsplit("_", 1)[0], "phase": case.rsplit("_", 1)[1]} for case in training}
        save_meta_labels(MetaLabels(slice_partitions=SLICE_PARTITIONS, cases=cases, unlabeled=[]), tmp)
        write_fold_files(tmp, table)
    return target_folder(raw_root, dataset_id, DATASET_NAME)


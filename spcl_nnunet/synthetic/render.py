"""Drawing and rendering synthetic short-axis cine-MRI patients (ED and ES scan each).

Conventions: numpy arrays are (z, y, x); slice index 0 is the most basal slice, the last one the
most apical. Labels: 0 background, 1 RV, 2 myocardium (LV), 3 LV blood pool. Anatomy is drawn in
units of the image size, so any ``image_size`` gives a full-FOV-like picture. 0-2 slices beyond
the heart at either end (atria above the base, nothing below the apex) make the slice position
an informative but noisy meta-label, as in ACDC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from spcl_nnunet.synthetic.profiles import DEFAULT, PATHOLOGIES, Profile

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
PHASES = ("ED", "ES")
FILE_ENDING = ".nii.gz"
SLICE_PARTITIONS = 3


@dataclass(frozen=True)
class Patient:
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
    pathology: str                # one of profiles.PATHOLOGIES
    infarct: tuple[float, float]  # (angle, wall fraction lost) of a thinned sector; fraction 0: none
    outflow_angle: float | None   # direction of the open basal ring (None: closed ring)
    distractors: dict[str, float] | None   # bright vessels and organs near the heart (None: none)
    gamma: float
    blur: float
    texture: np.ndarray      # smooth multiplicative tissue texture, (z, y, x)
    bias: np.ndarray         # smooth multiplicative bias field, (z, y, x)
    scale: float
    offset: float
    noise: float
    rician: bool


def draw_patient(rng: np.random.Generator, extra: np.random.Generator, image_size: tuple[int, int],
                  slices: tuple[int, int], profile: Profile = DEFAULT) -> Patient:
    """Draw one patient's parameters; the order of draws fixes the dataset for a seed.

    ``rng`` draws the parameters every profile has (with the default profile's ranges they are
    the original generator's draws, in the same order); ``extra`` draws what only richer profiles
    use (pathology, gamma, blur, distractors), so the default dataset does not change."""
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

    shift = profile.centre_shift
    centre0 = np.array([height / 2 + rng.uniform(-shift, shift) * height,
                        width / 2 + rng.uniform(-shift, shift) * width])
    drift = rng.uniform(-0.04, 0.04, size=2) * size
    jitter = rng.normal(0.0, profile.breath_jitter, size=(n, 2))
    centre = centre0[None, :] + np.clip(t, 0, 1)[:, None] * drift[None, :] + jitter

    scale = rng.uniform(*profile.scale)
    r_cav = 0.105 * size * scale
    wall = 0.042 * size * scale * rng.uniform(0.85, 1.15)
    spread = profile.contrast_spread
    contrast = {name: rng.uniform(max(0.01, lo - spread), hi + spread) for name, (lo, hi) in (
        ("tissue", (0.30, 0.45)), ("fat", (0.60, 0.85)), ("muscle", (0.20, 0.32)), ("lung", (0.03, 0.08)),
        ("liver", (0.35, 0.50)), ("bone", (0.25, 0.35)), ("blood", (0.72, 0.95)), ("myo", (0.16, 0.32)))}
    body = (height / 2 + rng.uniform(-0.03, 0.03) * height, width / 2 + rng.uniform(-0.03, 0.03) * width,
            0.42 * height * rng.uniform(0.92, 1.05), 0.52 * width * rng.uniform(0.92, 1.05))
    origin = (rng.uniform(-200, -100), rng.uniform(-200, -100), rng.uniform(-80, 20))
    thickness = rng.uniform(5.0, 10.0)
    params = dict(
        lung_drop=rng.uniform(0.25, 0.45), liver_start=rng.uniform(0.45, 0.7),
        rv_angle=math.pi + math.radians(rng.uniform(-profile.rv_angle_deg, profile.rv_angle_deg)),
        lv_aspect=rng.uniform(0.85, 1.0), lv_angle=rng.uniform(0, math.pi),
        cav_end=rng.uniform(0.86, 0.95), epi_end=rng.uniform(1.08, 1.2), shape_exp=rng.uniform(1.8, 2.6),
        rv_ext=0.09 * size * scale * rng.uniform(0.8, 1.2), rv_end=rng.uniform(0.7, 0.9),
        es_area=rng.uniform(0.55, 0.70), es_myo_gain=rng.uniform(1.0, 1.1), es_rv=rng.uniform(0.5, 0.75),
        papillary=(rng.uniform(-0.6, 0.6), rng.uniform(0.6, 1.4)),
    )
    texture = _smooth_field(rng, (n, height, width), sigma=1.5 * size / 96)
    bias = _bias_field(rng, (n, height, width), profile.bias_strength)
    image_scale, offset = rng.uniform(150.0, 900.0), rng.uniform(0.0, 0.03)
    noise, rician = rng.uniform(*profile.noise), bool(rng.random() < 0.5)

    pathology = profile.pathologies[int(extra.integers(len(profile.pathologies)))]
    r_cav, wall, infarct = _apply_pathology(pathology, extra, params, r_cav, wall)
    outflow = float(params["rv_angle"] + math.pi + extra.uniform(-0.6, 0.6)) if profile.basal_outflow_gap else None
    distractors = None
    if profile.distractors:
        distractors = {"pericardial_fat": extra.uniform(0.0, 1.0), "stomach": extra.uniform(0.5, 1.0),
                       "trunk_angle": extra.uniform(-0.5, 0.5), "aorta_gain": extra.uniform(0.85, 1.05)}
    return Patient(
        shape=(n, height, width), thickness=thickness, origin=origin, t=t, centre=centre, body=body,
        r_cav=r_cav, r_epi=r_cav + wall, wall=wall, contrast=contrast, texture=texture, bias=bias,
        scale=image_scale, offset=offset, noise=noise, rician=rician, pathology=pathology, infarct=infarct, outflow_angle=outflow,
        distractors=distractors, gamma=float(extra.uniform(*profile.gamma)), blur=float(extra.uniform(*profile.blur)),
        **params,
    )


def _apply_pathology(pathology: str, extra: np.random.Generator, params: dict, r_cav: float,
                     wall: float) -> tuple[float, float, tuple[float, float]]:
    """Change a normal heart into one of ACDC's patient groups (in place for ``params``);
    returns the new cavity radius, wall thickness and infarct (angle, fraction)."""
    infarct = (0.0, 0.0)
    if pathology == "DCM":        # dilated: large cavity, thin wall, poor contraction
        r_cav *= extra.uniform(1.1, 1.25)
        wall *= extra.uniform(0.8, 0.92)
        params["es_area"] = extra.uniform(0.75, 0.9)
        params["es_myo_gain"] = 1.0
    elif pathology == "HCM":      # hypertrophic: thick wall, small cavity, strong contraction
        r_cav *= extra.uniform(0.88, 0.97)
        wall *= extra.uniform(1.15, 1.35)
        params["es_area"] = extra.uniform(0.4, 0.55)
        params["es_myo_gain"] = extra.uniform(1.1, 1.25)
    elif pathology == "MINF":     # infarct: a thinned, akinetic wall sector, larger cavity
        r_cav *= extra.uniform(1.05, 1.15)
        params["es_area"] = extra.uniform(0.72, 0.88)
        infarct = (float(extra.uniform(0, 2 * math.pi)), float(extra.uniform(0.25, 0.45)))
    elif pathology == "ARV":      # abnormal right ventricle: dilated, reaching the apex, poor contraction
        params["rv_ext"] *= extra.uniform(1.3, 1.6)
        params["rv_end"] = extra.uniform(0.9, 1.0)
        params["es_rv"] = extra.uniform(0.75, 0.9)
    elif pathology != "NOR":
        raise ValueError(f"unknown pathology {pathology!r}; known: {PATHOLOGIES}")
    return r_cav, wall, infarct


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian noise smoothed in-plane."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=(0, sigma, sigma))
    return (field - field.mean()) / max(float(field.std()), 1e-8)


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int], strength: float = 0.25) -> np.ndarray:
    """Smooth multiplicative bias: exp of a random quadratic polynomial of normalised (z, y, x)."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, s) if s > 1 else np.zeros(1) for s in shape), indexing="ij")
    c = rng.uniform(-strength, strength, size=6)
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


def _render_background(p: Patient, k: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
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
    if p.distractors is not None:
        _render_distractors(p, k, img, yy, xx)
    return img


def _render_distractors(p: Patient, k: int, img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> None:
    """Unlabeled structures that look like the targets: pericardial fat around the heart, the
    stomach (bright fluid) below the apex, the aortic root and pulmonary trunk (bright blood)
    in the slices around the base."""
    c, d = p.contrast, p.distractors
    t = float(p.t[k])
    cy, cx = p.centre[k]
    dy, dx = math.sin(p.rv_angle), math.cos(p.rv_angle)
    if 0.0 <= t <= 1.0 and d["pericardial_fat"] > 0.3:
        r = p.r_epi * 1.25
        sd = _ellipse_sd(yy, xx, cy + 0.5 * p.r_epi * dy, cx + 0.5 * p.r_epi * dx, r * 1.4, r)
        ring = _soft(sd) * (1 - _soft(sd + 1.2)) * d["pericardial_fat"]
        _paint(img, ring * (img < c["fat"]), c["fat"])
    if t > 0.55:
        grow = min(1.0, (t - 0.55) / 0.45) * d["stomach"]
        sy, sx = cy - 1.6 * p.r_epi * dx, cx + 1.6 * p.r_epi * dy
        sd = _ellipse_sd(yy, xx, sy, sx, 0.9 * p.r_cav * grow + 0.5, 0.7 * p.r_cav * grow + 0.5, p.lv_angle)
        _paint(img, _soft(sd), 0.9 * c["blood"])
    if t < 0.3:
        for turn, distance, radius in ((0.5, 1.8, 0.5), (-1.0, 1.5, 0.45)):   # pulmonary trunk, aortic root
            angle = p.rv_angle + d["trunk_angle"] + turn
            sd = _ellipse_sd(yy, xx, cy + distance * p.r_epi * math.sin(angle),
                             cx + distance * p.r_epi * math.cos(angle), radius * p.r_cav, radius * p.r_cav)
            _paint(img, _soft(sd), c["blood"] * d["aorta_gain"])


def _lv_radii(p: Patient, t: float, es: bool) -> tuple[float, float]:
    """Endocardial (cavity) and epicardial radius at heart coordinate ``t``."""
    cav = p.r_cav * _profile(t, p.cav_end, p.shape_exp)
    epi = max(p.r_epi * _profile(t, p.epi_end, p.shape_exp), cav + 0.7 * p.wall)
    if es:
        cav_es = cav * math.sqrt(p.es_area)
        epi = math.sqrt(cav_es ** 2 + (epi ** 2 - cav ** 2) * p.es_myo_gain)
        cav = cav_es
    return cav, epi


def _render_heart(p: Patient, k: int, es: bool, img: np.ndarray, lab: np.ndarray,
                  yy: np.ndarray, xx: np.ndarray) -> None:
    """Paint LV cavity, myocardium and RV of heart slice ``k`` into ``img`` and ``lab``."""
    c = p.contrast
    t = float(p.t[k])
    cy, cx = p.centre[k]
    cav, epi = _lv_radii(p, t, es)
    stretch = 1.0 / math.sqrt(p.lv_aspect)
    sd_epi = _ellipse_sd(yy, xx, cy, cx, epi * stretch, epi / stretch, p.lv_angle)
    if p.infarct[1] > 0:          # thinned sector: the epicardium moves towards the cavity
        closeness = np.cos(np.arctan2(yy - cy, xx - cx) - p.infarct[0]).clip(0, 1) ** 3
        sd_epi = sd_epi + p.infarct[1] * (epi - cav) * closeness
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
    if p.outflow_angle is not None and t < 0.12 and cav > 0.5:
        # most basal slice: the ring opens into the outflow tract (blood, labeled LV as in ACDC)
        gap = (np.cos(np.arctan2(yy - cy, xx - cx) - p.outflow_angle) > 0.8) & (sd_epi < 0)
        _paint(img, gap.astype(float), c["blood"])
        lv = lv | gap
    lab[rv] = LABELS["RV"]
    lab[sd_epi < 0] = LABELS["MYO"]
    lab[lv] = LABELS["LV"]


def _render_outside(p: Patient, k: int, img: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> None:
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


def render_scan(p: Patient, phase: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
    image = gaussian_filter(image, sigma=(0, p.blur, p.blur))
    if p.gamma != 1.0:
        image = np.clip(image, 0.0, None) ** p.gamma
    image = (image * p.bias + p.offset) * p.scale
    sigma = p.noise * p.scale
    if p.rician:
        image = np.hypot(image + rng.normal(0, sigma, image.shape), rng.normal(0, sigma, image.shape))
    else:
        image = np.maximum(image + rng.normal(0, sigma, image.shape), 0.0)
    return image.astype(np.float32), label



"""Profiles of the synthetic cardiac dataset: how much patients, scanners and anatomy vary.

``default`` is the original generator (regular anatomy: one labeled scan already covers most of
it). ``acdc`` adds what makes real cine-MRI hard with few labeled scans (ACDC, Bernard et al.
2018): the five ACDC patient groups (normal, dilated and hypertrophic cardiomyopathy, myocardial
infarction with a thinned wall, abnormal right ventricle), more heart pose variation, a per-scan
intensity gamma, stronger bias field, noise and blur, bright vessels and organs near the heart
(aortic root, pulmonary trunk, stomach, pericardial fat), the open basal ring of the outflow
tract and slice-to-slice breath-hold shifts. Its patient, split and image-size defaults mirror
ACDC's protocol at a CPU-friendly size. Its ranges were calibrated on the scratch baseline alone
(docs/results.md, *Calibration*): wider ranges (a per-tissue contrast spread, stronger
pathologies) made one labeled scan far harder than ACDC.
"""

from __future__ import annotations

from dataclasses import dataclass

PATHOLOGIES = ("NOR", "DCM", "HCM", "MINF", "ARV")


@dataclass(frozen=True)
class Profile:
    """Ranges the per-patient parameters are drawn from, and the dataset defaults."""

    name: str
    dataset_name: str
    description: str
    # dataset defaults (each can be overridden by the caller)
    n_patients: int
    n_val_patients: int
    n_test_patients: int
    image_size: tuple[int, int]
    slices: tuple[int, int]
    labeled_counts: tuple[int, ...]
    # (labeled count, splits) pairs where a count gets other than the generator's ``repeats`` splits
    splits_per_count: tuple[tuple[int, int], ...] = ()
    # pose and size
    centre_shift: float = 0.1             # heart centre offset, fraction of the image (uniform +-)
    rv_angle_deg: float = 30.0            # heart rotation: RV direction within 180 deg +- this
    scale: tuple[float, float] = (0.8, 1.2)
    breath_jitter: float = 0.6            # std (px) of the slice-to-slice heart shift (breath-holds)
    # anatomy
    pathologies: tuple[str, ...] = ("NOR",)   # drawn uniformly per patient
    distractors: bool = False             # aortic root, pulmonary trunk, stomach, pericardial fat
    basal_outflow_gap: bool = False       # open myocardial ring at the most basal heart slices
    # scanner
    contrast_spread: float = 0.0          # extra per-tissue intensity spread (added to both ends)
    gamma: tuple[float, float] = (1.0, 1.0)   # per-scan intensity gamma
    bias_strength: float = 0.25           # coefficients of the quadratic log-bias field
    noise: tuple[float, float] = (0.015, 0.06)
    blur: tuple[float, float] = (0.5, 0.5)    # in-plane Gaussian blur sigma (px)

    def minimum_patients(self, n_val_patients: int | None = None, n_test_patients: int | None = None,
                         labeled_counts: tuple[int, ...] | None = None) -> int:
        """Fewest patients that leave enough training scans (2 per patient) for the largest
        labeled count after the validation and test patients are set aside."""
        val = self.n_val_patients if n_val_patients is None else n_val_patients
        test = self.n_test_patients if n_test_patients is None else n_test_patients
        counts = self.labeled_counts if labeled_counts is None else labeled_counts
        return val + test + max(1, -(-max(counts, default=1) // 2))


DEFAULT = Profile(
    name="default", dataset_name="SyntheticCardiac",
    description="regular anatomy, mild patient and scanner variation (the original generator)",
    n_patients=16, n_val_patients=2, n_test_patients=3, image_size=(96, 96), slices=(8, 12),
    labeled_counts=(1, 2, 4),
)

ACDC = Profile(
    name="acdc", dataset_name="SyntheticACDC",
    description="ACDC-like difficulty: five patient groups, pose, contrast, bias, noise, distractors; "
                "100 patients split 87/4/9 as ACDC (174/8/18 scans), 64x64 px, 7-11 slices",
    n_patients=100, n_val_patients=4, n_test_patients=9, image_size=(64, 64), slices=(7, 11),
    labeled_counts=(1, 2, 4, 8),
    splits_per_count=((1, 8), (2, 4)),    # enough splits to tell a gain from chance where labels are fewest
    centre_shift=0.1, rv_angle_deg=35.0, scale=(0.8, 1.25), breath_jitter=0.8,
    pathologies=PATHOLOGIES, distractors=True, basal_outflow_gap=True,
    contrast_spread=0.0, gamma=(0.85, 1.2), bias_strength=0.3, noise=(0.015, 0.06), blur=(0.4, 0.6),
)

PROFILES = {p.name: p for p in (DEFAULT, ACDC)}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown synthetic profile {name!r}; known profiles: {', '.join(PROFILES)}")
    return PROFILES[name]

"""The registry of methods: a method is a named recipe of nnU-Net trainers.

A new compared method joins with one entry in ``METHODS``. ``pretrainer`` (if any) is trained
once per experiment and its ``checkpoint_final.pth`` handed to ``trainer`` through nnU-Net's
``-pretrained_weights``; a pre-training that starts from another one (global + local
contrastive) names it in ``pretrainer_from``, trained first and shared the same way.
``meta_labels`` are the case-level keys of ``meta_labels.json`` the method needs (slice position
is always there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str                     # the --methods name
    label: str                    # row label in the tables
    trainer: str                  # nnU-Net trainer trained on each fold
    pretrainer: str | None = None  # trainer of the shared pre-training, None: from scratch
    meta_labels: tuple[str, ...] = ()
    pretrainer_from: str | None = None  # the pre-training whose checkpoint starts ``pretrainer``


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("baseline", "baseline (scratch)", "SPConBaselineTrainer"),
    # nnU-Net's own recipe (nnUNetTrainer: SGD, poly, Dice + CE), and SP-Con fine-tuned with it on
    # nnU-Net 2.8's warm-up, the pre-trained encoder held back as in "spcon"
    Method("nnunet", "nnU-Net (nnUNetTrainer recipe)", "SPConBaselineTrainer_nnUNetRecipe"),
    Method("spcon-nnunet", "SP-Con (pre-train), nnU-Net's recipe", "SPConFinetuneTrainer_nnUNetRecipe",
           "SPConPretrainTrainer"),
    Method("spcon", "SP-Con (pre-train)", "SPConFinetuneTrainer", "SPConPretrainTrainer"),
    # the paper's fine-tuning recipe (one learning rate); "spcon" trains the pre-trained encoder at a
    # tenth of the decoder's rate (issue #19, chosen on validation scans)
    Method("spcon-paper", "SP-Con (pre-train, paper's recipe)", "SPConFinetuneTrainer_paperRecipe",
           "SPConPretrainTrainer"),
    Method("contrastive", "contrastive L_con (pre-train)", "SPConFinetuneTrainer", "ContrastivePretrainTrainer"),
    Method("simclr", "SimCLR (pre-train)", "SPConFinetuneTrainer", "SimCLRPretrainTrainer"),
    Method("simclr-sp", "SimCLR + self-paced (pre-train)", "SPConFinetuneTrainer", "SimCLRSPPretrainTrainer"),
    Method("spcon-patient", "SP-Con, patient meta-label (pre-train)", "SPConFinetuneTrainer",
           "SPConPretrainTrainer_patient", ("patient",)),
    Method("spcon-phase", "SP-Con, phase meta-label (pre-train)", "SPConFinetuneTrainer",
           "SPConPretrainTrainer_phase", ("phase",)),
    Method("mean-teacher", "Mean Teacher", "MeanTeacherTrainer"),
    Method("entropy-min", "entropy minimisation", "EntropyMinTrainer"),
    Method("spcon-mt", "SP-Con + Mean Teacher (Eq. 15)", "SPConMeanTeacherTrainer"),
    # started from the SP-Con pre-training, the pre-trained encoder held back as in "spcon"
    Method("spcon-mt-pretrained", "SP-Con + Mean Teacher (from SP-Con pre-training)",
           "SPConMeanTeacherTrainer_fromPretraining", "SPConPretrainTrainer"),
    # FixMatch-style: confidence-masked pseudo-labels of the weak view on a strong (CutMix) view
    Method("fixmatch", "FixMatch-style pseudo-labels", "FixMatchTrainer"),
    Method("fixmatch-pretrained", "FixMatch-style (from SP-Con pre-training)", "FixMatchTrainer_fromPretraining",
           "SPConPretrainTrainer"),
    # the paper's compared methods (supplementary Sec. 3)
    Method("mixup", "MixUp", "MixUpTrainer"),
    Method("adversarial", "adversarial training", "AdversarialTrainer"),
    Method("discrete-mi", "discrete mutual information", "DiscreteMITrainer"),
    Method("global-local", "global + local contrastive (pre-train)", "SPConFinetuneTrainer",
           "LocalContrastivePretrainTrainer", pretrainer_from="ContrastivePretrainTrainer"),
)}


def get_methods(names: Iterable[str]) -> list[Method]:
    """The methods named (in order, duplicates dropped); an unknown name is a ValueError that lists
    the registry."""
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known methods: {', '.join(METHODS)}")
    if not names:
        raise ValueError(f"no method given; known methods: {', '.join(METHODS)}")
    return [METHODS[n] for n in names]


def pretraining_order(methods: Iterable[Method]) -> list[str]:
    """The pre-trainings the methods need, each once, a pre-training after the one it starts from."""
    return list(dict.fromkeys(t for m in methods for t in (m.pretrainer_from, m.pretrainer) if t))


def pretraining_start(methods: Iterable[Method], trainer: str) -> str | None:
    """The pre-training whose checkpoint starts the pre-training ``trainer`` (None: a random network)."""
    return next((m.pretrainer_from for m in methods if m.pretrainer == trainer), None)


def trainer_class(name: str) -> type:
    """The trainer class of that name from the package's trainer modules (as nnU-Net finds it
    through ``trainers/``)."""
    import importlib

    from spcl_nnunet.training import TRAINER_MODULES

    for module in map(importlib.import_module, TRAINER_MODULES):
        if isinstance(getattr(module, name, None), type):
            return getattr(module, name)
    raise ValueError(f"trainer {name!r} is not defined in spcl_nnunet.training")

"""Supervised fine-tuning / few-label baseline trainers (nnUNetv2_train DATASET 2d FOLD -tr NAME)."""

from spcl_nnunet.training.finetune import (  # noqa: F401
    SPConFinetuneTrainer,
    SPConFinetuneTrainer_DiceCE,
    SPConFinetuneTrainer_smoke,
)

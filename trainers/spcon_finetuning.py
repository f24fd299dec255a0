"""Supervised fine-tuning / few-label baseline trainers (nnUNetv2_train DATASET 2d FOLD -tr NAME)."""

from spcl_nnunet.training.finetune import (  # noqa: F401
    SPConBaselineTrainer,
    SPConBaselineTrainer_nnUNetRecipe,
    SPConFinetuneTrainer,
    SPConFinetuneTrainer_ACDC,
    SPConFinetuneTrainer_MMWHS,
    SPConFinetuneTrainer_nnUNetRecipe,
    SPConFinetuneTrainer_paperRecipe,
    SPConFinetuneTrainer_PROMISE12,
    SPConFinetuneTrainer_DiceCE,
)

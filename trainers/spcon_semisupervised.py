"""Semi-supervised trainers (Mean Teacher, SP-Con + Mean Teacher, entropy minimisation), defined
in ``spcl_nnunet.training.semisupervised``; nnU-Net finds them here through ``nnUNet_extTrainer``."""

from spcl_nnunet.training.semisupervised import (  # noqa: F401
    EntropyMinTrainer,
    MeanTeacherTrainer,
    MeanTeacherTrainer_rampup,
    SemiSupervisedTrainer,
    SPConMeanTeacherTrainer,
    SPConMeanTeacherTrainer_ACDC,
    SPConMeanTeacherTrainer_MMWHS,
    SPConMeanTeacherTrainer_PROMISE12,
)

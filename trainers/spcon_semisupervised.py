"""Semi-supervised trainers (Mean Teacher, SP-Con + Mean Teacher, entropy minimisation, FixMatch-style
pseudo-labels), defined in ``spcl_nnunet.training.semisupervised``; nnU-Net finds them here through
``nnUNet_extTrainer``."""

from spcl_nnunet.training.semisupervised import (  # noqa: F401
    EntropyMinTrainer,
    FixMatchTrainer,
    FixMatchTrainer_fromPretraining,
    FixMatchTrainer_student,
    MeanTeacherTrainer,
    MeanTeacherTrainer_rampup,
    SemiSupervisedTrainer,
    SPConMeanTeacherTrainer,
    SPConMeanTeacherTrainer_ACDC,
    SPConMeanTeacherTrainer_fromPretraining,
    SPConMeanTeacherTrainer_MMWHS,
    SPConMeanTeacherTrainer_PROMISE12,
)

"""Contrastive pre-training trainers (nnUNetv2_train DATASET 2d FOLD -tr NAME)."""

from spcl_nnunet.training.pretrain import (  # noqa: F401
    ContrastivePretrainTrainer,
    PretrainTrainerBase,
    SimCLRPretrainTrainer,
    SimCLRSPPretrainTrainer,
    SPConPretrainTrainer,
    SPConPretrainTrainer_ACDC,
    SPConPretrainTrainer_hard,
    SPConPretrainTrainer_patient,
    SPConPretrainTrainer_phase,
    SPConPretrainTrainer_posPatient,
    SPConPretrainTrainer_posPatientPhase,
)

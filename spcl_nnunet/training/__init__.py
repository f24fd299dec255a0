"""nnU-Net trainers of spcl-nnunet (found by nnU-Net through the repository's ``trainers/`` folder).

``TRAINER_MODULES``: the modules that define trainers (``trainers/`` re-exports every one of them).
``retired`` is not one of them: it makes the stubs of retired trainer names (``trainers/retired_trainers.py``).
"""

TRAINER_MODULES = ("spcl_nnunet.training.pretrain", "spcl_nnunet.training.local_contrastive",
                   "spcl_nnunet.training.finetune", "spcl_nnunet.training.semisupervised",
                   "spcl_nnunet.training.compared")

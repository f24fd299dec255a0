"""nnU-Net trainers of spcl-nnunet (found by nnU-Net through the repository's ``trainers/`` folder)."""

"""spcl-nnunet: Self-Paced Contrastive Learning with meta-labels (Peng et al., NeurIPS 2021) for nnU-Net v2."""

__version__ = "0.1.0"

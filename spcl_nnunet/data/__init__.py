"""Dataset files on disk: raw datasets written all at once, the meta-label and fold sidecars, the
splits, and the nnU-Net folder environment that the trainers and CLI read them from."""

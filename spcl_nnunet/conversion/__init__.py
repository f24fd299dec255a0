"""Dataset converters: real downloads -> nnU-Net raw datasets with meta-label and fold sidecars."""

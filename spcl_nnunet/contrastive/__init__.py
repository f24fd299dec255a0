"""The contrastive batch: slice-position meta-labels, meta-label aware sampling, two-view intensity
changes, the self-paced pace gamma, negatives gathered across GPUs and weight heat-maps."""

"""The training losses, one module per family (each module's docstring has its formulas).

- ``self_paced``: the self-paced supervised contrastive loss with meta-labels (SP-Con, L_sp / L_con).
- ``consistency``: transformation-consistent Mean Teacher loss, entropy minimisation, and the
  geometric transforms they use (including the per-image flips of the compared methods' views).
- ``mutual_information``: discrete mutual information (IIC) between two views' cluster assignments.
- ``local_contrastive``: Chaitanya et al.'s local contrastive loss on grid points of dense embeddings.
- ``mixup``: MixUp on labeled pairs (one-hot targets, Beta-mixing, soft-target KL).
- ``adversarial``: the patch discriminator's and the segmenter's BCE-with-logits losses.
"""

from spcl_nnunet.losses.adversarial import adversarial_loss, discriminator_accuracy, discriminator_loss
from spcl_nnunet.losses.consistency import (FlipTransform, GeometricTransform, entropy_loss, random_flips,
                                            random_geometric_transform, transformation_consistency_loss)
from spcl_nnunet.losses.local_contrastive import local_contrastive_loss, sample_grid_points
from spcl_nnunet.losses.mixup import mix, mix_mask, one_hot_target, sample_mixing, sample_rows, soft_target_loss
from spcl_nnunet.losses.mutual_information import dense_iic_loss, iic_loss, multihead_dense_iic_loss, multihead_iic_loss
from spcl_nnunet.losses.self_paced import (combined_self_paced_supcon, mean_positive_weight, positive_mask,
                                           self_paced_supcon)

__all__ = ["combined_self_paced_supcon", "mean_positive_weight", "positive_mask", "self_paced_supcon",
           "GeometricTransform", "entropy_loss", "random_geometric_transform", "transformation_consistency_loss",
           "FlipTransform", "random_flips",
           "iic_loss", "dense_iic_loss", "multihead_iic_loss", "multihead_dense_iic_loss",
           "local_contrastive_loss", "sample_grid_points",
           "mix", "mix_mask", "one_hot_target", "sample_mixing", "sample_rows", "soft_target_loss",
           "adversarial_loss", "discriminator_accuracy", "discriminator_loss"]

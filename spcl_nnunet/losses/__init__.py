"""The training losses, one module per family (each module's docstring has its formulas).

- ``self_paced``: the self-paced supervised contrastive loss with meta-labels (SP-Con, L_sp / L_con).
- ``consistency``: transformation-consistent Mean Teacher loss, entropy minimisation, and the
  geometric transforms they use.
"""

from spcl_nnunet.losses.consistency import (GeometricTransform, entropy_loss, random_geometric_transform,
                                            transformation_consistency_loss)
from spcl_nnunet.losses.self_paced import (combined_self_paced_supcon, mean_positive_weight, positive_mask,
                                           self_paced_supcon)

__all__ = ["combined_self_paced_supcon", "mean_positive_weight", "positive_mask", "self_paced_supcon",
           "GeometricTransform", "entropy_loss", "random_geometric_transform", "transformation_consistency_loss"]

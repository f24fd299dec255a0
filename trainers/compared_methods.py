"""The paper's compared methods (MixUp, adversarial training, discrete mutual information, and the
local stage of global + local contrastive pre-training), defined in
``spcl_nnunet.training.compared`` and ``spcl_nnunet.training.local_contrastive``; nnU-Net finds
them here through ``nnUNet_extTrainer``."""

from spcl_nnunet.training.compared import (  # noqa: F401
    AdversarialTrainer,
    AdversarialTrainer_image,
    DiscreteMITrainer,
    DiscreteMITrainer_consistency,
    MixUpTrainer,
)
from spcl_nnunet.training.local_contrastive import (  # noqa: F401
    LocalContrastivePretrainTrainer,
)

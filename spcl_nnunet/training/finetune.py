"""Supervised training on a fold's labeled scans: the paper's fine-tuning stage.

``SPConFinetuneTrainer -pretrained_weights`` (an ``SPConPretrainTrainer`` checkpoint) is "SP-Con
(pre-train)". The few-label baseline is ``SPConBaselineTrainer``: the same recipe with one learning
rate. ``SPConFinetuneTrainer`` without ``-pretrained_weights`` is neither: it trains a random encoder
at a tenth of the rate, and says so in its log. Loss: cross-entropy as in the paper (nnU-Net's deep
supervision kept), or nnU-Net's Dice + CE in ``SPConFinetuneTrainer_DiceCE``. Learning rate: linear
warm-up from ``lr_init`` to ``lr_multiplier * lr_init`` over 10 epochs, then cosine decay; RAdam with
weight decay 1e-5 (the authors' code). The transfer options of issue #19 (encoder learning-rate
factor, random shallow stages, frozen encoder, nnU-Net's SGD) are class attributes, set by a
schedule file. The default recipe trains the pre-trained encoder at a tenth of the decoder's rate
(arm (c), chosen on validation scans); ``SPConFinetuneTrainer_paperRecipe`` keeps the paper's single
rate.
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

from spcl_nnunet.training.base import SPConTrainerBase
from spcl_nnunet.training.lr_schedule import WarmupCosineLRScheduler, WarmupPolyLRScheduler


class SPConFinetuneTrainer(SPConTrainerBase):
    schedule_role = "finetune"
    lr_init: float = 1e-7            # ACDC, Hippocampus, Spleen (PROMISE12 5e-7, MMWHS 2e-6)
    lr_multiplier: float = 300.0
    warmup_epochs: int = 10
    # the encoder's learning rate as a fraction of the rest's: 0.1, issue #19's arm (c), chosen on the
    # validation scans as the default transfer recipe (benchmarks/README.md); 1: one rate for all, the
    # paper's recipe (SPConFinetuneTrainer_paperRecipe, the baselines, the semi-supervised trainers)
    encoder_lr_factor: float = 0.1
    # encoder stages below this index restart from nnU-Net's random initialisation at the start of a
    # training, after -pretrained_weights loaded them (0: every loaded stage kept; issue #19's arm (d))
    random_encoder_stages: int = 0
    # the encoder frozen (requires_grad off: no update, no weight decay, no optimizer state) for the
    # first N epochs, then everything trained after a fresh warm-up (issue #19's arm (b), the decoder
    # warm-up of nnU-Net's pre-training work); -1: frozen throughout (the representation probe)
    frozen_encoder_epochs: int = 0
    # "radam": the paper's RAdam with warm-up + cosine; "sgd": nnU-Net's SGD (momentum 0.99, nesterov)
    # with nnU-Net 2.8's warm-up for pre-trained weights, then poly decay (issue #19's arm (e))
    optimizer_name: str = "radam"
    sgd_lr: float = 1e-2             # nnU-Net's initial_lr
    sgd_weight_decay: float = 3e-5   # nnU-Net's weight_decay
    use_dice_ce: bool = False
    num_epochs_default = 80          # paper: 75 (ACDC) or 80, 200 iterations per epoch, RAdam, wd 1e-5
    iterations_per_epoch = 200
    weight_decay_default = 1e-5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = self.lr_init * self.lr_multiplier
        self.encoder_as_built: torch.Tensor | None = None   # a copy of the first encoder tensor after initialize

    def initialize(self):
        self.load_spcon_sidecars()
        super().initialize()
        self.encoder_as_built = next(self.unwrapped_network().encoder.parameters()).detach().clone()

    def baseline_trainer(self) -> str:
        """The trainer that trains this recipe from scratch (named when no weights are loaded)."""
        return "SPConBaselineTrainer"

    def pretrained_weights_loaded(self) -> bool:
        """Whether, on a fresh run (epoch 0), something replaced the encoder that ``initialize`` built:
        nnU-Net's ``-pretrained_weights`` loads after ``initialize`` and before ``on_train_start``.
        False before ``initialize`` and on a resumed run (``--c``)."""
        if not self.was_initialized or self.current_epoch != 0 or self.encoder_as_built is None:
            return False
        return not torch.equal(next(self.unwrapped_network().encoder.parameters()), self.encoder_as_built)

    def random_encoder_warning(self) -> str | None:
        """The warning for a fresh run whose encoder is random (no ``-pretrained_weights``) yet held back
        at ``encoder_lr_factor`` x the rate: not the baseline, a weaker model than it. None otherwise."""
        if self.encoder_lr_factor == 1 or self.current_epoch != 0 or self.pretrained_weights_loaded():
            return None
        return (f"WARNING: {type(self).__name__} runs without -pretrained_weights: its encoder starts at random and "
                f"trains at {self.encoder_lr_factor:g} x the learning rate (encoder_lr_factor), which is not the "
                f"few-label baseline but a weaker model. For the baseline run -tr {self.baseline_trainer()}; to "
                f"fine-tune, pass -pretrained_weights with a pre-training's checkpoint_final.pth")

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.network.parameters())

    def reinitialise_encoder_stages(self, count: int) -> None:
        """Encoder stages 0 .. count-1 (and a stem) get nnU-Net's He initialisation again, identical
        on every rank."""
        from dynamic_network_architectures.initialization.weight_init import InitWeights_He

        from spcl_nnunet.contrastive.distributed import broadcast_module

        encoder = self.unwrapped_network().encoder
        if not 0 <= count <= len(encoder.stages):
            raise ValueError(f"{type(self).__name__}: random_encoder_stages must lie in 0..{len(encoder.stages)} "
                             f"(the encoder's stages), got {count}")
        modules = ([encoder.stem] if getattr(encoder, "stem", None) is not None else []) + list(encoder.stages[:count])
        for module in modules:
            module.apply(InitWeights_He(1e-2))
            broadcast_module(module)
        self.print_to_log_file(f"encoder stages 0-{count - 1} re-initialised at random (random_encoder_stages = "
                               f"{count}); stages {count}-{len(encoder.stages) - 1} kept as loaded")

    def encoder_stages_to_reinitialise(self) -> int:
        """``random_encoder_stages`` on a fresh run whose network was built and loaded
        (``-pretrained_weights``); 0 on a resumed run (``--c``) and on one from scratch."""
        return self.random_encoder_stages if self.pretrained_weights_loaded() else 0

    def on_train_start(self):
        # before nnU-Net's start (and before a Mean Teacher copies the student)
        if warning := self.random_encoder_warning():
            self.print_to_log_file(warning)
        if count := self.encoder_stages_to_reinitialise():
            self.reinitialise_encoder_stages(count)
        super().on_train_start()

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups: one, or with ``encoder_lr_factor`` != 1 everything
        trained but the network's encoder (``lr_factor`` 1, first: nnU-Net logs group 0's rate) and
        the encoder (``lr_factor`` = the factor); the scheduler sets each group's rate to its
        ``lr_factor`` times the schedule's."""
        parameters = self.trainable_parameters()
        if not self.encoder_lr_factor > 0:
            raise ValueError(f"{type(self).__name__}: encoder_lr_factor must be > 0, got {self.encoder_lr_factor!r}")
        if self.encoder_lr_factor == 1:
            return [{"params": parameters, "lr_factor": 1.0}]
        encoder = {id(p) for p in self.unwrapped_network().encoder.parameters()}
        groups = [{"params": [p for p in parameters if id(p) not in encoder], "lr_factor": 1.0},
                  {"params": [p for p in parameters if id(p) in encoder], "lr_factor": float(self.encoder_lr_factor)}]
        self.print_to_log_file(f"encoder learning rate x {self.encoder_lr_factor:g} (encoder_lr_factor): "
                               f"{len(groups[1]['params'])} encoder tensors, {len(groups[0]['params'])} others")
        return groups

    def configure_optimizers(self):
        self.check_transfer_options()
        if self.encoder_frozen_at(0):      # before nnU-Net wraps the network in DDP
            self.set_encoder_frozen(True)
        groups = self.parameter_groups()
        if self.optimizer_name == "sgd":
            groups = [{**g, "lr": self.sgd_lr * g["lr_factor"]} for g in groups]
            optimizer = torch.optim.SGD(groups, self.sgd_lr, weight_decay=self.sgd_weight_decay, momentum=0.99,
                                        nesterov=True)
            return optimizer, WarmupPolyLRScheduler(optimizer, self.sgd_lr, self.num_epochs, self.warmup_epochs)
        groups = [{**g, "lr": self.lr_init * g["lr_factor"]} for g in groups]
        optimizer = torch.optim.RAdam(groups, lr=self.lr_init, weight_decay=self.weight_decay)
        scheduler = WarmupCosineLRScheduler(optimizer, self.lr_init, self.lr_multiplier, self.num_epochs,
                                            self.warmup_epochs, restart_epoch=max(self.frozen_encoder_epochs, 0))
        self.log_lines(scheduler.warmup_notes())
        return optimizer, scheduler

    def check_transfer_options(self) -> None:
        name = type(self).__name__
        if self.optimizer_name not in ("radam", "sgd"):
            raise ValueError(f"{name}: optimizer_name must be 'radam' or 'sgd', got {self.optimizer_name!r}")
        if not isinstance(self.frozen_encoder_epochs, int) or self.frozen_encoder_epochs < -1:
            raise ValueError(f"{name}: frozen_encoder_epochs must be a whole number of epochs >= 0, or -1 (frozen "
                             f"throughout), got {self.frozen_encoder_epochs!r}")
        if self.frozen_encoder_epochs >= self.num_epochs:
            raise ValueError(f"{name}: frozen_encoder_epochs = {self.frozen_encoder_epochs} leaves none of the "
                             f"{self.num_epochs} epochs to train the encoder: use -1 to freeze it throughout")
        if self.optimizer_name == "sgd" and self.frozen_encoder_epochs > 0:
            raise ValueError(f"{name}: frozen_encoder_epochs > 0 (a second warm-up after unfreezing) is defined for "
                             f"the RAdam schedule only, not with optimizer_name 'sgd'")

    def encoder_frozen_at(self, epoch: int) -> bool:
        return self.frozen_encoder_epochs == -1 or epoch < self.frozen_encoder_epochs

    def set_encoder_frozen(self, frozen: bool) -> None:
        """Encoder parameters without (frozen) or with gradients. Unfreezing under DDP wraps the
        network again, since DDP's reducer knows only the parameters that needed gradients when it
        was built."""
        from torch.nn.parallel import DistributedDataParallel

        for parameter in self.unwrapped_network().encoder.parameters():
            parameter.requires_grad_(not frozen)
        if not frozen and isinstance(self.network, DistributedDataParallel):
            self.network = DistributedDataParallel(self.network.module,
                                                   device_ids=[self.local_rank] if self.device.type == "cuda" else None)
        self.print_to_log_file(f"encoder {'frozen' if frozen else 'trained'} from epoch {self.current_epoch} "
                               f"(frozen_encoder_epochs = {self.frozen_encoder_epochs})")

    def encoder_is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.unwrapped_network().encoder.parameters())

    def _build_loss(self):
        if self.use_dice_ce:
            return super()._build_loss()
        if self.label_manager.has_regions:
            raise ValueError(f"{self.__class__.__name__} uses softmax cross-entropy; region-based datasets need "
                             f"SPConFinetuneTrainer_DiceCE")
        loss = RobustCrossEntropyLoss(ignore_index=self.label_manager.ignore_label
                                      if self.label_manager.has_ignore_label else -100)
        if self.enable_deep_supervision:
            scales = self._get_deep_supervision_scales()
            weights = np.array([1 / (2 ** i) for i in range(len(scales))])
            # the lowest resolution is left out, as nnU-Net does; under DDP (uncompiled) nnU-Net gives it
            # 1e-6 instead, since DDP stops on a parameter without gradient: the same here
            weights[-1] = 1e-6 if self.is_ddp and not self._do_i_compile() else 0
            loss = DeepSupervisionWrapper(loss, weights / weights.sum())
        return loss

    def on_train_epoch_start(self):
        if self.frozen_encoder_epochs and self.encoder_frozen_at(self.current_epoch) != self.encoder_is_frozen():
            self.set_encoder_frozen(self.encoder_frozen_at(self.current_epoch))     # also after --c
        super().on_train_epoch_start()
        self.print_to_log_file(f"Current learning rate (exact): {self.optimizer.param_groups[0]['lr']:.3e}")


class SPConBaselineTrainer(SPConFinetuneTrainer):
    """The few-label baseline: ``SPConFinetuneTrainer`` under its own name, so that its results
    folder does not collide with the fine-tuned model's (run it without -pretrained_weights).
    Same optimiser, schedule and loss, and one learning rate for the whole network: nothing is
    transferred, so there is no pre-trained encoder to hold back (a scratch encoder at a tenth of the
    rate would be a weaker baseline than the one nnU-Net users have)."""
    encoder_lr_factor = 1.0


class SPConFinetuneTrainer_paperRecipe(SPConFinetuneTrainer):
    """The paper's fine-tuning recipe: one learning rate for every parameter (the default before
    issue #19's diagnosis chose a tenth of it for the pre-trained encoder on validation scans)."""
    encoder_lr_factor = 1.0


class SPConFinetuneTrainer_nnUNetRecipe(SPConFinetuneTrainer):
    """Fine-tuning an SP-Con checkpoint with nnU-Net's recipe: SGD (lr 1e-2, momentum 0.99, Nesterov,
    weight decay 3e-5), nnU-Net's Dice + CE with deep supervision, 1000 x 250 iterations at the plan's
    batch, on nnU-Net 2.8's schedule for pre-trained weights (``nnUNetTrainer_warmup``: the rate
    rises linearly over 50 epochs, then poly decay), the pre-trained encoder at ``encoder_lr_factor``
    (0.1) x the rate, as in ``SPConFinetuneTrainer``. A schedule (``SPCL_SCHEDULE``) sets its length
    and warm-up like every fine-tuning's. Method ``spcon-nnunet`` of ``spcl_nnunet experiment``."""
    optimizer_name = "sgd"
    use_dice_ce = True
    warmup_epochs = 50                 # nnUNetTrainer_warmup's warmup_duration_whole_net
    num_epochs_default = 1000
    iterations_per_epoch = 250
    weight_decay_default = 3e-5

    def baseline_trainer(self) -> str:
        return "SPConBaselineTrainer_nnUNetRecipe"


class SPConBaselineTrainer_nnUNetRecipe(SPConTrainerBase):
    """nnU-Net's own baseline, ``nnUNetTrainer``, unchanged (SGD lr 1e-2 with poly decay, Dice + CE,
    deep supervision, 1000 x 250 iterations at the plan's batch) on the plugin's strict folds, under
    its own name so that a schedule (``SPCL_SCHEDULE``, role ``finetune``) can set its length. Method
    ``nnunet`` of ``spcl_nnunet experiment``: the baseline nnU-Net users already have."""
    schedule_role = "finetune"

    def initialize(self):
        self.load_spcon_sidecars()
        super().initialize()


class SPConFinetuneTrainer_ACDC(SPConFinetuneTrainer):
    """ACDC in the paper: 75 epochs, lr_init 1e-7. The rest is ``SPConFinetuneTrainer``'s default recipe,
    not the paper's: the pre-trained encoder at 0.1 x the rate (``encoder_lr_factor``; the paper used one
    rate, ``SPConFinetuneTrainer_paperRecipe``)."""
    num_epochs_default = 75


class SPConFinetuneTrainer_PROMISE12(SPConFinetuneTrainer):
    """PROMISE12 in the paper: lr_init 5e-7. The rest is ``SPConFinetuneTrainer``'s default recipe, not the
    paper's: the pre-trained encoder at 0.1 x the rate (``encoder_lr_factor``; the paper used one rate)."""
    lr_init = 5e-7


class SPConFinetuneTrainer_MMWHS(SPConFinetuneTrainer):
    """MMWHS in the paper: lr_init 2e-6. The rest is ``SPConFinetuneTrainer``'s default recipe, not the
    paper's: the pre-trained encoder at 0.1 x the rate (``encoder_lr_factor``; the paper used one rate)."""
    lr_init = 2e-6


class SPConFinetuneTrainer_DiceCE(SPConFinetuneTrainer):
    """nnU-Net's Dice + CE loss instead of the paper's cross-entropy, in ``SPConFinetuneTrainer``'s default
    recipe: the pre-trained encoder at 0.1 x the rate (``encoder_lr_factor``)."""
    use_dice_ce = True

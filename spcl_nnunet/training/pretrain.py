"""Self-paced contrastive pre-training of nnU-Net's 2d encoder (paper, Algorithm 1).

The encoder's bottleneck features go through the projector g (avg-pool -> Linear(C,256) ->
LeakyReLU -> Linear(256,256)); the loss is L = sum_k lambda_k L_sp^k over the meta-labels in
``meta_label_weights``, with gamma following ``gamma_at`` once per epoch. The checkpoint holds
the whole network (the decoder untouched) so that nnU-Net's ``-pretrained_weights`` accepts it;
the projector and the schedule state live under their own keys.
"""

from __future__ import annotations

import time
from os.path import join

import numpy as np
import torch

from spcl_nnunet.training.base import SPConTrainerBase
from spcl_nnunet.training.contrastive import MetaLabelContrast
from spcl_nnunet.training.dataloading import wrap_in_augmenter
from spcl_nnunet.training.lr_schedule import WarmupCosineLRScheduler
from spcl_nnunet.training.progress import Panel, install_local_logger

# nnU-Net's first panel shows L_sp (train/val), which starts at 0 (every weight is 0 at gamma_start)
# and rises as gamma admits pairs; the unweighted L_con of the same batches shows the learning
PRETRAIN_LOG_PANELS = [(("contrastive_loss", "mean_positive_weight"), ("gamma",)),
                       (("unweighted_loss_train", "unweighted_loss_val"), ())]


class PretrainTrainerBase(SPConTrainerBase):
    """nnU-Net's training loop for a pre-training without segmentation output.

    A subclass names what the optimizer trains (``pretrain_parameters``, built in ``make_heads``
    when it needs modules of its own), the loaders (``pretrain_loader``) and the loss of one batch
    (``pretrain_loss``: the loss and the values to log); ``train_log`` / ``val_log`` map logger
    keys to those values. The checkpoint holds the whole network so that nnU-Net's
    ``-pretrained_weights`` accepts it; there is no final validation."""

    schedule_role = "pretrain"      # which SPCL_SCHEDULE overrides apply (training/schedules.py)
    lr_init: float = 5e-5           # warm-up from lr_init to lr_multiplier * lr_init, then cosine
    lr_multiplier: float = 400.0
    warmup_epochs: int = 10
    num_epochs_default = 80         # paper: 80 (ACDC 120), 200 iterations per epoch, RAdam, wd 1e-5
    iterations_per_epoch = 200
    val_iterations_per_epoch = 10
    weight_decay_default = 1e-5
    log_panels: list[Panel] = []
    train_log: dict[str, str] = {}  # logger key -> value of pretrain_loss, averaged over the epoch
    val_log: dict[str, str] = {}
    pool_name = "pre-training pool"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = self.lr_init * self.lr_multiplier
        self.enable_deep_supervision = False
        install_local_logger(self.logger, self.log_panels, with_dice=False)

    # ------------------------------------------------------------------ what subclasses give
    def make_heads(self) -> None:
        """Build the loss's own modules (before the optimizer is made)."""

    def pretrain_parameters(self) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def pretrain_modules(self) -> list[torch.nn.Module]:
        """Modules put in train mode for training epochs and eval mode for validation."""
        raise NotImplementedError

    def pretrain_loader(self, keys: list[str], transforms):
        raise NotImplementedError

    def pretrain_loss(self, batch: dict, training: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss, values to log) of one batch; ``training``: a training step (False: validation)."""
        raise NotImplementedError

    def after_pretrain_step(self) -> None:
        pass

    # ------------------------------------------------------------------ set-up
    def configure_optimizers(self):
        self.make_heads()
        optimizer = torch.optim.RAdam(self.pretrain_parameters(), lr=self.lr_init, weight_decay=self.weight_decay)
        scheduler = WarmupCosineLRScheduler(optimizer, self.lr_init, self.lr_multiplier, self.num_epochs,
                                            self.warmup_epochs)
        self.log_lines(scheduler.warmup_notes())
        return optimizer, scheduler

    def _build_loss(self):
        return None  # the loss is computed in train_step (pretrain_loss)

    def initialize(self):
        self.load_spcon_sidecars()
        super().initialize()

    def get_dataloaders(self):
        self.require_2d()
        pool, val_keys = self.training_pool()
        self.print_to_log_file(f"{self.pool_name}: {len(pool)} training scans (validation scans excluded)")
        transforms = self.single_target_training_transforms()
        pin = self.device.type == "cuda"
        dl_tr = wrap_in_augmenter(self.pretrain_loader(pool, transforms), pin)
        dl_val = wrap_in_augmenter(self.pretrain_loader(val_keys, transforms), pin, validation=True)
        next(dl_tr)
        next(dl_val)
        return dl_tr, dl_val

    # ------------------------------------------------------------------ nnU-Net loop hooks
    def on_train_epoch_start(self):
        for module in self.pretrain_modules():
            module.train()
        self.lr_scheduler.step(self.current_epoch)
        self.print_to_log_file("")
        self.print_to_log_file(f"Epoch {self.current_epoch}")
        self.print_to_log_file(f"Current learning rate: {self.optimizer.param_groups[0]['lr']:.3e}")
        self.logger.log("lrs", self.optimizer.param_groups[0]["lr"], self.current_epoch)

    def train_step(self, batch: dict) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        loss, values = self.pretrain_loss(batch, training=True)
        # the trained modules are called outside DDP's forward, so its reducer never arms: their
        # gradients are averaged over the processes here (identity with one process)
        params = self.pretrain_parameters()
        self.backward_and_step(loss, params, outside_ddp=params)
        self.after_pretrain_step()
        return {"loss": loss.detach().cpu().numpy(), **values}

    def _log_means(self, outputs: list[dict], keys: dict[str, str]) -> None:
        for logger_key, value_key in keys.items():
            self.logger.log(logger_key, float(np.mean([o[value_key] for o in outputs])), self.current_epoch)

    def on_train_epoch_end(self, train_outputs: list[dict]):
        self.logger.log("train_losses", float(np.mean([o["loss"] for o in train_outputs])), self.current_epoch)
        self._log_means(train_outputs, self.train_log)

    def on_validation_epoch_start(self):
        for module in self.pretrain_modules():
            module.eval()

    def validation_step(self, batch: dict) -> dict:
        loss, values = self.pretrain_loss(batch, training=False)
        return {"loss": loss.detach().cpu().numpy(), **values}

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        self.logger.log("val_losses", float(np.mean([o["loss"] for o in val_outputs])), self.current_epoch)
        self._log_means(val_outputs, self.val_log)

    def epoch_summary(self) -> list[str]:
        """Lines printed to the log at the end of each epoch."""
        get = self.logger.get_value
        extra = ", ".join(f"{k} {get(k, -1):.4g}" for k in (*self.train_log, *self.val_log))
        return [f"train loss {get('train_losses', -1):.4f}, val loss {get('val_losses', -1):.4f}"
                + (f"; {extra}" if extra else "")]

    def on_epoch_end(self):
        self.schedule_latest_checkpoint()
        self.logger.log("epoch_end_timestamps", time.time(), self.current_epoch)
        get = self.logger.get_value
        for line in self.epoch_summary():
            self.print_to_log_file(line)
        self.print_to_log_file(f"Epoch time: {get('epoch_end_timestamps', -1) - get('epoch_start_timestamps', -1):.2f} s")
        if (self.current_epoch + 1) % self.save_every == 0 and self.current_epoch != self.num_epochs - 1:
            self.save_checkpoint(join(self.output_folder, "checkpoint_latest.pth"))
        if self.plots_progress_this_epoch():
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("Pre-training has no segmentation head to validate: fine-tune the checkpoint with "
                               "'nnUNetv2_train DATASET 2d FOLD -tr SPConFinetuneTrainer -pretrained_weights "
                               f"{join(self.output_folder, 'checkpoint_final.pth')}'")


class SPConPretrainTrainer(MetaLabelContrast, PretrainTrainerBase):
    """SP-Con pre-training on the slice-position meta-label (L_sp^1), linear (soft) weights.

    Meta-label weights, gamma schedule, batch shape: class attributes of ``MetaLabelContrast``."""

    log_panels = PRETRAIN_LOG_PANELS
    train_log = {"contrastive_loss": "loss", "mean_positive_weight": "mean_positive_weight",
                 "unweighted_loss_train": "unweighted_loss"}
    val_log = {"unweighted_loss_val": "unweighted_loss"}

    # ------------------------------------------------------------------ set-up
    def make_heads(self) -> None:
        self.make_projector()

    def pretrain_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.unwrapped_network().encoder.parameters()) + list(self.projector.parameters())

    def pretrain_modules(self) -> list[torch.nn.Module]:
        return [self.unwrapped_network().encoder, self.projector]

    def initialize(self):
        self.load_spcon_sidecars()
        self.check_meta_label_names()
        super().initialize()

    def pretrain_loader(self, keys: list[str], transforms):
        return self.contrastive_loader(keys, transforms)

    # ------------------------------------------------------------------ loss
    def contrastive_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]],
                                                     torch.Tensor, dict]:
        """(L_sp, its parts, the unweighted L_con of the same projections, the global batch) of one
        batch; under DDP the loss is that of every process's batch together (``global_contrast_batch``)."""
        data = batch["data"].to(self.device, non_blocking=True)
        with self.autocast_context():
            z = self.projector(self.encode_for_projector(data)[1])
        features, global_batch = self.global_contrast_batch(z, batch)
        loss, parts = self.meta_label_loss(features, global_batch)
        return loss, parts, self.unweighted_meta_label_loss(features, global_batch), global_batch

    def pretrain_loss(self, batch: dict, training: bool) -> tuple[torch.Tensor, dict[str, float]]:
        loss, parts, unweighted, global_batch = self.contrastive_loss(batch)
        values = {"unweighted_loss": float(unweighted)}
        if training:
            values["mean_positive_weight"] = self.primary_positive_weight(global_batch, parts)
            if getattr(self, "_heatmap_pending", False):
                self._heatmap_pending = False
                self.save_heatmap(global_batch, parts)
        return loss, values

    # ------------------------------------------------------------------ nnU-Net loop hooks
    def on_train_epoch_start(self):
        self.update_gamma()
        super().on_train_epoch_start()
        self.print_to_log_file(f"gamma: {self.current_gamma:.4g}")
        self.logger.log("gamma", self.current_gamma, self.current_epoch)
        self._heatmap_pending = self.heatmap_due()

    def epoch_summary(self) -> list[str]:
        get = self.logger.get_value
        return [f"train contrastive loss {get('train_losses', -1):.4f}, "
                f"val contrastive loss {get('val_losses', -1):.4f}, "
                f"mean positive weight {get('mean_positive_weight', -1):.3f}",
                f"unweighted contrastive loss (gamma = inf): train "
                f"{get('unweighted_loss_train', -1):.4f}, val {get('unweighted_loss_val', -1):.4f}"]

    # ------------------------------------------------------------------ checkpoints
    def extra_checkpoint_state(self) -> dict:
        return self.contrastive_checkpoint_state()

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        self.load_contrastive_checkpoint_state(checkpoint)


# ---------------------------------------------------------------------- variants
class SPConPretrainTrainer_hard(SPConPretrainTrainer):
    """Hard regulariser: w_ij = 1[l_ij < gamma]."""
    weight_mode = "hard"


class SPConPretrainTrainer_patient(SPConPretrainTrainer):
    """L_sp^2: patient identity as the only meta-label."""
    meta_label_weights = {"patient": 1.0}


class SPConPretrainTrainer_phase(SPConPretrainTrainer):
    """L_sp^3: cardiac phase (ACDC) as the only meta-label."""
    meta_label_weights = {"phase": 1.0}


class SPConPretrainTrainer_posPatient(SPConPretrainTrainer):
    """Position + patient, lambda = (1.0, 0.1): the paper's setting for PROMISE12 and MMWHS."""
    meta_label_weights = {"position": 1.0, "patient": 0.1}


class SPConPretrainTrainer_posPatientPhase(SPConPretrainTrainer):
    """Position + patient + phase (ACDC), lambda = (1.0, 0.01, 0.001): best of supplementary Table 5."""
    meta_label_weights = {"position": 1.0, "patient": 0.01, "phase": 0.001}


class ContrastivePretrainTrainer(SPConPretrainTrainer):
    """Plain supervised contrastive loss L_con on slice position (gamma = inf, Chaitanya et al.)."""
    gamma_end = float("inf")


class SimCLRPretrainTrainer(SPConPretrainTrainer):
    """Unsupervised contrastive pre-training (SimCLR): each image is its own class, gamma = inf."""
    simclr = True
    gamma_end = float("inf")


class SimCLRSPPretrainTrainer(SPConPretrainTrainer):
    """Unsupervised contrastive loss with self-paced weights (supplementary Table 3, 'Unsup. Con. + SP')."""
    simclr = True


class SPConPretrainTrainer_ACDC(SPConPretrainTrainer):
    """ACDC's pre-training length in the paper: 120 epochs."""
    num_epochs_default = 120

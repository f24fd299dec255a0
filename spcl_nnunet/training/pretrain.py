"""Self-paced contrastive pre-training of nnU-Net's 2d encoder (paper, Algorithm 1).

The encoder's bottleneck features go through the projector g (avg-pool -> Linear(C,256) ->
LeakyReLU -> Linear(256,256)); the loss is L = sum_k lambda_k L_sp^k over the meta-labels in
``meta_label_weights``, with gamma following ``gamma_at`` once per epoch. The checkpoint holds
the whole network (the decoder untouched) so that nnU-Net's ``-pretrained_weights`` accepts it;
the projector and the schedule state live under their own keys.
"""

from __future__ import annotations

from os.path import join

import numpy as np
import torch
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast

from spcl_nnunet.heads import ProjectionHead
from spcl_nnunet.heatmap import save_weight_heatmap
from spcl_nnunet.losses import combined_self_paced_supcon, mean_positive_weight
from spcl_nnunet.pacing import gamma_at
from spcl_nnunet.slices import partition_counts, partitions_for_cases
from spcl_nnunet.training.base import SPConTrainerBase
from spcl_nnunet.training.dataloading import ContrastiveDataLoader, case_slice_counts, wrap_in_augmenter
from spcl_nnunet.training.lr_schedule import WarmupCosineLRScheduler
from spcl_nnunet.training.progress import install_local_logger

PRETRAIN_LOG_KEYS = ("contrastive_loss", "mean_positive_weight", "gamma")


class SPConPretrainTrainer(SPConTrainerBase):
    """SP-Con pre-training on the slice-position meta-label (L_sp^1), linear (soft) weights."""

    # meta-label -> lambda_k (main paper Eq. 14); "position" is the slice partition, the other
    # names are case-level keys of meta_labels.json
    meta_label_weights: dict[str, float] = {"position": 1.0}
    simclr: bool = False            # True: each image is its own class (no meta-labels)
    weight_mode: str = "soft"       # "soft" (linear regulariser) or "hard"
    gamma_start: float = 2.0        # supplementary Table 4
    gamma_end: float = 50.0
    gamma_power: float = 0.5
    correct_grad: bool = False
    temperature: float = 0.07
    num_views: int = 2
    one_slice_per_partition: bool = True
    num_scans_per_batch: int | None = None   # None: plan's batch size // slice_partitions
    lr_init: float = 5e-5           # warm-up from lr_init to lr_multiplier * lr_init, then cosine
    lr_multiplier: float = 400.0
    warmup_epochs: int = 10
    heatmap_every: int = 10         # epochs between heat-maps of the self-paced weights
    num_epochs_default = 80         # paper: 80 (ACDC 120), 200 iterations per epoch, RAdam, wd 1e-5
    iterations_per_epoch = 200
    val_iterations_per_epoch = 10
    weight_decay_default = 1e-5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = self.lr_init * self.lr_multiplier
        self.enable_deep_supervision = False
        self.projector: ProjectionHead | None = None
        self.current_gamma = float("nan")
        self._epoch_values: dict[str, list[float]] = {}
        install_local_logger(self.logger, PRETRAIN_LOG_KEYS, with_dice=False)

    # ------------------------------------------------------------------ set-up
    @property
    def primary_meta_label(self) -> str:
        """The meta-label whose weights are logged and drawn (largest lambda)."""
        return "instance" if self.simclr else max(self.meta_label_weights, key=self.meta_label_weights.get)

    def bottleneck_channels(self) -> int:
        return int(self.unwrapped_network().encoder.output_channels[-1])

    def configure_optimizers(self):
        self.projector = ProjectionHead(self.bottleneck_channels()).to(self.device)
        params = list(self.unwrapped_network().encoder.parameters()) + list(self.projector.parameters())
        optimizer = torch.optim.RAdam(params, lr=self.lr_init, weight_decay=self.weight_decay)
        scheduler = WarmupCosineLRScheduler(optimizer, self.lr_init, self.lr_multiplier, self.num_epochs,
                                            self.warmup_epochs)
        return optimizer, scheduler

    def _build_loss(self):
        return None  # the contrastive loss is computed in train_step (it needs meta-labels and gamma)

    def initialize(self):
        self.load_spcon_sidecars()
        unknown = set(self.meta_label_weights) - {"position"} - set(self.meta_labels.keys())
        if unknown and not self.simclr:
            raise ValueError(f"{self.__class__.__name__} uses meta-label(s) {sorted(unknown)} that "
                             f"meta_labels.json does not define (it has {self.meta_labels.keys()} + 'position')")
        super().initialize()

    def pretraining_pool(self) -> tuple[list[str], list[str]]:
        """Every training image (labeled, unlabeled, label-less) but never validation images.
        Test images are not in the preprocessed training set at all."""
        _, val_keys = self.do_split()
        identifiers = self.dataset_class.get_identifiers(self.preprocessed_dataset_folder)
        pool = sorted(set(identifiers) - set(val_keys))
        return pool, list(val_keys)

    def _contrastive_loader(self, keys: list[str], transforms) -> ContrastiveDataLoader:
        dataset = self.dataset_class(self.preprocessed_dataset_folder, keys)
        counts, properties = case_slice_counts(dataset)
        partitions = self.meta_labels.slice_partitions
        slice_parts = partitions_for_cases(counts, properties, partitions)
        case_keys = [] if self.simclr else [k for k in self.meta_label_weights if k != "position"]
        case_codes = {k: self.meta_labels.encode(k, keys) for k in case_keys}
        num_scans = self.num_scans_per_batch or max(1, self.batch_size // partitions)
        self.print_to_log_file(f"contrastive loader: {len(keys)} scans, {sum(counts.values())} slices, "
                               f"slices per partition {partition_counts(slice_parts.values(), partitions).tolist()}, "
                               f"{num_scans} scans x {partitions} slices x {self.num_views} views per batch")
        _, do_dummy_2d, initial_patch_size, _ = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return ContrastiveDataLoader(dataset, num_scans, slice_parts, partitions, case_codes, initial_patch_size,
                                     self.configuration_manager.patch_size, self.label_manager, transforms,
                                     self.num_views, self.one_slice_per_partition)

    def get_dataloaders(self):
        if len(self.configuration_manager.patch_size) != 2:
            raise ValueError(f"{self.__class__.__name__} works on nnU-Net's 2d configuration, got "
                             f"'{self.configuration_name}' with patch size {self.configuration_manager.patch_size}")
        pool, val_keys = self.pretraining_pool()
        self.print_to_log_file(f"pre-training pool: {len(pool)} training scans (validation scans excluded)")
        rotation, do_dummy_2d, _, mirror_axes = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        transforms = self.get_training_transforms(
            self.configuration_manager.patch_size, rotation, None, mirror_axes, do_dummy_2d,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm,
            is_cascaded=False, foreground_labels=self.label_manager.foreground_labels,
            regions=self.label_manager.foreground_regions if self.label_manager.has_regions else None,
            ignore_label=self.label_manager.ignore_label)
        pin = self.device.type == "cuda"
        dl_tr = wrap_in_augmenter(self._contrastive_loader(pool, transforms), pin)
        dl_val = wrap_in_augmenter(self._contrastive_loader(val_keys, transforms), pin, validation=True)
        next(dl_tr)
        next(dl_val)
        return dl_tr, dl_val

    # ------------------------------------------------------------------ loss
    def contrastive_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        data = batch["data"].to(self.device, non_blocking=True)
        n = data.shape[0] // self.num_views
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            bottleneck = self.unwrapped_network().encoder(data)[-1]
            z = self.projector(bottleneck)
        features = z.view(self.num_views, n, -1).transpose(0, 1)  # (N, V, D)
        if self.simclr:
            labels, lambdas = {"instance": None}, {"instance": 1.0}
        else:
            labels = {k: batch["meta"][k].to(self.device) for k in self.meta_label_weights}
            lambdas = self.meta_label_weights
        return combined_self_paced_supcon(features, labels, lambdas, temperature=self.temperature,
                                          gamma=self.current_gamma, mode=self.weight_mode,
                                          correct_grad=self.correct_grad)

    def _step_values(self, batch: dict, loss: torch.Tensor, parts: dict) -> dict:
        key = self.primary_meta_label
        labels = None if self.simclr else batch["meta"][key]
        weights = parts[key][1]
        return {"loss": loss.detach().cpu().numpy(),
                "mean_positive_weight": mean_positive_weight(weights.cpu(), labels, self.num_views)}

    # ------------------------------------------------------------------ nnU-Net loop hooks
    def on_train_epoch_start(self):
        self.current_gamma = gamma_at(self.current_epoch, self.num_epochs, self.gamma_start, self.gamma_end,
                                      self.gamma_power)
        self.unwrapped_network().encoder.train()
        self.projector.train()
        self.lr_scheduler.step(self.current_epoch)
        self.print_to_log_file("")
        self.print_to_log_file(f"Epoch {self.current_epoch}")
        self.print_to_log_file(f"Current learning rate: {self.optimizer.param_groups[0]['lr']:.3e}, "
                               f"gamma: {self.current_gamma:.4g}")
        self.logger.log("lrs", self.optimizer.param_groups[0]["lr"], self.current_epoch)
        self.logger.log("gamma", self.current_gamma, self.current_epoch)
        self._heatmap_pending = self.heatmap_every > 0 and self.current_epoch % self.heatmap_every == 0

    def train_step(self, batch: dict) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = self.contrastive_loss(batch)
        params = list(self.unwrapped_network().encoder.parameters()) + list(self.projector.parameters())
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 12)
            self.optimizer.step()
        if getattr(self, "_heatmap_pending", False):
            self._heatmap_pending = False
            self.save_heatmap(batch, parts)
        return self._step_values(batch, loss, parts)

    def save_heatmap(self, batch: dict, parts: dict) -> None:
        if self.local_rank != 0:
            return
        key = self.primary_meta_label
        n = len(batch["keys"])
        positions = batch["meta"]["position"].tolist() if "meta" in batch else [0] * n
        path = join(self.output_folder, "self_paced_weights", f"epoch_{self.current_epoch:04d}.png")
        save_weight_heatmap(parts[key][1].cpu().numpy(), positions, batch["keys"], self.num_views, path,
                            f"self-paced weights ({key}), epoch {self.current_epoch}, gamma {self.current_gamma:.3g}")

    def on_train_epoch_end(self, train_outputs: list[dict]):
        loss = float(np.mean([o["loss"] for o in train_outputs]))
        self.logger.log("train_losses", loss, self.current_epoch)
        self.logger.log("contrastive_loss", loss, self.current_epoch)
        self.logger.log("mean_positive_weight",
                        float(np.mean([o["mean_positive_weight"] for o in train_outputs])), self.current_epoch)

    def on_validation_epoch_start(self):
        self.unwrapped_network().encoder.eval()
        self.projector.eval()

    def validation_step(self, batch: dict) -> dict:
        loss, _ = self.contrastive_loss(batch)
        return {"loss": loss.detach().cpu().numpy()}

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        self.logger.log("val_losses", float(np.mean([o["loss"] for o in val_outputs])), self.current_epoch)

    def on_epoch_end(self):
        self.logger.log("epoch_end_timestamps", __import__("time").time(), self.current_epoch)
        get = self.logger.get_value
        self.print_to_log_file(f"train contrastive loss {get('train_losses', -1):.4f}, "
                               f"val contrastive loss {get('val_losses', -1):.4f}, "
                               f"mean positive weight {get('mean_positive_weight', -1):.3f}")
        self.print_to_log_file(f"Epoch time: {get('epoch_end_timestamps', -1) - get('epoch_start_timestamps', -1):.2f} s")
        if (self.current_epoch + 1) % self.save_every == 0 and self.current_epoch != self.num_epochs - 1:
            self.save_checkpoint(join(self.output_folder, "checkpoint_latest.pth"))
        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("Pre-training has no segmentation head to validate: fine-tune the checkpoint with "
                               "'nnUNetv2_train DATASET 2d FOLD -tr SPConFinetuneTrainer -pretrained_weights "
                               f"{join(self.output_folder, 'checkpoint_final.pth')}'")

    # ------------------------------------------------------------------ checkpoints
    def extra_checkpoint_state(self) -> dict:
        return {"projector_state": self.projector.state_dict(),
                "spcon_state": {"gamma": self.current_gamma, "gamma_start": self.gamma_start,
                                "gamma_end": self.gamma_end, "gamma_power": self.gamma_power,
                                "meta_label_weights": dict(self.meta_label_weights), "simclr": self.simclr,
                                "weight_mode": self.weight_mode}}

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        if "projector_state" not in checkpoint:
            raise ValueError(f"{self.__class__.__name__} cannot resume from a checkpoint without 'projector_state' "
                             f"(written by trainer {checkpoint.get('trainer_name')!r})")
        self.projector.load_state_dict(checkpoint["projector_state"])
        self.current_gamma = float(checkpoint["spcon_state"]["gamma"])


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


class SPConPretrainTrainer_smoke(SPConPretrainTrainer):
    """2 epochs x 4 iterations, 2 scans per batch: checks that everything runs."""

    num_scans_per_batch = 2
    heatmap_every = 1
    num_epochs_default = 2
    iterations_per_epoch = 4
    val_iterations_per_epoch = 1
    checkpoint_every = 1


class SPConPretrainTrainer_demo(SPConPretrainTrainer):
    """CPU-sized SP-Con pre-training for ``spcl_nnunet demo``: 12 epochs x 25 iterations of
    4 scans x 3 slices x 2 views, RAdam peaking at 1e-3 after a 2-epoch warm-up."""
    num_scans_per_batch = 4
    num_epochs_default = 12
    iterations_per_epoch = 25
    val_iterations_per_epoch = 2
    heatmap_every = 4
    lr_init = 1e-4
    lr_multiplier = 10.0
    warmup_epochs = 2


class SPConPretrainTrainer_quality(SPConPretrainTrainer_demo):
    """The quality run's pre-training (benchmarks/quality_run.py): twice the demo's iterations."""
    num_epochs_default = 24
    warmup_epochs = 3
    heatmap_every = 6


class SPConPretrainTrainer_ACDC(SPConPretrainTrainer):
    """ACDC's pre-training length in the paper: 120 epochs."""
    num_epochs_default = 120

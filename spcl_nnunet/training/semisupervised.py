"""Semi-supervised training inside nnU-Net: Mean Teacher, SP-Con + Mean Teacher, entropy minimisation,
FixMatch-style pseudo-labels.

    L = L_sup + lambda_reg L_MT + lambda_sp L_sp          (main paper Eq. 15)

L_sup is the fine-tuning loss (cross-entropy with nnU-Net's deep supervision) on batches of the
fold's labeled scans from nnU-Net's own loader. The unlabeled terms use a second nnU-Net loader,
with nnU-Net's augmentation in its background workers, over the *unlabeled pool*: every
training image that is not a validation image of the fold (labeled scans included, label-less
images too; their placeholder labels are never used as targets). Iterations per epoch,
validation, checkpoints and inference stay nnU-Net's; inference uses the student (see
``spcl_nnunet export-teacher`` for the teacher).
"""

from __future__ import annotations

import numpy as np
import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter

from spcl_nnunet.losses.consistency import entropy_loss, random_geometric_transform, transformation_consistency_loss
from spcl_nnunet.losses.pseudo_label import (
    StrongView,
    confidence_masked_cross_entropy,
    pseudo_labels,
    random_cutmix_boxes,
)
from spcl_nnunet.contrastive.distributed import per_rank_count
from spcl_nnunet.contrastive.pacing import sigmoid_rampup
from spcl_nnunet.networks.teacher import MeanTeacher
from spcl_nnunet.training.contrastive import MetaLabelContrast
from spcl_nnunet.training.dataloading import wrap_in_augmenter
from spcl_nnunet.training.finetune import SPConFinetuneTrainer
from spcl_nnunet.training.progress import Panel, install_local_logger
from spcl_nnunet.training.strong_view import strong_intensity_transforms


def full_resolution(output) -> torch.Tensor:
    """The full-resolution logits of a network output (a list under deep supervision)."""
    return output[0] if isinstance(output, (list, tuple)) else output


class SemiSupervisedTrainer(SPConFinetuneTrainer):
    """Base class: L_sup on labeled batches + ``unlabeled_terms`` on unlabeled batches.

    Subclasses implement ``unlabeled_terms`` (and may replace ``unlabeled_loader``); a method
    whose extra term needs no unlabeled image (MixUp) sets ``uses_unlabeled_pool = False`` and
    replaces ``extra_terms``."""

    schedule_role = "semisupervised"          # SPCL_SCHEDULE: the finetune overrides, then the semisupervised ones
    unlabeled_batch_size: int | None = None   # None: unlabeled_batch_share x the labeled batch size
    unlabeled_batch_share: float = 1.0        # the unlabeled batch where unlabeled_batch_size is None
    rampup_epochs: float = 0.0                # sigmoid ramp-up exp(-5(1-t)^2) of the unlabeled weight (0: none)
    log_panels: list[Panel] = [(("supervised_loss",), ()), (("rampup_weight",), ())]
    validation_log_keys: tuple[str, ...] = ()    # panel keys logged by the validation epoch, not by train steps
    uses_unlabeled_pool: bool = True          # False: no unlabeled loader is built
    encoder_lr_factor = 1.0                   # trained from scratch: one rate, no pre-trained encoder to hold back

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.dataloader_unlabeled = None
        self.heads: list[torch.nn.Module] = []
        self.rampup_weight = float("nan")
        install_local_logger(self.logger, self.log_panels, with_dice=True)

    # ------------------------------------------------------------------ set-up
    def make_heads(self) -> list[torch.nn.Module]:
        """Build the method's modules trained with the student (projector, cluster heads); called
        before the optimizer is made. They live outside the DDP-wrapped network."""
        return []

    def configure_optimizers(self):
        self.heads = self.make_heads()
        return super().configure_optimizers()

    def heads_parameters(self) -> list[torch.nn.Parameter]:
        return [p for module in self.heads for p in module.parameters()]

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return super().trainable_parameters() + self.heads_parameters()

    def parameters_outside_ddp(self) -> list[torch.nn.Parameter]:
        """Trainable parameters outside the DDP-wrapped network (their gradients are averaged by hand)."""
        return self.heads_parameters()

    def unlabeled_batch_per_process(self) -> int:
        """``unlabeled_batch_size`` (global) split evenly over the processes; None:
        ``unlabeled_batch_share`` x the labeled batch size of this process (rounded, at least 1)."""
        if self.unlabeled_batch_size is None:
            if self.unlabeled_batch_share <= 0:
                raise ValueError(f"{self.__class__.__name__}: unlabeled_batch_share must be above 0, got "
                                 f"{self.unlabeled_batch_share!r}")
            return max(1, round(self.batch_size * self.unlabeled_batch_share))
        return per_rank_count(self.unlabeled_batch_size, "unlabeled_batch_size")

    def unlabeled_loader(self, pool: list[str]):
        """nnU-Net's 2d loader over the pool: random slices and crops (no foreground oversampling,
        labels may be placeholders), nnU-Net's training augmentation."""
        return self.image_loader(pool, self.unlabeled_batch_per_process(), self.single_target_training_transforms())

    def get_dataloaders(self):
        self.require_2d()
        dl_tr, dl_val = super().get_dataloaders()
        if not self.uses_unlabeled_pool:
            return dl_tr, dl_val
        pool, val_keys = self.training_pool()          # loads the sidecars (do_split)
        label_less = sorted(set(pool) & set(self.meta_labels.unlabeled))
        self.print_to_log_file(f"unlabeled pool: {len(pool)} training scans ({len(label_less)} without labels; "
                               f"the {len(val_keys)} validation scans excluded); unlabeled batch "
                               f"{self.unlabeled_batch_per_process()} per process, labeled {self.batch_size}")
        self.dataloader_unlabeled = wrap_in_augmenter(self.unlabeled_loader(pool), self.device.type == "cuda")
        next(self.dataloader_unlabeled)
        return dl_tr, dl_val

    def on_train_end(self):
        super().on_train_end()
        if isinstance(self.dataloader_unlabeled, NonDetMultiThreadedAugmenter):
            self.dataloader_unlabeled._finish()

    # ------------------------------------------------------------------ the step
    def unlabeled_terms(self, batch: dict, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """(weighted unlabeled loss, values to log) for one unlabeled batch; runs under autocast.
        ``labeled``: this step's labeled batch on the device (``data``, ``target``) and the student's
        full-resolution output on it (``logits``). Values may be detached tensors: they are read
        after the optimizer step (no device sync between forward and backward)."""
        raise NotImplementedError

    def extra_terms(self, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """The terms added to L_sup in this step: by default ``unlabeled_terms`` of the next unlabeled batch."""
        return self.unlabeled_terms(next(self.dataloader_unlabeled), labeled)

    def after_optimizer_step(self) -> None:
        pass

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast_context():
            output = self.network(data)
            supervised = self.loss(output, target)
            unsupervised, values = self.extra_terms({"data": data, "target": target,
                                                     "logits": full_resolution(output)})
            loss = supervised + unsupervised
        self.backward_and_step(loss, self.trainable_parameters(), outside_ddp=self.parameters_outside_ddp())
        self.after_optimizer_step()
        return {"loss": loss.detach().cpu().numpy(), "supervised_loss": float(supervised.detach()),
                **{key: float(value) for key, value in values.items()}}

    # ------------------------------------------------------------------ logging
    def epoch_values(self) -> dict[str, float]:
        """Values logged once per epoch, at its start (schedules)."""
        return {"rampup_weight": self.rampup_weight}

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.rampup_weight = sigmoid_rampup(self.current_epoch, self.rampup_epochs)
        for key, value in self.epoch_values().items():
            self.logger.log(key, value, self.current_epoch)

    def on_train_epoch_end(self, train_outputs: list[dict]):
        super().on_train_epoch_end(train_outputs)
        logged = set(self.logger.local_logger.extra_keys) - set(self.epoch_values()) - set(self.validation_log_keys)
        for key in sorted(logged):
            values = [o[key] for o in train_outputs if key in o]
            if not values:
                raise RuntimeError(f"{self.__class__.__name__}: train_step returned no {key!r} to log")
            self.logger.log(key, float(np.mean(values)), self.current_epoch)

    def on_epoch_end(self):
        get = self.logger.get_value
        parts = ", ".join(f"{k} {get(k, -1):.4g}" for k in self.logger.local_logger.extra_keys)
        self.print_to_log_file(parts)
        super().on_epoch_end()


class EntropyMinTrainer(SemiSupervisedTrainer):
    """L_sup + lambda * mean pixel entropy of the softmax on unlabeled images (supplementary Eq. 4).

    The paper selected lambda by grid search; 0.1 here (``entropy_weight``)."""

    entropy_weight: float = 0.1
    log_panels = [(("supervised_loss",), ("entropy_loss",)), (("rampup_weight",), ())]

    def unlabeled_terms(self, batch: dict, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        x = batch["data"].to(self.device, non_blocking=True)
        entropy = entropy_loss(full_resolution(self.network_without_ddp()(x)))
        return self.entropy_weight * self.rampup_weight * entropy, {"entropy_loss": entropy.detach()}


class MeanTeacherTrainer(SemiSupervisedTrainer):
    """L_sup + lambda_reg L_MT, transformation-consistent Mean Teacher (supplementary Eq. 3).

    The teacher is an EMA of the student (``ema_decay``, updated after every optimizer step,
    no gradient) and starts as a copy of the student at the start of training (after
    ``-pretrained_weights``). The student sees T(x), the teacher sees x and T is applied to its
    softmax (``spcl_nnunet.losses.consistency``); full-resolution output only."""

    ema_decay: float = 0.999
    consistency_weight: float = 0.1           # lambda_reg (ACDC; PROMISE12 and MMWHS: 0.2)
    transform_flips: bool = True
    transform_rot90: bool = True
    transform_max_rotation_deg: float = 15.0
    transform_scale_range: tuple[float, float] = (0.9, 1.1)
    log_panels = [(("supervised_loss",), ("consistency_loss",)), (("rampup_weight",), ("ema_decay",))]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.teacher: MeanTeacher | None = None

    def initialize(self):
        super().initialize()
        self.teacher = MeanTeacher(self.unwrapped_network(), self.ema_decay)
        if hasattr(self.teacher.module, "decoder") and hasattr(self.teacher.module.decoder, "deep_supervision"):
            self.teacher.module.decoder.deep_supervision = False   # the teacher only gives full-resolution targets

    def on_train_start(self):
        super().on_train_start()
        if self.teacher.steps == 0:    # a fresh run (not --c): the teacher starts from the (pre-trained) student
            self.teacher.copy_from(self.unwrapped_network())
            self.print_to_log_file(f"Mean Teacher: teacher = copy of the student, EMA decay {self.ema_decay}")
        else:
            self.print_to_log_file(f"Mean Teacher: teacher restored after {self.teacher.steps} EMA steps")

    def consistency_transform(self, x: torch.Tensor):
        return random_geometric_transform(x.shape[0], x.shape[2:], x.device, self.transform_flips,
                                          self.transform_rot90, self.transform_max_rotation_deg,
                                          self.transform_scale_range)

    def unlabeled_terms(self, batch: dict, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        x = batch["data"].to(self.device, non_blocking=True)
        transform = self.consistency_transform(x)
        teacher_logits = self.teacher.predict(x)
        student_logits = full_resolution(self.network_without_ddp()(transform.apply(x)))
        mt = transformation_consistency_loss(student_logits, teacher_logits, transform)
        return self.consistency_weight * self.rampup_weight * mt, {"consistency_loss": mt.detach()}

    def after_optimizer_step(self) -> None:
        self.teacher.update(self.unwrapped_network())

    def train_step(self, batch: dict) -> dict:
        return {**super().train_step(batch), "ema_decay": self.teacher.last_decay}

    def on_train_epoch_end(self, train_outputs: list[dict]):
        super().on_train_epoch_end(train_outputs)
        self.print_to_log_file(f"EMA steps {self.teacher.steps}, last decay {self.teacher.last_decay:.6f}")

    # ------------------------------------------------------------------ checkpoints
    def extra_checkpoint_state(self) -> dict:
        return {"teacher_state": self.teacher.state_dict()}

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        self.require_checkpoint_keys(checkpoint, "teacher_state")
        self.teacher.load_state_dict(checkpoint["teacher_state"])


class SPConMeanTeacherTrainer(MetaLabelContrast, MeanTeacherTrainer):
    """L_sup + lambda_reg L_MT + lambda_sp L_sp (main paper Eq. 15).

    The unlabeled batch is a meta-label batch (m scans x one slice per partition x two views,
    ``MetaLabelContrast``): view 1 feeds Mean Teacher (teacher on x, student on T(x)), the
    student's encoder features of T(view 1) and view 2 feed the self-paced contrastive loss
    through the projector, with gamma stepped once per epoch. Defaults: ACDC's lambda_reg 0.1,
    lambda_sp 5e-3 (``_PROMISE12`` / ``_MMWHS``: 0.2 and 2e-2). Start it from a pre-trained
    encoder with ``-pretrained_weights`` (an ``SPConPretrainTrainer`` checkpoint)."""

    contrastive_weight: float = 5e-3          # lambda_sp
    # L_sp rises from 0 as gamma admits pairs; the unweighted L_con of the same meta-label batches
    # (train) and of meta-label batches of the validation scans (val) show the learning
    log_panels = [(("supervised_loss",), ("consistency_loss",)),
                  (("contrastive_loss", "mean_positive_weight"), ("gamma",)),
                  (("unweighted_loss_train", "unweighted_loss_val"), ()),
                  (("rampup_weight",), ("ema_decay",))]
    validation_log_keys = ("unweighted_loss_val",)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.dataloader_contrastive_val = None

    def initialize(self):
        if self.num_views != 2:
            raise ValueError(f"{self.__class__.__name__} needs num_views = 2 (one view for Mean Teacher and "
                             f"contrast, one more for contrast), got {self.num_views}")
        self.load_spcon_sidecars()
        self.check_meta_label_names()
        super().initialize()

    def make_heads(self) -> list[torch.nn.Module]:
        return [self.make_projector()]

    def unlabeled_loader(self, pool: list[str]):
        return self.contrastive_loader(pool, self.single_target_training_transforms())

    def get_dataloaders(self):
        dl_tr, dl_val = super().get_dataloaders()
        _, val_keys = self.training_pool()
        loader = self.contrastive_loader(val_keys, self.single_target_training_transforms())
        self.dataloader_contrastive_val = wrap_in_augmenter(loader, self.device.type == "cuda", validation=True)
        next(self.dataloader_contrastive_val)
        return dl_tr, dl_val

    def on_train_end(self):
        super().on_train_end()
        if isinstance(self.dataloader_contrastive_val, NonDetMultiThreadedAugmenter):
            self.dataloader_contrastive_val._finish()

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's segmentation validation step, plus the unweighted contrastive loss of one
        meta-label batch of the validation scans."""
        out = super().validation_step(batch)
        meta = next(self.dataloader_contrastive_val)
        with self.autocast_context():
            z = self.projector(self.encode_for_projector(meta["data"].to(self.device, non_blocking=True))[1])
        out["unweighted_loss"] = float(self.unweighted_meta_label_loss(*self.global_contrast_batch(z, meta)))
        return out

    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        self.projector.eval()

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        unweighted = float(np.mean([o.pop("unweighted_loss") for o in val_outputs]))
        super().on_validation_epoch_end(val_outputs)
        self.logger.log("unweighted_loss_val", unweighted, self.current_epoch)

    def epoch_values(self) -> dict[str, float]:
        return {**super().epoch_values(), "gamma": self.current_gamma}

    def on_train_epoch_start(self):
        self.update_gamma()
        self.projector.train()
        self._heatmap_pending = self.heatmap_due()
        super().on_train_epoch_start()

    def unlabeled_terms(self, batch: dict, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        data = batch["data"].to(self.device, non_blocking=True)
        n = data.shape[0] // self.num_views
        x, other_view = data[:n], data[n:]
        transform = self.consistency_transform(x)
        teacher_logits = self.teacher.predict(x)
        skips, projector_input = self.encode_for_projector(torch.cat([transform.apply(x), other_view]))
        student_logits = full_resolution(self.unwrapped_network().decoder([s[:n] for s in skips]))
        mt = transformation_consistency_loss(student_logits, teacher_logits, transform)
        features, global_batch = self.global_contrast_batch(self.projector(projector_input), batch)
        sp, parts = self.meta_label_loss(features, global_batch)
        if getattr(self, "_heatmap_pending", False):
            self._heatmap_pending = False
            self.save_heatmap(global_batch, parts)
        loss = self.consistency_weight * self.rampup_weight * mt + self.contrastive_weight * sp
        return loss, {"consistency_loss": mt.detach(), "contrastive_loss": sp.detach(),
                      "unweighted_loss_train": self.unweighted_meta_label_loss(features, global_batch),
                      "mean_positive_weight": self.primary_positive_weight(global_batch, parts)}

    def extra_checkpoint_state(self) -> dict:
        return {**super().extra_checkpoint_state(), **self.contrastive_checkpoint_state()}

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        super().load_extra_checkpoint_state(checkpoint)
        self.load_contrastive_checkpoint_state(checkpoint)


class FixMatchTrainer(MeanTeacherTrainer):
    """FixMatch-style pseudo-labels (``spcl_nnunet.losses.pseudo_label``): L = L_sup + lambda_u * rampup * L_u.

    Each unlabeled batch of the pool (nnU-Net's loader and augmentation: the weak view x) is
    labeled by the EMA teacher (``pseudo_label_source = "teacher"``, ``ema_decay``) or by the
    student itself without gradient (``"student"``, FixMatch's choice); pixels whose confidence
    reaches ``confidence_threshold`` are targets for the student on the strong view S(x): Mean
    Teacher's geometric transform T, CutMix boxes from other slices of the batch, then strong
    intensity perturbations (``strong_view``). T and the boxes move the pseudo-labels with the
    pixels, so each target sits on the anatomy it was predicted for."""

    pseudo_label_sources = ("teacher", "student")
    pseudo_label_source: str = "teacher"
    confidence_threshold: float = 0.95        # tau (FixMatch: 0.95)
    unlabeled_weight: float = 1.0             # lambda_u (FixMatch: 1)
    cutmix_probability: float = 0.5           # per image (UniMatch: 0.5)
    strong_intensity: bool = True
    ema_decay = 0.999                         # issue #30's selection chose 0.999 (setting B) over 0.99
    class_balanced_pseudo_labels: bool = False   # L_u^bal (issue #30's length arm L5) instead of L_u
    unlabeled_batch_share = 0.5               # issue #30's length arm L4 (the unlabeled batch halved) won on validation
    log_panels = [(("supervised_loss",), ("pseudo_label_loss",)), (("mask_ratio", "rampup_weight"), ("ema_decay",))]

    def initialize(self):
        if self.pseudo_label_source not in self.pseudo_label_sources:
            raise ValueError(f"{self.__class__.__name__}: pseudo_label_source must be one of "
                             f"{self.pseudo_label_sources}, got {self.pseudo_label_source!r}")
        super().initialize()
        self.intensity_transforms = strong_intensity_transforms() if self.strong_intensity else None
        self.print_to_log_file(f"FixMatch: pseudo-labels from the {self.pseudo_label_source}, threshold "
                               f"{self.confidence_threshold}, weight {self.unlabeled_weight}, CutMix p "
                               f"{self.cutmix_probability}, strong intensity {self.strong_intensity}, class-balanced "
                               f"{self.class_balanced_pseudo_labels}")

    def perturb_intensity(self, x: torch.Tensor) -> torch.Tensor:
        """batchgeneratorsv2's transforms per image (C, H, W), on the CPU."""
        images = [self.intensity_transforms(image=image.clone())["image"] for image in x.detach().float().cpu()]
        return torch.stack(images).to(device=x.device, dtype=x.dtype)

    def weak_view_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.teacher.predict(x) if self.pseudo_label_source == "teacher" \
                else full_resolution(self.network_without_ddp()(x))
        return torch.softmax(logits.float(), dim=1)

    def strong_view(self, x: torch.Tensor) -> StrongView:
        return StrongView(self.consistency_transform(x),
                          random_cutmix_boxes(x.shape[0], x.shape[2:], self.cutmix_probability))

    def unlabeled_terms(self, batch: dict, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        x = batch["data"].to(self.device, non_blocking=True)
        labels, confidence = pseudo_labels(self.weak_view_probabilities(x))
        view = self.strong_view(x)
        strong = view.image(x, self.perturb_intensity if self.strong_intensity else None)
        student_logits = full_resolution(self.network_without_ddp()(strong))
        loss, kept = confidence_masked_cross_entropy(student_logits, view.move(labels), view.move(confidence),
                                                     view.valid_mask().to(x.device), self.confidence_threshold,
                                                     self.class_balanced_pseudo_labels)
        return self.unlabeled_weight * self.rampup_weight * loss, {"pseudo_label_loss": loss.detach(),
                                                                   "mask_ratio": kept}


# ---------------------------------------------------------------------- variants
class MeanTeacherTrainer_rampup(MeanTeacherTrainer):
    """Mean Teacher with the consistency weight ramped up (sigmoid) over the first 20 epochs."""
    rampup_epochs = 20


class SPConMeanTeacherTrainer_fromPretraining(SPConMeanTeacherTrainer):
    """SP-Con + Mean Teacher started from an SP-Con pre-training (``-pretrained_weights``), the
    pre-trained encoder held back at a tenth of the rate as in ``SPConFinetuneTrainer`` (a row the
    paper does not report)."""
    encoder_lr_factor = 0.1


class SPConMeanTeacherTrainer_ACDC(SPConMeanTeacherTrainer):
    """ACDC in the paper: 75 epochs; meta-labels (position, patient, phase) with lambda (1.0, 1e-3, 1e-2)."""
    num_epochs_default = 75
    meta_label_weights = {"position": 1.0, "patient": 1e-3, "phase": 1e-2}


class SPConMeanTeacherTrainer_PROMISE12(SPConMeanTeacherTrainer):
    """PROMISE12 in the paper: lambda_reg 0.2, lambda_sp 2e-2, (position, patient) = (1.0, 0.1), lr_init 5e-7."""
    consistency_weight = 0.2
    contrastive_weight = 2e-2
    meta_label_weights = {"position": 1.0, "patient": 0.1}
    lr_init = 5e-7


class SPConMeanTeacherTrainer_MMWHS(SPConMeanTeacherTrainer_PROMISE12):
    """MMWHS in the paper: as PROMISE12 with lr_init 2e-6."""
    lr_init = 2e-6


class FixMatchTrainer_student(FixMatchTrainer):
    """FixMatch's own choice: the student labels the weak view (no gradient), no teacher in the loss."""
    pseudo_label_source = "student"


class FixMatchTrainer_fromPretraining(FixMatchTrainer):
    """FixMatch-style training started from an SP-Con pre-training (``-pretrained_weights``), the
    pre-trained encoder held back at a tenth of the rate as in ``SPConFinetuneTrainer``."""
    encoder_lr_factor = 0.1

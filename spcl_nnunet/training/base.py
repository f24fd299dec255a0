"""Common ground of the SP-Con trainers: strict labeled-subset folds and meta-label sidecars."""

from __future__ import annotations

import os
from os.path import join

import torch
from nnunetv2.paths import nnUNet_raw
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch._dynamo import OptimizedModule

from spcl_nnunet.metalabels import META_LABELS_FILE, MetaLabels
from spcl_nnunet.sidecars import load_sidecars
from spcl_nnunet.splits import FOLDS_FILE, FoldTable


class SPConTrainerBase(nnUNetTrainer):
    """nnU-Net trainer whose folds are labeled configurations (``spcl_folds.json``).

    Fold f trains on the fold's labeled scans and validates on the fixed validation scans.
    Missing or inconsistent sidecars stop the trainer at start with an error that names the
    file and the command that makes it; nnU-Net's random 5-fold split is never used.
    """

    # training length and optimiser (class attributes so that variants stay one-liners; nnU-Net
    # records __init__'s explicit signature, so subclasses must not take *args/**kwargs)
    num_epochs_default: int = 1000
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    checkpoint_every: int = 50
    weight_decay_default: float = 3e-5
    batch_size_override: int | None = None   # None: the plan's batch size

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.num_epochs_default
        self.num_iterations_per_epoch = self.iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch
        self.save_every = self.checkpoint_every
        self.weight_decay = self.weight_decay_default
        self.meta_labels: MetaLabels | None = None
        self.fold_table: FoldTable | None = None

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        if self.batch_size_override is not None:
            if self.is_ddp:
                raise ValueError(f"{self.__class__.__name__} sets batch_size_override, which is not supported with DDP")
            self.batch_size = self.batch_size_override

    # ----------------------------------------------------------------- sidecars and folds
    def load_spcon_sidecars(self) -> None:
        if self.meta_labels is not None:
            return
        dataset_name = self.plans_manager.dataset_name
        raw = join(nnUNet_raw.get(), dataset_name) if nnUNet_raw.is_set() else None
        self.meta_labels, self.fold_table, notes = load_sidecars(self.preprocessed_dataset_folder_base, raw,
                                                                dataset_name)
        for note in notes:
            self.print_to_log_file(note)
        if self.dataset_class is None:
            from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        identifiers = self.dataset_class.get_identifiers(self.preprocessed_dataset_folder)
        self.meta_labels.check_cases(identifiers, source=f"the preprocessed dataset {self.preprocessed_dataset_folder} "
                                                         f"(checked against {META_LABELS_FILE})")
        unknown = sorted(set(self.fold_table.train_pool + self.fold_table.val) - set(identifiers))
        if unknown:
            raise ValueError(f"{join(self.preprocessed_dataset_folder_base, FOLDS_FILE)} names cases that are not "
                             f"in the preprocessed dataset: {unknown[:10]}")

    def do_split(self) -> tuple[list[str], list[str]]:
        self.load_spcon_sidecars()
        folds_file = join(self.preprocessed_dataset_folder_base, FOLDS_FILE)
        if self.fold == "all" or not isinstance(self.fold, int):
            raise ValueError(f"fold {self.fold!r} is not a labeled configuration: SP-Con trainers take a fold "
                             f"number from {folds_file}:\n{self.fold_table.describe()}")
        if not 0 <= self.fold < len(self.fold_table.folds):
            raise ValueError(f"fold {self.fold} does not exist in {folds_file} "
                             f"(folds 0..{len(self.fold_table.folds) - 1}):\n{self.fold_table.describe()}")
        spec = self.fold_table.folds[self.fold]
        tr_keys, val_keys = list(spec.labeled), list(self.fold_table.val)
        placeholders = sorted(set(tr_keys + val_keys) & set(self.meta_labels.unlabeled))
        if placeholders:
            raise ValueError(f"{folds_file}: fold {self.fold} uses label-less cases (placeholder labels, listed "
                             f"under 'unlabeled' in {META_LABELS_FILE}) for supervision or validation: "
                             f"{placeholders}")
        self.print_to_log_file(f"Fold {self.fold}: {spec.num_labeled} labeled scan(s) (random split {spec.split}, "
                               f"seed {self.fold_table.seed}), {len(val_keys)} validation scans")
        return tr_keys, val_keys

    def training_pool(self) -> tuple[list[str], list[str]]:
        """(pool, validation cases): the pool is every training image (labeled, unlabeled,
        label-less) but never a validation image. Test images are not in the preprocessed
        training set at all."""
        _, val_keys = self.do_split()
        identifiers = self.dataset_class.get_identifiers(self.preprocessed_dataset_folder)
        return sorted(set(identifiers) - set(val_keys)), list(val_keys)

    # ----------------------------------------------------------------- helpers
    def require_2d(self) -> None:
        if len(self.configuration_manager.patch_size) != 2:
            raise ValueError(f"{self.__class__.__name__} works on nnU-Net's 2d configuration, got "
                             f"'{self.configuration_name}' with patch size {self.configuration_manager.patch_size}")

    def single_target_training_transforms(self):
        """nnU-Net's training augmentation for this plan, without deep-supervision targets."""
        rotation, do_dummy_2d, _, mirror_axes = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return self.get_training_transforms(
            self.configuration_manager.patch_size, rotation, None, mirror_axes, do_dummy_2d,
            use_mask_for_norm=self.configuration_manager.use_mask_for_norm,
            is_cascaded=False, foreground_labels=self.label_manager.foreground_labels,
            regions=self.label_manager.foreground_regions if self.label_manager.has_regions else None,
            ignore_label=self.label_manager.ignore_label)

    def backward_and_step(self, loss: torch.Tensor, params) -> None:
        """nnU-Net's update: (scaled) backward, gradient norm clipped at 12, optimizer step."""
        params = list(params)
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

    def unwrapped_network(self) -> torch.nn.Module:
        mod = self.network.module if self.is_ddp else self.network
        return mod._orig_mod if isinstance(mod, OptimizedModule) else mod

    def base_checkpoint(self) -> dict:
        """The dict nnU-Net's ``save_checkpoint`` writes (it has no hook: subclasses extend this)."""
        return {
            "network_weights": self.unwrapped_network().state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
        }

    def extra_checkpoint_state(self) -> dict:
        """State beyond nnU-Net's own, stored under keys of its own (inference loads
        ``network_weights`` strictly)."""
        return {}

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        pass

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        checkpoint = self.base_checkpoint()
        checkpoint.update(self.extra_checkpoint_state())
        tmp = filename + ".tmp"
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = torch.load(filename_or_checkpoint, map_location=self.device, weights_only=False)
        self.load_extra_checkpoint_state(checkpoint)

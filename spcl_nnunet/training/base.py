"""Common ground of the SP-Con trainers: strict labeled-subset folds, meta-label sidecars and
training schedules (``SPCL_SCHEDULE``, see ``spcl_nnunet.training.schedules``)."""

from __future__ import annotations

import os
import time
from os.path import join

import torch
from nnunetv2.paths import nnUNet_raw
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from spcl_nnunet.contrastive.distributed import average_gradients, per_rank_count
from spcl_nnunet.data.metalabels import META_LABELS_FILE, MetaLabels
from spcl_nnunet.data.sidecars import load_sidecars
from spcl_nnunet.data.splits import FOLDS_FILE, FoldTable
from spcl_nnunet.training.progress import progress_plot_skipped
from spcl_nnunet.training.schedules import ENV_VAR as SCHEDULE_ENV_VAR
from spcl_nnunet.training.schedules import active_schedule, schedule_overrides

SCHEDULE_CHECKPOINT_KEY = "spcl_schedule"


class SPConTrainerBase(nnUNetTrainer):
    """nnU-Net trainer whose folds come from ``spcl_folds.json``: cross-validation over the labeled
    scans, or the paper's labeled configurations.

    Fold f trains on the fold's labeled scans and validates on its validation scans.
    Missing or inconsistent sidecars stop the trainer at start with an error that names the
    file and the command that makes it; nnU-Net's random 5-fold split is never used.
    """

    # training length and optimiser (class attributes so that variants stay one-liners; nnU-Net
    # records __init__'s explicit signature, so subclasses must not take *args/**kwargs)
    num_epochs_default: int = 1000
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    checkpoint_every: int = 50
    # checkpoint_latest.pth after every checkpoint_every-th epoch, but at most once per
    # checkpoint_interval_s seconds of training (and nnU-Net's checkpoint_final at the end): a kill
    # loses at most that long plus the running epoch, and short GPU epochs do not each write ~100 MB
    checkpoint_interval_s: float = 300.0
    weight_decay_default: float = 3e-5
    batch_size_override: int | None = None   # None: the plan's batch size
    # nnU-Net's final validation after training (validation/summary.json). False skips it after a
    # training, for runs whose result is a separate nnUNetv2_predict; '--val' still validates
    final_validation: bool = True
    # progress.png after every N-th epoch and after the last (nnU-Net draws it after every epoch,
    # ~1.8 s each on 2 CPU cores: most of a short test or demo epoch)
    progress_plot_every: int = 1
    # which overrides of an SPCL_SCHEDULE schedule apply: "pretrain", "finetune" or "semisupervised"
    schedule_role: str | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        schedule = active_schedule()
        overrides, skipped = schedule_overrides(type(self), schedule) if schedule is not None else ({}, [])
        for key, value in overrides.items():
            setattr(self, key, value)
        self.spcl_schedule = {"name": schedule.name if schedule else None, "overrides": dict(overrides)}
        super().__init__(plans, configuration, fold, dataset_json, device)
        if schedule is not None:
            self.print_to_log_file(f"schedule {schedule.name!r} ({SCHEDULE_ENV_VAR}), role {self.schedule_role!r}: "
                                   + ", ".join(f"{k} = {v!r}" for k, v in overrides.items())
                                   + (f"; not used by this trainer: {', '.join(skipped)}" if skipped else ""))
        if not isinstance(self.progress_plot_every, int) or self.progress_plot_every < 1:
            raise ValueError(f"{type(self).__name__}: progress_plot_every must be a whole number >= 1, "
                             f"got {self.progress_plot_every!r}")
        self.num_epochs = self.num_epochs_default
        self.num_iterations_per_epoch = self.iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch
        self.save_every = self.checkpoint_every
        self.weight_decay = self.weight_decay_default
        self.meta_labels: MetaLabels | None = None
        self.fold_table: FoldTable | None = None
        self.trained_in_this_process = False    # set at the end of run_training (not under --val)
        self._last_latest_checkpoint = 0.0

    # ----------------------------------------------------------------- checkpoint_latest by time
    def checkpoint_clock(self) -> float:
        """Seconds on a monotonic clock (what ``checkpoint_interval_s`` is measured with)."""
        return time.monotonic()

    def schedule_latest_checkpoint(self) -> None:
        """Set nnU-Net's ``save_every`` for the epoch that ends now (called before nnU-Net's
        ``on_epoch_end`` decides): 1 when ``checkpoint_latest.pth`` is due (a ``checkpoint_every``-th
        epoch, ``checkpoint_interval_s`` since the last one or the start, not the last epoch), else
        past the end of training."""
        epoch = self.current_epoch
        elapsed = self.checkpoint_clock() - self._last_latest_checkpoint
        due = (epoch + 1) % self.checkpoint_every == 0 and epoch != self.num_epochs - 1 \
            and elapsed >= self.checkpoint_interval_s
        self.save_every = 1 if due else self.num_epochs + 1
        if due:
            self._last_latest_checkpoint += elapsed
            self.print_to_log_file(f"checkpoint_latest.pth after epoch {epoch} ({elapsed:.0f} s since the last "
                                   f"one; at most every {self.checkpoint_interval_s:g} s, checkpoint_interval_s)")

    def on_train_start(self):
        super().on_train_start()
        self._last_latest_checkpoint = self.checkpoint_clock()

    def on_train_end(self):
        super().on_train_end()
        self.trained_in_this_process = True

    def plots_progress_this_epoch(self) -> bool:
        """Whether the epoch now ending draws progress.png (rank 0, every ``progress_plot_every``-th
        epoch and the last)."""
        done = self.current_epoch + 1
        return self.local_rank == 0 and (done % self.progress_plot_every == 0 or done >= self.num_epochs)

    def on_epoch_end(self):
        self.schedule_latest_checkpoint()
        if self.plots_progress_this_epoch():
            super().on_epoch_end()
        else:
            with progress_plot_skipped(self.logger):
                super().on_epoch_end()

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's final validation, skipped after a training when ``final_validation`` is False
        (an explicit ``nnUNetv2_train ... --val`` always validates)."""
        if self.trained_in_this_process and not self.final_validation:
            self.print_to_log_file("Final validation skipped (final_validation = False): validate with "
                                   f"'nnUNetv2_train {self.plans_manager.dataset_name} {self.configuration_name} "
                                   f"{self.fold} -tr {self.__class__.__name__} --val'")
            return
        super().perform_actual_validation(save_probabilities)

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        if self.batch_size_override is not None:   # the global batch: split evenly over the processes (GPUs)
            self.batch_size = per_rank_count(self.batch_size_override, "batch_size_override")

    # ----------------------------------------------------------------- sidecars and folds
    def load_spcon_sidecars(self) -> None:
        if self.meta_labels is not None:
            return
        dataset_name = self.plans_manager.dataset_name
        raw = join(nnUNet_raw.get(), dataset_name) if nnUNet_raw.is_set() else None
        self.meta_labels, self.fold_table, notes = load_sidecars(self.preprocessed_dataset_folder_base, raw,
                                                                dataset_name)
        self.log_lines(notes)
        if self.dataset_class is None:
            from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        identifiers = self.dataset_class.get_identifiers(self.preprocessed_dataset_folder)
        self.meta_labels.check_cases(identifiers, source=f"the preprocessed dataset {self.preprocessed_dataset_folder} "
                                                         f"(checked against {META_LABELS_FILE})")
        unknown = sorted(set(self.fold_table.train_pool + self.fold_table.validation_cases()) - set(identifiers))
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
        tr_keys, val_keys = list(spec.labeled), self.fold_table.val_of(spec)
        placeholders = sorted(set(tr_keys + val_keys) & set(self.meta_labels.unlabeled))
        if placeholders:
            raise ValueError(f"{folds_file}: fold {self.fold} uses label-less cases (placeholder labels, listed "
                             f"under 'unlabeled' in {META_LABELS_FILE}) for supervision or validation: "
                             f"{placeholders}")
        if self.fold_table.cross_validation:
            self.print_to_log_file(f"Fold {self.fold} of {len(self.fold_table.folds)}-fold cross-validation over the "
                                   f"labeled scans (grouped by patient): {len(tr_keys)} training, {len(val_keys)} "
                                   f"validation scans")
        else:
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
    def log_lines(self, lines: list[str]) -> None:
        """Each line to nnU-Net's training log (and the console): what a library piece without a
        logger reports, e.g. a shortened warm-up."""
        for line in lines:
            self.print_to_log_file(line)

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

    def autocast_context(self):
        """nnU-Net's mixed precision: autocast on CUDA, nothing on the CPU."""
        return autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context()

    def image_loader(self, keys: list[str], batch_size: int, transforms):
        """nnU-Net's 2d loader over ``keys``: random slices and crops without foreground
        oversampling (labels may be placeholders: they are never targets), ``transforms`` in the workers."""
        dataset = self.dataset_class(self.preprocessed_dataset_folder, keys)
        _, _, initial_patch_size, _ = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return nnUNetDataLoader(dataset, batch_size, initial_patch_size, self.configuration_manager.patch_size,
                                self.label_manager, oversample_foreground_percent=0.0, transforms=transforms)

    def backward_and_step(self, loss: torch.Tensor, params, outside_ddp=()) -> None:
        """nnU-Net's update: (scaled) backward, gradient norm clipped at 12, optimizer step.

        ``outside_ddp``: parameters whose gradients came from forwards that bypassed the DDP-wrapped
        network (its reducer never sees them): under DDP they are averaged over the processes here,
        before unscaling and clipping."""
        params, outside_ddp = list(params), list(outside_ddp)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            average_gradients(outside_ddp)
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(params, 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            average_gradients(outside_ddp)
            torch.nn.utils.clip_grad_norm_(params, 12)
            self.optimizer.step()

    def network_without_ddp(self) -> torch.nn.Module:
        """The network as nnU-Net built it (compiled where it compiles) without the DDP wrapper: for
        a second forward in the same step (DDP's reducer arms once per step, on the labeled forward;
        the gradients of both forwards meet in the parameters before its all-reduce)."""
        return self.network.module if isinstance(self.network, DistributedDataParallel) else self.network

    def unwrapped_network(self) -> torch.nn.Module:
        """The plain network, also before nnU-Net wraps it in DDP (``configure_optimizers`` runs
        first) and under ``torch.compile``."""
        mod = self.network_without_ddp()
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

    def require_checkpoint_keys(self, checkpoint: dict, *keys: str) -> None:
        """A checkpoint without the extra state this trainer resumes from is refused, naming what it lacks."""
        missing = [key for key in keys if key not in checkpoint]
        if missing:
            raise ValueError(f"{self.__class__.__name__} cannot resume from a checkpoint without "
                             f"{', '.join(map(repr, missing))} (written by trainer {checkpoint.get('trainer_name')!r})")

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        checkpoint = self.base_checkpoint()
        checkpoint.update(self.extra_checkpoint_state())
        checkpoint[SCHEDULE_CHECKPOINT_KEY] = dict(self.spcl_schedule)
        tmp = filename + ".tmp"
        torch.save(checkpoint, tmp)
        os.replace(tmp, filename)

    def check_checkpoint_schedule(self, checkpoint: dict, source: str) -> None:
        """A checkpoint written under another schedule (or other overrides) cannot be resumed:
        the epochs, batch shapes and learning-rate schedule would silently change midway."""
        saved = checkpoint.get(SCHEDULE_CHECKPOINT_KEY) or {"name": None, "overrides": {}}
        current = self.spcl_schedule
        if saved.get("name") != current["name"] or saved.get("overrides", {}) != current["overrides"]:
            def describe(state: dict) -> str:
                name = state.get("name")
                return f"schedule {name!r} {state.get('overrides', {})}" if name else "no schedule (class defaults)"
            raise ValueError(f"{source} was written under {describe(saved)}, but {self.__class__.__name__} now runs "
                             f"under {describe(self.spcl_schedule)} ({SCHEDULE_ENV_VAR}): resume with the same "
                             f"schedule, or start a new training in another results folder")

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        checkpoint = filename_or_checkpoint if isinstance(filename_or_checkpoint, dict) else \
            torch.load(filename_or_checkpoint, map_location=self.device, weights_only=False)
        self.check_checkpoint_schedule(checkpoint, "the checkpoint" if isinstance(filename_or_checkpoint, dict)
                                       else str(filename_or_checkpoint))
        super().load_checkpoint(filename_or_checkpoint)
        self.load_extra_checkpoint_state(checkpoint)

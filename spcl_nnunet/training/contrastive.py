"""Meta-label contrastive pieces shared by pre-training and SP-Con + Mean Teacher.

``MetaLabelContrast`` is a mixin for ``SPConTrainerBase`` subclasses: the meta-label batches
(m scans x one slice per partition x two views, from ``ContrastiveDataLoader``), the projector g,
the self-paced loss L = sum_k lambda_k L_sp^k (main paper Eq. 14), the gamma schedule
(stepped once per epoch) and their checkpoint state.
"""

from __future__ import annotations

from os.path import join

import torch

from spcl_nnunet.contrastive.distributed import (broadcast_module, gather_objects, gather_tensor, gather_with_grad,
                                     per_rank_count, world_size)
from spcl_nnunet.networks.heads import ProjectionHead
from spcl_nnunet.contrastive.heatmap import save_weight_heatmap
from spcl_nnunet.losses.self_paced import combined_self_paced_supcon, mean_positive_weight
from spcl_nnunet.contrastive.pacing import gamma_at
from spcl_nnunet.contrastive.sampling import scans_per_meta_batch
from spcl_nnunet.contrastive.slices import partition_counts, partitions_for_cases
from spcl_nnunet.training.dataloading import ContrastiveDataLoader, case_slice_counts
from spcl_nnunet.networks.unet_features import encode_with_last_conv

PROJECTOR_INPUTS = ("bottleneck", "last_conv")


class MetaLabelContrast:
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
    heatmap_every: int = 10         # epochs between heat-maps of the self-paced weights (0: never)
    # what the projector's global average pool reads: "bottleneck" = the encoder's output (after
    # nnU-Net's InstanceNorm + LeakyReLU, as the method's GAP -> MLP on the encoder), "last_conv" =
    # the last convolution's output before that block's norm, which keeps how strongly each channel
    # fires in each image (benchmarks/README.md, "diagnose_pooling.py")
    projector_input: str = "bottleneck"

    projector: ProjectionHead | None = None
    current_gamma: float = float("nan")

    # ------------------------------------------------------------------ set-up
    @property
    def primary_meta_label(self) -> str:
        """The meta-label whose weights are logged and drawn (largest lambda)."""
        return "instance" if self.simclr else max(self.meta_label_weights, key=self.meta_label_weights.get)

    def check_meta_label_names(self) -> None:
        unknown = set(self.meta_label_weights) - {"position"} - set(self.meta_labels.keys())
        if unknown and not self.simclr:
            raise ValueError(f"{self.__class__.__name__} uses meta-label(s) {sorted(unknown)} that "
                             f"meta_labels.json does not define (it has {self.meta_labels.keys()} + 'position')")

    def make_projector(self) -> ProjectionHead:
        if self.projector_input not in PROJECTOR_INPUTS:
            raise ValueError(f"{self.__class__.__name__}: projector_input must be one of {', '.join(PROJECTOR_INPUTS)}, "
                             f"got {self.projector_input!r}")
        channels = int(self.unwrapped_network().encoder.output_channels[-1])
        self.projector = ProjectionHead(channels).to(self.device)
        broadcast_module(self.projector)   # outside DDP: every rank starts from rank 0's projector
        return self.projector

    def encode_for_projector(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(the student encoder's skips for ``x``, the projector's input: see ``projector_input``)."""
        encoder = self.unwrapped_network().encoder
        if self.projector_input == "last_conv":
            return encode_with_last_conv(encoder, x)
        skips = encoder(x)
        return skips, skips[-1]

    def scans_per_rank(self) -> int:
        """Scans of this process's meta-label batch: the global count (``num_scans_per_batch``, or
        the global batch size // slice partitions) split evenly over the processes."""
        partitions = self.meta_labels.slice_partitions
        if self.num_scans_per_batch:
            return per_rank_count(self.num_scans_per_batch, "num_scans_per_batch")
        batch = self.batch_size_override or int(self.configuration_manager.batch_size)
        scans, note = scans_per_meta_batch(batch, partitions)
        if note:
            self.print_to_log_file(note)
        return per_rank_count(scans, f"the batch size {batch} // {partitions} slice partitions (scans per "
                                     f"meta-label batch)")

    def contrastive_loader(self, keys: list[str], transforms) -> ContrastiveDataLoader:
        dataset = self.dataset_class(self.preprocessed_dataset_folder, keys)
        counts, properties = case_slice_counts(dataset)
        partitions = self.meta_labels.slice_partitions
        slice_parts = partitions_for_cases(counts, properties, partitions)
        case_keys = [] if self.simclr else [k for k in self.meta_label_weights if k != "position"]
        case_codes = {k: self.meta_labels.encode(k, keys) for k in case_keys}
        num_scans = self.scans_per_rank()
        self.print_to_log_file(f"contrastive loader: {len(keys)} scans, {sum(counts.values())} slices, "
                               f"slices per partition {partition_counts(slice_parts.values(), partitions).tolist()}, "
                               f"{num_scans} scans x {partitions} slices x {self.num_views} views per batch")
        _, _, initial_patch_size, _ = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return ContrastiveDataLoader(dataset, num_scans, slice_parts, partitions, case_codes, initial_patch_size,
                                     self.configuration_manager.patch_size, self.label_manager, transforms,
                                     self.num_views, self.one_slice_per_partition)

    def update_gamma(self) -> float:
        """gamma(e) for the current epoch (called once per epoch)."""
        self.current_gamma = gamma_at(self.current_epoch, self.num_epochs, self.gamma_start, self.gamma_end,
                                      self.gamma_power)
        return self.current_gamma

    # ------------------------------------------------------------------ loss
    def global_contrast_batch(self, z: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        """(N, V, D) features of the meta-label batch of every process (rank order, gathered with
        gradient) and that global batch's meta-labels and case names. With one process: this
        process's own batch."""
        features = gather_with_grad(self._view_features(z))
        if world_size() == 1:
            return features, batch
        meta = {k: gather_tensor(v.to(self.device)) for k, v in batch.get("meta", {}).items()}
        return features, {"meta": meta, "keys": gather_objects(batch["keys"])}

    def meta_label_loss(self, features: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        """sum_k lambda_k L_sp^k of (N, V, D) features (``global_contrast_batch``)."""
        labels, lambdas = self._contrast_labels(batch)
        return combined_self_paced_supcon(features, labels, lambdas, temperature=self.temperature,
                                          gamma=self.current_gamma, mode=self.weight_mode,
                                          correct_grad=self.correct_grad)

    def _view_features(self, z: torch.Tensor) -> torch.Tensor:
        """(V*N, D) view-major projections -> (N, V, D)."""
        n = z.shape[0] // self.num_views
        return z.view(self.num_views, n, -1).transpose(0, 1)

    def _contrast_labels(self, batch: dict) -> tuple[dict, dict]:
        """(labels by meta-label, lambda by meta-label) of a meta-label batch."""
        if self.simclr:
            return {"instance": None}, {"instance": 1.0}
        return {k: batch["meta"][k].to(self.device) for k in self.meta_label_weights}, self.meta_label_weights

    def unweighted_meta_label_loss(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        """sum_k lambda_k L_con^k of the same features with every weight 1 (gamma = inf), no
        gradient: unlike L_sp, whose pace gamma admits more pairs as training goes on (so it
        rises from 0), this falls when the encoder learns the meta-labels."""
        labels, lambdas = self._contrast_labels(batch)
        with torch.no_grad():
            loss, _ = combined_self_paced_supcon(features.detach(), labels, lambdas,
                                                 temperature=self.temperature, gamma=float("inf"),
                                                 return_weights=False)
        return loss

    def primary_positive_weight(self, batch: dict, parts: dict) -> float:
        """Mean self-paced weight of the positive pairs of the primary meta-label."""
        key = self.primary_meta_label
        labels = None if self.simclr else batch["meta"][key]
        return mean_positive_weight(parts[key][1].cpu(), labels, self.num_views)

    def save_heatmap(self, batch: dict, parts: dict) -> None:
        if self.local_rank != 0:
            return
        key = self.primary_meta_label
        n = len(batch["keys"])
        positions = batch["meta"]["position"].tolist() if "meta" in batch else [0] * n
        path = join(self.output_folder, "self_paced_weights", f"epoch_{self.current_epoch:04d}.png")
        save_weight_heatmap(parts[key][1].cpu().numpy(), positions, batch["keys"], self.num_views, path,
                            f"self-paced weights ({key}), epoch {self.current_epoch}, gamma {self.current_gamma:.3g}")

    def heatmap_due(self) -> bool:
        return self.heatmap_every > 0 and self.current_epoch % self.heatmap_every == 0

    # ------------------------------------------------------------------ checkpoints
    def contrastive_checkpoint_state(self) -> dict:
        return {"projector_state": self.projector.state_dict(),
                "spcon_state": {"gamma": self.current_gamma, "gamma_start": self.gamma_start,
                                "gamma_end": self.gamma_end, "gamma_power": self.gamma_power,
                                "meta_label_weights": dict(self.meta_label_weights), "simclr": self.simclr,
                                "weight_mode": self.weight_mode}}

    def load_contrastive_checkpoint_state(self, checkpoint: dict) -> None:
        if "projector_state" not in checkpoint:
            raise ValueError(f"{self.__class__.__name__} cannot resume from a checkpoint without 'projector_state' "
                             f"(written by trainer {checkpoint.get('trainer_name')!r})")
        self.projector.load_state_dict(checkpoint["projector_state"])
        self.current_gamma = float(checkpoint["spcon_state"]["gamma"])

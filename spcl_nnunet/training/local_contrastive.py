"""Chaitanya et al.'s second pre-training stage: local contrastive learning of the decoder.

The chain (paper ref. [3], "global + local contrastive"):
    ContrastivePretrainTrainer  ->  LocalContrastivePretrainTrainer -pretrained_weights
                                ->  SPConFinetuneTrainer -pretrained_weights

This stage starts from the global stage's checkpoint, freezes the encoder and trains the decoder
blocks up to the one at 1/2 resolution (the authors' ``Up_conv3``, found by resolution with
``spcl_nnunet.networks.unet_features``) and a dense projection head (1x1 conv(C, 256), LeakyReLU 0.01,
1x1 conv(256, 256), adaptive average pool to 10 x 10, channel L2 norm) with the local contrastive
loss (``spcl_nnunet.losses.local_contrastive``): 5 points per image on the 10 x 10 grid, the same
points in two views that differ in intensity only (``spcl_nnunet.contrastive.intensity``), a point's only
positive is itself in the other view, every other point of the batch is a negative, tau = 0.07.
The segmentation layers and the full-resolution decoder block are never trained. The checkpoint
holds the whole network (encoder as loaded, decoder partly trained) for ``-pretrained_weights``;
the dense projector lives under its own key.
"""

from __future__ import annotations

import torch

from spcl_nnunet.contrastive.distributed import broadcast_module, per_rank_count
from spcl_nnunet.networks.heads import DenseProjectionHead
from spcl_nnunet.contrastive.intensity import random_intensity_view
from spcl_nnunet.losses.local_contrastive import local_contrastive_loss, sample_grid_points
from spcl_nnunet.training.pretrain import PretrainTrainerBase
from spcl_nnunet.networks.unet_features import decoder_stage_at, decoder_stage_outputs

DENSE_PROJECTOR_KEY = "dense_projector_state"


class LocalContrastivePretrainTrainer(PretrainTrainerBase):
    """Local contrastive pre-training of the decoder (start it with ``-pretrained_weights`` from a
    ``ContrastivePretrainTrainer`` checkpoint)."""

    feature_downsampling: int = 2      # decoder block at 1/2 resolution (SPCL's release; DCL uses 1/4)
    grid_size: int = 10
    points_per_image: int = 5
    temperature: float = 0.07
    projection_dim: int = 256
    # the batch: num_scans_per_batch x S images (S slice partitions), two views each: as many views as
    # SP-Con's pre-training batch under the same schedule; None: the plan's batch size of images
    num_scans_per_batch: int | None = None
    pool_name = "local contrastive pre-training pool"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.dense_projector: DenseProjectionHead | None = None
        self.feature_stage: int | None = None

    # ------------------------------------------------------------------ set-up
    def make_heads(self) -> None:
        network = self.unwrapped_network()
        self.feature_stage = decoder_stage_at(network, self.feature_downsampling)
        channels = int(network.decoder.stages[self.feature_stage].output_channels)
        self.dense_projector = DenseProjectionHead(channels, self.projection_dim, self.projection_dim,
                                                   self.grid_size).to(self.device)
        broadcast_module(self.dense_projector)      # outside DDP: every rank starts from rank 0's head
        network.encoder.requires_grad_(False)       # frozen (the authors leave it in train mode)
        self.print_to_log_file(f"local contrastive pre-training: encoder frozen, training decoder stages "
                               f"0..{self.feature_stage} (1/{self.feature_downsampling} resolution, {channels} "
                               f"channels) and the dense projector; {self.points_per_image} points per image on a "
                               f"{self.grid_size}x{self.grid_size} grid, temperature {self.temperature}; {self.images_per_rank()} images x 2 "
                               f"views per batch")

    def trained_decoder_modules(self) -> list[torch.nn.Module]:
        decoder = self.unwrapped_network().decoder
        stages = range(self.feature_stage + 1)
        return [decoder.transpconvs[s] for s in stages] + [decoder.stages[s] for s in stages]

    def pretrain_parameters(self) -> list[torch.nn.Parameter]:
        return [p for m in self.trained_decoder_modules() for p in m.parameters()] + \
            list(self.dense_projector.parameters())

    def pretrain_modules(self) -> list[torch.nn.Module]:
        return self.trained_decoder_modules() + [self.dense_projector]

    def pretrain_loader(self, keys: list[str], transforms):
        return self.image_loader(keys, self.images_per_rank(), transforms)

    def images_per_rank(self) -> int:
        """Images of this process's batch (the global count split evenly over the processes)."""
        if self.num_scans_per_batch is None:
            return self.batch_size
        partitions = self.meta_labels.slice_partitions
        return per_rank_count(self.num_scans_per_batch * partitions,
                              f"num_scans_per_batch {self.num_scans_per_batch} x {partitions} slice partitions")

    # ------------------------------------------------------------------ loss
    def pretrain_loss(self, batch: dict, training: bool) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["data"].to(self.device, non_blocking=True)
        network = self.unwrapped_network()
        views = torch.cat([random_intensity_view(x), random_intensity_view(x)])   # same geometry
        with self.autocast_context():
            with torch.no_grad():
                skips = network.encoder(views)
            features = decoder_stage_outputs(network.decoder, skips, upto=self.feature_stage)[-1]
            z = self.dense_projector(features)
        n = x.shape[0]
        rows, cols = sample_grid_points(n, self.grid_size, self.points_per_image, device=z.device)
        return local_contrastive_loss(z[:n], z[n:], rows, cols, self.temperature), {}

    # ------------------------------------------------------------------ checkpoints
    def extra_checkpoint_state(self) -> dict:
        return {DENSE_PROJECTOR_KEY: self.dense_projector.state_dict()}

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        self.require_checkpoint_keys(checkpoint, DENSE_PROJECTOR_KEY)
        self.dense_projector.load_state_dict(checkpoint[DENSE_PROJECTOR_KEY])


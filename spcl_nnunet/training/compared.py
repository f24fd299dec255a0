"""The paper's compared semi-supervised methods as nnU-Net trainers (supplementary Sec. 3).

What the reference code does and where it departs from the paper: docs/compared_methods.md.
All three share ``SemiSupervisedTrainer``'s step: L_sup (cross-entropy with nnU-Net's deep
supervision) on nnU-Net's labeled batch plus the method's term, ramped up by ``rampup_weight``:

- ``MixUpTrainer``: w * KL(Y~ || softmax f(X~)) on mixed pairs of labeled images (labeled data only).
- ``AdversarialTrainer``: lambda_adv * BCE(D(softmax f(x_u)), real) against a patch discriminator
  D that learns to tell predictions on labeled images (real) from those on unlabeled images (fake).
- ``DiscreteMITrainer``: sum_l w_l * (-MI) between cluster assignments of two views of unlabeled
  images, on the encoder's bottleneck and the decoder blocks at 1/2 and full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spcl_nnunet.networks.discriminator import PatchDiscriminator
from spcl_nnunet.contrastive.distributed import average_gradients, broadcast_module
from spcl_nnunet.networks.heads import ClusterHeads, DenseClusterHeads
from spcl_nnunet.contrastive.intensity import random_intensity_view
from spcl_nnunet.losses.adversarial import adversarial_loss, discriminator_accuracy, discriminator_loss
from spcl_nnunet.losses.consistency import random_flips
from spcl_nnunet.losses.mixup import mix, mix_mask, one_hot_target, sample_mixing, sample_rows, soft_target_loss
from spcl_nnunet.losses.mutual_information import multihead_dense_iic_loss, multihead_iic_loss
from spcl_nnunet.training.semisupervised import SemiSupervisedTrainer, full_resolution
from spcl_nnunet.networks.unet_features import decoder_stage_at, decoder_stage_outputs


def full_resolution_target(target) -> torch.Tensor:
    """The full-resolution target of nnU-Net's batch (a list under deep supervision)."""
    return target[0] if isinstance(target, (list, tuple)) else target


def float32(device: torch.device):
    """Autocast off: the discriminator and the MI heads run in float32 (BCE and log of small
    probabilities are not safe in float16)."""
    return torch.autocast(device.type, enabled=False)


class MixUpTrainer(SemiSupervisedTrainer):
    """L_sup + w * KL(Y~ || softmax f(X~)), MixUp on labeled data only ("following [3]").

    Two independently augmented labeled batches (this step's and the next one of nnU-Net's
    labeled loader) X = [x; x'], one-hot targets Y; one lambda ~ Beta(alpha, alpha) per batch and a
    random permutation pi: X~ = lambda X + (1 - lambda) X[pi], Y~ likewise; the KL is averaged over
    the pixels whose both mixed targets are valid (the ignore label is left out), on the
    full-resolution output. Defaults from the reference code: w = 0.01 (its grid 0.01-0.2),
    alpha = 1. The unlabeled pool is not used (as in the reference). Cost: of the 2B mixed images,
    a random ``mixup_fraction`` (half by default) goes through the network; the KL averaged over
    a random subset estimates the average over all 2B without bias, and the step costs about 2x
    nnU-Net's instead of 3x (1.0: every mixed image, as the reference)."""

    mixup_weight: float = 0.01
    mixup_alpha: float = 1.0
    mixup_fraction: float = 0.5
    uses_unlabeled_pool = False
    log_panels = [(("supervised_loss",), ("mixup_loss",)), (("rampup_weight",), ("mixup_lambda",))]

    def initialize(self):
        if self.label_manager.has_regions:
            raise ValueError(f"{self.__class__.__name__} mixes one-hot targets: region-based datasets (overlapping "
                             f"regions in dataset.json) cannot be mixed that way")
        super().initialize()
        self.print_to_log_file(f"MixUp on labeled pairs: weight {self.mixup_weight}, lambda ~ Beta({self.mixup_alpha}, "
                               f"{self.mixup_alpha}) per batch, a random {self.mixup_fraction:g} of the mixed pairs "
                               f"through the network; the unlabeled images are not used")

    def extra_terms(self, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        other = next(self.dataloader_train)
        x = torch.cat([labeled["data"], other["data"].to(self.device, non_blocking=True)])
        target = torch.cat([full_resolution_target(labeled["target"]),
                            full_resolution_target(other["target"]).to(self.device, non_blocking=True)])
        ignore = self.label_manager.ignore_label if self.label_manager.has_ignore_label else None
        onehot, valid = one_hot_target(target, self.label_manager.num_segmentation_heads, ignore)
        lam, perm = sample_mixing(x.shape[0], self.mixup_alpha)
        rows = sample_rows(x.shape[0], self.mixup_fraction)
        logits = full_resolution(self.network_without_ddp()(mix(x, lam, perm, rows)))
        loss = soft_target_loss(logits, mix(onehot, lam, perm, rows), mix_mask(valid, perm, rows))
        return self.mixup_weight * self.rampup_weight * loss, {"mixup_loss": loss.detach(), "mixup_lambda": lam}


DISCRIMINATOR_KEY = "discriminator_state"
DISCRIMINATOR_OPTIMIZER_KEY = "discriminator_optimizer_state"


class AdversarialTrainer(SemiSupervisedTrainer):
    """L_sup + lambda_adv * BCE(D(s_u), real), adversarial training (Zhang et al. 2017, DAN).

    D (``PatchDiscriminator``, DCGAN-style, its depth fitted to the patch size) sees softmax maps
    (with the image when ``discriminator_with_image``): "real" are the student's predictions on
    this step's labeled images, "fake" those on unlabeled images. After the segmenter's step, D
    takes its own step on BCE(D(s_l), real) + BCE(D(s_u), fake) with its own Adam optimizer, in
    float32, without nnU-Net's gradient clipping. D's weights and optimizer are stored in the
    checkpoint under their own keys and restored by ``--c``. Defaults follow SSL4MIS, whose D
    actually learns (the SPCL release trains D at the fine-tuning learning rate, so it barely
    moves): Adam 1e-4, betas (0.9, 0.99), lambda_adv = 0.1 with a sigmoid ramp-up."""

    adversarial_weight: float = 0.1
    discriminator_lr: float = 1e-4
    discriminator_beta1: float = 0.9
    discriminator_beta2: float = 0.99
    discriminator_with_image: bool = False
    rampup_epochs = 20.0
    log_panels = [(("supervised_loss",), ("adversarial_loss",)),
                  (("discriminator_loss",), ("discriminator_accuracy",)),
                  (("rampup_weight",), ())]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.discriminator: PatchDiscriminator | None = None
        self.discriminator_optimizer: torch.optim.Optimizer | None = None
        self._discriminator_inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._discriminator_values: dict[str, torch.Tensor] = {}

    def initialize(self):
        super().initialize()
        channels = self.label_manager.num_segmentation_heads + (self.num_input_channels
                                                                if self.discriminator_with_image else 0)
        self.discriminator = PatchDiscriminator(channels, self.configuration_manager.patch_size).to(self.device)
        broadcast_module(self.discriminator)        # outside DDP: every rank starts from rank 0's D
        self.discriminator_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.discriminator_lr,
                                                        betas=(self.discriminator_beta1, self.discriminator_beta2))
        self.print_to_log_file(f"adversarial training: patch discriminator with {self.discriminator.num_downsamplings} "
                               f"downsamplings on {channels}-channel inputs, Adam {self.discriminator_lr}, "
                               f"lambda_adv {self.adversarial_weight}")

    def discriminator_input(self, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(logits.float(), dim=1)
        return torch.cat([images.float(), probabilities], 1) if self.discriminator_with_image else probabilities

    def unlabeled_terms(self, batch: dict, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        x = batch["data"].to(self.device, non_blocking=True)
        fake = self.discriminator_input(x, full_resolution(self.network_without_ddp()(x)))
        self.discriminator.requires_grad_(False)     # the segmenter's step does not train D
        with float32(self.device):
            adversarial = adversarial_loss(self.discriminator(fake))
        self._discriminator_inputs = (self.discriminator_input(labeled["data"], labeled["logits"]).detach(),
                                      fake.detach())
        return self.adversarial_weight * self.rampup_weight * adversarial, {"adversarial_loss": adversarial.detach()}

    def after_optimizer_step(self) -> None:
        """D's step on this step's (detached) predictions: labeled = real, unlabeled = fake."""
        real_input, fake_input = self._discriminator_inputs
        self.discriminator.requires_grad_(True)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        with float32(self.device):
            real, fake = self.discriminator(real_input), self.discriminator(fake_input)
            loss = discriminator_loss(real, fake)
        loss.backward()
        average_gradients(self.discriminator.parameters())
        self.discriminator_optimizer.step()
        self._discriminator_values = {"discriminator_loss": loss.detach(),
                                      "discriminator_accuracy": discriminator_accuracy(real, fake)}

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        return {**out, **{key: float(value) for key, value in self._discriminator_values.items()}}

    def extra_checkpoint_state(self) -> dict:
        return {DISCRIMINATOR_KEY: self.discriminator.state_dict(),
                DISCRIMINATOR_OPTIMIZER_KEY: self.discriminator_optimizer.state_dict()}

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        self.require_checkpoint_keys(checkpoint, DISCRIMINATOR_KEY, DISCRIMINATOR_OPTIMIZER_KEY)
        self.discriminator.load_state_dict(checkpoint[DISCRIMINATOR_KEY])
        self.discriminator_optimizer.load_state_dict(checkpoint[DISCRIMINATOR_OPTIMIZER_KEY])


CLUSTER_HEADS_KEY = "cluster_heads_state"


class DiscreteMITrainer(SemiSupervisedTrainer):
    """L_sup + sum_l w_l * mean_heads (-MI) of cluster assignments of two views (ref. [8], IIC).

    Views of an unlabeled batch: x (nnU-Net's augmentation) and x' = T(intensity change of x), T
    per image flips of each axis with probability 0.8 (the reference's T). At each layer l the
    assignments of T(F_l(x)) and F_l(x') are compared: the encoder's bottleneck through
    ``ClusterHeads`` (global average pool, Linear, softmax), the decoder blocks at 1/2 and full
    resolution through ``DenseClusterHeads`` (1x1 conv, softmax per pixel), K = 20 clusters and 5
    sub-heads each, weights (0.1, 0.05, 0.05), MI in float32. The heads join the optimizer and the
    checkpoint (under their own key). The reference release also always adds a consistency term
    w_c * MSE(softmax f(x'), T(softmax f(x))) with w_c = 1; here it is ``mi_consistency_weight``,
    0 by default (the paper's description); its value is logged either way."""

    num_clusters: int = 20
    num_subheads: int = 5
    mi_weight_encoder: float = 0.1
    mi_weight_half: float = 0.05      # decoder block at 1/2 resolution (the authors' Up_conv3)
    mi_weight_full: float = 0.05      # full-resolution decoder block (Up_conv2)
    mi_consistency_weight: float = 0.0
    flip_probability: float = 0.8
    log_panels = [(("supervised_loss",), ("mi_loss",)),
                  (("mi_encoder", "mi_half", "mi_full"), ("mi_consistency",)),
                  (("rampup_weight",), ())]

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.cluster_heads: nn.ModuleDict | None = None
        self.decoder_stages: dict[str, int] = {}

    def make_cluster_heads(self) -> nn.ModuleDict:
        network = self.unwrapped_network()
        self.decoder_stages = {"decoder_half": decoder_stage_at(network, 2), "decoder_full": decoder_stage_at(network, 1)}
        k, h = self.num_clusters, self.num_subheads
        self.cluster_heads = nn.ModuleDict({
            "bottleneck": ClusterHeads(int(network.encoder.output_channels[-1]), k, h),
            **{name: DenseClusterHeads(int(network.decoder.stages[s].output_channels), k, h)
               for name, s in self.decoder_stages.items()}}).to(self.device)
        broadcast_module(self.cluster_heads)        # outside DDP: every rank starts from rank 0's heads
        return self.cluster_heads

    def make_heads(self) -> list[nn.Module]:
        return [self.make_cluster_heads()]

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.cluster_heads.train()

    def unlabeled_terms(self, batch: dict, labeled: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        x = batch["data"].to(self.device, non_blocking=True)
        n = x.shape[0]
        flips = random_flips(n, self.flip_probability)       # flags on the host: no device sync
        network = self.unwrapped_network()         # the decoder's block outputs are needed, not only its logits
        skips = network.encoder(torch.cat([x, flips.apply(random_intensity_view(x))]))
        blocks = decoder_stage_outputs(network.decoder, skips, upto=self.decoder_stages["decoder_full"])
        terms = {}
        with float32(self.device):
            # every sub-head of a level at once: (2n, heads, K) and (2n, heads, K, h, w), both views together
            p = self.cluster_heads["bottleneck"](skips[-1].float())
            terms["bottleneck"] = multihead_iic_loss(p[:n], p[n:])          # pooled: the flips do not matter
            for name, stage in self.decoder_stages.items():
                p = self.cluster_heads[name](blocks[stage].float())
                first = flips.apply(p[:n].flatten(1, 2)).view_as(p[n:])     # T(h(F(x))) = h(T(F(x)))
                terms[name] = multihead_dense_iic_loss(first, p[n:])
        # the release's consistency term, with gradient only when it is part of the loss; the segmentation
        # layer runs under nnU-Net's autocast (its input is float16 there), the softmax and MSE in float32
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.mi_consistency_weight != 0):
            logits = network.decoder.seg_layers[-1](blocks[-1])
            with float32(self.device):
                probabilities = torch.softmax(logits.float(), dim=1)
                consistency = F.mse_loss(probabilities[n:], flips.apply(probabilities[:n]).detach())
        mi = (self.mi_weight_encoder * terms["bottleneck"] + self.mi_weight_half * terms["decoder_half"]
              + self.mi_weight_full * terms["decoder_full"])
        loss = self.rampup_weight * (mi + self.mi_consistency_weight * consistency)
        return loss, {"mi_loss": mi.detach(), "mi_encoder": terms["bottleneck"].detach(),
                      "mi_half": terms["decoder_half"].detach(), "mi_full": terms["decoder_full"].detach(),
                      "mi_consistency": consistency.detach()}

    def extra_checkpoint_state(self) -> dict:
        return {CLUSTER_HEADS_KEY: self.cluster_heads.state_dict()}

    def load_extra_checkpoint_state(self, checkpoint: dict) -> None:
        self.require_checkpoint_keys(checkpoint, CLUSTER_HEADS_KEY)
        self.cluster_heads.load_state_dict(checkpoint[CLUSTER_HEADS_KEY])


# ---------------------------------------------------------------------- variants
class DiscreteMITrainer_consistency(DiscreteMITrainer):
    """The SPCL release's setting: the consistency term always on, w_c = 1."""
    mi_consistency_weight = 1.0


class AdversarialTrainer_image(AdversarialTrainer):
    """The discriminator sees [image, softmax] instead of the softmax alone."""
    discriminator_with_image = True

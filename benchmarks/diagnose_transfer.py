"""What does a pre-training hand over to fine-tuning, stage by stage? (issue #8's deficit)

SP-Con-initialised fine-tunings score below the scratch baseline in the demo and on the GPU run of
the acdc profile, and the earlier follow-up tied the loss to the pre-trained *shallow* encoder
stages. This script measures, for each encoder stage of the 2d network, what the weights of each
given checkpoint do to real slices, next to nnU-Net's seeded random initialisation:

* ``dead``: share of the stage's output channels that are positive on fewer than 1 % of the pixels
  (after nnU-Net's LeakyReLU(0.01) such a channel passes almost nothing forward or backward);
* ``erank``: effective rank of the channels' covariance over pixels (exp of the entropy of the
  normalised eigenvalues; Roy & Vetterli 2007), as a share of the channel count;
* ``rms``: root mean square of the stage's output;
* ``grad``: ||dL/dW|| / ||W|| of the stage's conv weights for nnU-Net's Dice + CE loss on the
  validation slices' labels at the full-resolution output (the first step of a fine-tuning,
  before any update; decoder and heads are the checkpoint's or random, as ``-pretrained_weights``
  would leave them).

Slices: every preprocessed slice of ``spcl_folds.json``'s ``val`` cases (labels included),
centre-cropped or padded to the 2d patch as ``diagnose_pretraining.py`` does.

    python benchmarks/diagnose_transfer.py --preprocessed-folder $nnUNet_preprocessed/Dataset910_SyntheticACDC \\
        --checkpoint spcon=PATH/checkpoint_final.pth --checkpoint baseline=PATH/checkpoint_final.pth

CPU, one thread by default; reads checkpoints only and trains nothing.
"""

from __future__ import annotations

import argparse
import json
from os.path import join

import numpy as np
import torch

from diagnose_pretraining import build_network, centre_crop_or_pad, load_checkpoint

DEAD_SHARE = 0.01


def load_val_slices(preprocessed_folder: str, data_identifier: str, patch: tuple[int, ...]):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    with open(join(preprocessed_folder, "spcl_folds.json")) as f:
        val_cases = sorted(json.load(f)["val"])
    folder = join(preprocessed_folder, data_identifier)
    dataset = infer_dataset_class(folder)(folder, val_cases)
    images, labels = [], []
    for case in val_cases:
        data, seg, _, _ = dataset.load_case(case)
        data, seg = np.asarray(data[:], dtype=np.float32), np.asarray(seg[:], dtype=np.float32)
        for z in range(data.shape[1]):
            images.append(centre_crop_or_pad(data[:, z], patch))
            labels.append(centre_crop_or_pad(np.maximum(seg[:, z], 0), patch))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)).long()


def effective_rank(features: torch.Tensor) -> float:
    """features (N, C, *spatial) -> effective rank of the C x C covariance over N * pixels, / C."""
    x = features.transpose(0, 1).reshape(features.shape[1], -1).double()
    x = x - x.mean(1, keepdim=True)
    eig = torch.linalg.eigvalsh(x @ x.T / x.shape[1]).clamp_min(0)
    if eig.sum() <= 0:
        return 0.0
    p = eig / eig.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum())) / features.shape[1]


def stage_statistics(network, images: torch.Tensor, labels: torch.Tensor, loss_fn) -> list[dict]:
    network.eval()
    outputs: list[torch.Tensor] = []
    hooks = [stage.register_forward_hook(lambda _m, _i, out: outputs.append(out))
             for stage in network.encoder.stages]
    network.zero_grad(set_to_none=True)
    prediction = network(images)
    prediction = prediction[0] if isinstance(prediction, (list, tuple)) else prediction
    loss_fn(prediction, labels).backward()
    for hook in hooks:
        hook.remove()
    rows = []
    for s, (stage, out) in enumerate(zip(network.encoder.stages, outputs)):
        out = out.detach()
        positive = (out > 0).float().mean(dim=(0, *range(2, out.ndim)))
        weights = [m.weight for m in stage.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        w_norm = torch.sqrt(sum((w.detach() ** 2).sum() for w in weights))
        g_norm = torch.sqrt(sum((w.grad ** 2).sum() for w in weights if w.grad is not None))
        rows.append({"stage": s, "channels": int(out.shape[1]), "dead": float((positive < DEAD_SHARE).float().mean()),
                     "erank": effective_rank(out), "rms": float(out.pow(2).mean().sqrt()),
                     "grad": float(g_norm / w_norm)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preprocessed-folder", required=True)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="a checkpoint whose network_weights to measure (repeat)")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--configuration", default="2d")
    parser.add_argument("--seeds", type=int, default=2, help="random initialisations to measure (seeds 0..N-1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    make, configuration = build_network(join(args.preprocessed_folder, f"{args.plans}.json"),
                                        join(args.preprocessed_folder, "dataset.json"), args.configuration)
    images, labels = load_val_slices(args.preprocessed_folder, configuration.data_identifier,
                                     tuple(configuration.patch_size))
    loss_fn = DC_and_CE_loss({"batch_dice": configuration.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False},
                             {}, weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    print(f"{len(images)} validation slices, patch {tuple(configuration.patch_size)}; dead = positive on < "
          f"{DEAD_SHARE:.0%} of pixels; erank = effective rank / channels; grad = ||dL/dW|| / ||W||")
    models = [(f"random (seed {seed})", None, seed) for seed in range(args.seeds)]
    models += [(name, path, None) for name, path in (c.split("=", 1) for c in args.checkpoint)]
    results = {}
    for name, path, seed in models:
        if seed is not None:
            torch.manual_seed(seed)
        network = make()
        if path is not None:
            network.load_state_dict(load_checkpoint(path)["network_weights"])
        results[name] = stage_statistics(network, images, labels, loss_fn)
    for key in ("dead", "erank", "rms", "grad"):
        stages = len(next(iter(results.values())))
        print(f"\n{key:<30}" + "".join(f"{'stage ' + str(s):>10}" for s in range(stages)))
        for name, rows in results.items():
            print(f"{name[:30]:<30}" + "".join(f"{r[key]:>10.3f}" for r in rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

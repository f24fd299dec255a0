"""What the pre-training learns against what segmentation needs (issue #19, pre-training arm).

The representation probe of issue #19 found frozen pre-trained encoders no better than a random
one for segmentation. This asks why, stage by stage, with two linear read-outs of the same frozen
encoders (random: nnU-Net's He init with several seeds; SP-Con, L_con, SimCLR: the
``network_weights`` of finished pre-trainings):

* **what the pre-training learns**: the slice-position meta-label (partition of the slice in its
  scan, S from ``meta_labels.json``, the label SP-Con's positives are built from), read from each
  encoder stage's globally average-pooled features. Multinomial logistic regression with the L2
  penalty chosen by leave-patients-out CV (``diagnose_pretraining.probe``); validation accuracy.
* **what segmentation needs**: the class of each pixel, read from each stage's feature map
  (bilinearly upsampled to the patch) by a per-pixel multinomial logistic regression (a 1x1 conv,
  fixed L2 penalty ``--seg-l2`` on standardised features, fitted on ``--pixels-per-slice`` pixels
  per slice drawn half from foreground); scored on **every** pixel of the validation slices as
  the Dice of each foreground class pooled over the slices, and their mean.

Slices come from nnU-Net's preprocessed 2d data, centre-cropped / zero-padded to the plan's patch
(``diagnose_pretraining.load_slices``, segmentations padded with -1). The probes are fitted on the **pool**: every preprocessed
case except ``spcl_folds.json``'s ``val`` and ``test`` cases; they are scored on the ``val`` cases.
No test case is read. Labels below 0 (outside nnU-Net's mask) are ignored.

    python benchmarks/diagnose_features.py \\
        --preprocessed-folder $nnUNet_preprocessed/Dataset910_SyntheticACDC \\
        --encoder SP-Con=.../SPConPretrainTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.pth \\
        --encoder L_con=... --encoder SimCLR=... --random-seeds 0 1 2 --json features.json

CPU, one thread by default (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from os.path import dirname, isfile, join

import numpy as np
import torch

sys.path.insert(0, dirname(os.path.abspath(__file__)))
from diagnose_pretraining import build_network, fit_logreg, load_checkpoint, load_slices, probe, standardise  # noqa: E402


@torch.no_grad()
def stage_maps(network, images: torch.Tensor, patch: tuple[int, ...], batch: int = 64):
    """Yield (slice indices, [per stage: (B, C_s, *patch) upsampled map], [per stage: (B, C_s) GAP])."""
    network.eval()
    for i in range(0, len(images), batch):
        skips = network.encoder(images[i:i + batch])
        maps = [torch.nn.functional.interpolate(s, size=patch, mode="bilinear", align_corners=False)
                for s in skips]
        yield range(i, min(i + batch, len(images))), maps, [s.flatten(2).mean(-1) for s in skips]


def sample_pixels(seg: torch.Tensor, per_slice: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Per slice, flat indices of up to ``per_slice`` labelled pixels, half from the foreground
    where the slice has any."""
    picks = []
    for s in seg.flatten(1):
        fg = torch.nonzero(s > 0).flatten()
        bg = torch.nonzero(s == 0).flatten()
        n_fg = min(len(fg), per_slice // 2)
        n_bg = min(len(bg), per_slice - n_fg)
        picks.append(torch.cat([fg[torch.randperm(len(fg), generator=generator)[:n_fg]],
                                bg[torch.randperm(len(bg), generator=generator)[:n_bg]]]))
    return picks


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, classes: int) -> list[float]:
    """Dice of each foreground class over all labelled pixels given (NaN where the class is absent
    from both)."""
    keep = target >= 0
    pred, target = pred[keep], target[keep]
    out = []
    for c in range(1, classes):
        p, t = pred == c, target == c
        denominator = int(p.sum() + t.sum())
        out.append(float("nan") if denominator == 0 else 2 * int((p & t).sum()) / denominator)
    return out


def diagnose_encoder(network, data: dict, patch: tuple[int, ...], S: int, classes: int, per_slice: int,
                     seg_l2: float, seed: int) -> list[dict]:
    """Both read-outs for every encoder stage of one network."""
    pool, val = data["pool"], data["val"]
    generator = torch.Generator().manual_seed(seed)
    picks = sample_pixels(pool["seg"], per_slice, generator)
    n_stages = len(network.encoder.stages)
    pix_x: list[list[torch.Tensor]] = [[] for _ in range(n_stages)]
    pix_y: list[torch.Tensor] = []
    gap_pool: list[list[torch.Tensor]] = [[] for _ in range(n_stages)]
    for idx, maps, gaps in stage_maps(network, pool["x"], patch):
        for k, i in enumerate(idx):
            pix_y.append(pool["seg"][i].flatten()[picks[i]])
            for s in range(n_stages):
                pix_x[s].append(maps[s][k].flatten(1)[:, picks[i]].T)
        for s in range(n_stages):
            gap_pool[s].append(gaps[s])
    y_pix = torch.cat(pix_y)
    gap_val: list[list[torch.Tensor]] = [[] for _ in range(n_stages)]
    val_maps: list[list[torch.Tensor]] = [[] for _ in range(n_stages)]
    for _, maps, gaps in stage_maps(network, val["x"], patch):
        for s in range(n_stages):
            gap_val[s].append(gaps[s])
            val_maps[s].append(maps[s].permute(0, 2, 3, 1).reshape(-1, maps[s].shape[1]))
    rows = []
    target_val = val["seg"].flatten()
    for s in range(n_stages):
        position = probe(torch.cat(gap_pool[s]).double(), pool["y"], pool["groups"],
                         torch.cat(gap_val[s]).double(), val["y"], S)
        x_pool = torch.cat(pix_x[s]).double()
        x_train, x_val = standardise(x_pool, torch.cat(val_maps[s]).double())
        w, b = fit_logreg(x_train, y_pix, classes, seg_l2)
        dice = dice_per_class((x_val @ w + b).argmax(1), target_val, classes)
        rows.append({"stage": s, "channels": int(x_pool.shape[1]),
                     "position_val_accuracy": position["logreg_val"], "position_l2": position["l2"],
                     "position_pool_cv": position["logreg_pool_cv"],
                     "segmentation_val_dice": dice, "segmentation_val_mean_dice": float(np.nanmean(dice))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preprocessed-folder", required=True, help="nnUNet_preprocessed/DatasetXXX_Name")
    parser.add_argument("--encoder", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="a pre-training checkpoint (its plans.json and dataset.json beside it); repeatable")
    parser.add_argument("--random-seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="seeds of the random (nnU-Net He init) encoders")
    parser.add_argument("--configuration", default="2d")
    parser.add_argument("--pixels-per-slice", type=int, default=32)
    parser.add_argument("--seg-l2", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0, help="seed of the pixel sampling")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the numbers to this JSON file")
    args = parser.parse_args()
    if not args.encoder:
        parser.error("give at least one --encoder NAME=CHECKPOINT")
    torch.set_num_threads(args.threads)
    t0 = time.time()

    encoders = {}
    for spec in args.encoder:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--encoder {spec!r}: expected NAME=CHECKPOINT")
        if not isfile(path):
            raise FileNotFoundError(f"--encoder {name}: checkpoint not found: {path}")
        encoders[name] = path
    first = next(iter(encoders.values()))
    make_network, cm = build_network(join(dirname(dirname(first)), "plans.json"),
                                     join(dirname(dirname(first)), "dataset.json"), args.configuration)
    patch = tuple(int(p) for p in cm.patch_size)
    if len(patch) != 2:
        raise ValueError(f"configuration {args.configuration!r} is not 2d (patch {patch})")
    with open(join(dirname(dirname(first)), "dataset.json")) as f:
        classes = len(json.load(f)["labels"])

    data, S = load_slices(args.preprocessed_folder, cm.data_identifier, patch, leave_out_test=True,
                          segmentations=True)
    print(f"slices: pool {len(data['pool']['y'])} from {len(data['pool']['cases'])} cases (val and test "
          f"cases left out), val {len(data['val']['y'])} from {len(data['val']['cases'])} cases; "
          f"S = {S}; {classes} classes; patch {patch}; {args.pixels_per_slice} pixels per pool slice", flush=True)

    networks = {}
    for seed in args.random_seeds:
        torch.manual_seed(seed)
        networks[f"random (seed {seed})"] = make_network()
    for name, path in encoders.items():
        net = make_network()
        net.load_state_dict(load_checkpoint(path)["network_weights"])
        networks[name] = net

    results = {}
    for name, net in networks.items():
        results[name] = diagnose_encoder(net, data, patch, S, classes, args.pixels_per_slice, args.seg_l2,
                                         args.seed)
        print(f"  {name}: done ({time.time() - t0:.0f} s)", flush=True)

    counts = np.bincount(data["val"]["y"].numpy(), minlength=S)
    majority = float(counts.max() / counts.sum())
    lines = [f"Slice-position accuracy (chance 1/S = {1 / S:.3f}, majority = {majority:.3f}) / "
             f"segmentation-probe mean foreground Dice (%) on the validation slices, per encoder stage",
             "", "| encoder | " + " | ".join(f"stage {r['stage']} ({r['channels']} ch)"
                                            for r in next(iter(results.values()))) + " |",
             "|---|" + "---|" * len(next(iter(results.values())))]
    for name, rows in results.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{r['position_val_accuracy']:.3f} / {100 * r['segmentation_val_mean_dice']:.1f}" for r in rows) + " |")
    table = "\n".join(lines)
    print("\n" + table + f"\n\n{time.time() - t0:.0f} s, {args.threads} thread(s)")
    if args.json:
        partial = args.json + ".partial"
        with open(partial, "w") as f:
            json.dump({"slices": {"pool": len(data["pool"]["y"]), "val": len(data["val"]["y"]),
                                  "partitions": S, "val_per_partition": counts.tolist(),
                                  "majority_val": majority},
                       "classes": classes, "patch": list(patch), "pixels_per_slice": args.pixels_per_slice,
                       "seg_l2": args.seg_l2, "encoders": encoders, "results": results,
                       "table": table}, f, indent=1)
        os.replace(partial, args.json)


if __name__ == "__main__":
    main()

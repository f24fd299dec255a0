"""Diagnose a finished SP-Con pre-training: is the meta-label in the features, and was it used?

Two questions about the checkpoints of one fold:

1. *Is the slice-position meta-label learnable from the pre-trained features?* The 2d network is
   built from the plans (``nnUNetTrainer.build_network_architecture``, the function nnU-Net itself
   uses) and loaded with (a) the pre-trained ``network_weights``, (b) a fresh random
   initialisation (nnU-Net's He init, seeded), (c) the fine-tuned and (d) the baseline weights.
   Every preprocessed slice of the pre-training pool (all preprocessed cases minus
   ``spcl_folds.json``'s ``val``) and of the validation cases is centre-cropped / zero-padded to
   the plan's 2d patch, run through ``network.encoder(x)[-1]`` (eval mode, no grad) and
   global-average-pooled into a feature vector. Its label is the slice partition from
   ``spcl_nnunet.contrastive.slices.preprocessed_slice_partitions`` (S from ``meta_labels.json``), exactly the
   label the pre-training used. Two linear read-outs are fitted on the pool slices and scored on
   the validation slices:

   * multinomial logistic regression (torch, L-BFGS, float64) on features standardised with the
     pool's mean / std, L2 penalty chosen from a small grid by leave-patients-out
     cross-validation on the pool (patients from ``meta_labels.json``'s ``patient`` key when it
     exists, else cases);
   * nearest centroid (Euclidean) on the same standardised features.

   Also printed: the logistic probe's accuracy on its own pool slices, and its leave-patients-out
   CV accuracy on the pool at the chosen penalty (more slices than the validation cases, but the
   pre-training itself was fitted on these slices and their labels, so it flatters the
   pre-trained rows).

   The projector output z of the pre-trained model (``projector_state``, applied to the
   pre-trained bottleneck) is probed the same way. Chance is 1/S; the share of the most frequent
   partition among the validation slices is printed as well.

2. *Was the pre-trained encoder loaded into the fine-tuned model, and how far did fine-tuning move
   it?* For the encoder's parameters (``network.encoder.named_parameters()``, each tensor once):
   relative L2 distance ||theta_X - theta_pre|| / ||theta_pre|| and cosine similarity of the
   flattened weights, for X = fine-tuned, baseline and the seeded random initialisation (the
   level of two unrelated networks). Rows: all encoder parameters, conv weights only (the
   InstanceNorm scales start at 1 in every network, which raises the cosine of unrelated
   networks), each encoder stage, and the decoder without the segmentation heads (nnU-Net's
   ``-pretrained_weights`` copies the untouched decoder of the pre-training checkpoint too).

    python benchmarks/diagnose_pretraining.py \\
        --results-folder $nnUNet_results/Dataset901_SyntheticCardiac \\
        --preprocessed-folder $nnUNet_preprocessed/Dataset901_SyntheticCardiac \\
        --pretrainer SPConPretrainTrainer_demo --finetuner SPConFinetuneTrainer_demo \\
        --baseline SPConBaselineTrainer_demo --fold 0

CPU, one thread by default (``--threads``); the synthetic demo dataset takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from os.path import isdir, isfile, join

import numpy as np
import torch

PROBE_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


# ---------------------------------------------------------------------- loading
def trainer_folder(results_folder: str, trainer: str, plans: str, configuration: str, fold: int) -> str:
    return join(results_folder, f"{trainer}__{plans}__{configuration}", f"fold_{fold}")


def load_checkpoint(path: str) -> dict:
    if not isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def build_network(plans_file: str, dataset_json_file: str, configuration: str):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    with open(dataset_json_file) as f:
        dataset_json = json.load(f)
    plans_manager = PlansManager(plans_file)
    configuration_manager = plans_manager.get_configuration(configuration)
    label_manager = plans_manager.get_label_manager(dataset_json)
    num_in = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)

    def make():
        return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_in,
                                                        label_manager.num_segmentation_heads,
                                                        enable_deep_supervision=True)
    return make, configuration_manager


def centre_crop_or_pad(slice_: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """(C, *spatial) -> (C, *patch): centred crop where larger, centred zero pad where smaller
    (0 is the background value nnU-Net pads normalised images with)."""
    out = slice_
    for axis, p in enumerate(patch, start=1):
        size = out.shape[axis]
        if size > p:
            start = (size - p) // 2
            out = np.take(out, np.arange(start, start + p), axis=axis)
        elif size < p:
            before = (p - size) // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, p - size - before)
            out = np.pad(out, pad, mode="constant", constant_values=0)
    return out


def load_slices(preprocessed_folder: str, data_identifier: str, patch: tuple[int, ...],
                leave_out_test: bool = False, segmentations: bool = False):
    """Every preprocessed slice with its partition label, split into pool and validation.

    ``leave_out_test`` also keeps ``spcl_folds.json``'s ``test`` cases out of the pool;
    ``segmentations`` adds each slice's segmentation (``"seg"``, cropped like the image, padded
    with -1 = ignored)."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from spcl_nnunet.data.metalabels import load_meta_labels
    from spcl_nnunet.contrastive.slices import preprocessed_slice_partitions

    meta = load_meta_labels(join(preprocessed_folder, "meta_labels.json"))
    folds_file = join(preprocessed_folder, "spcl_folds.json")
    with open(folds_file) as f:
        folds = json.load(f)
    for key in ("val", "test") if leave_out_test else ("val",):
        if key not in folds:
            raise ValueError(f"{folds_file} has no {key!r} list (expected the fold table written by "
                             f"'spcl_nnunet synthetic' or the converters)")
    val_cases = sorted(folds["val"])
    data_folder = join(preprocessed_folder, data_identifier)
    dataset_class = infer_dataset_class(data_folder)
    identifiers = sorted(dataset_class.get_identifiers(data_folder))
    missing = sorted(set(val_cases) - set(identifiers))
    if missing:
        raise ValueError(f"validation cases missing from {data_folder}: {missing}")
    pool_cases = sorted(set(identifiers) - set(val_cases) - set(folds["test"] if leave_out_test else ()))
    dataset = dataset_class(data_folder, identifiers)
    S = meta.slice_partitions
    out = {}
    for split, cases in (("pool", pool_cases), ("val", val_cases)):
        images, segs, labels, groups = [], [], [], []
        for case in cases:
            data, seg, _, props = dataset.load_case(case)
            data = np.asarray(data[:], dtype=np.float32)          # (C, Z, Y, X); Z = 2d slicing axis
            parts = preprocessed_slice_partitions(data.shape[1], props, S, case)
            group = meta.cases.get(case, {}).get("patient", case)
            for z in range(data.shape[1]):
                images.append(centre_crop_or_pad(data[:, z], patch))
                if segmentations:       # shifted by 1 so that the zero padding becomes -1
                    segs.append(centre_crop_or_pad(np.asarray(seg[:, z], dtype=np.float32) + 1, patch)[0] - 1)
                labels.append(int(parts[z]))
                groups.append(group)
        out[split] = {"x": torch.from_numpy(np.stack(images)), "y": torch.tensor(labels),
                      "groups": groups, "cases": cases}
        if segmentations:
            out[split]["seg"] = torch.from_numpy(np.stack(segs)).long()
    return out, S


@torch.no_grad()
def bottleneck_features(network, images: torch.Tensor, projector=None, batch: int = 32) -> torch.Tensor:
    network.eval()
    feats = []
    for i in range(0, len(images), batch):
        bottleneck = network.encoder(images[i:i + batch])[-1]
        feats.append(projector(bottleneck) if projector is not None else bottleneck.flatten(2).mean(-1))
    return torch.cat(feats).double()


# ---------------------------------------------------------------------- probes
def standardise(train: torch.Tensor, *others: torch.Tensor):
    mean, std = train.mean(0), train.std(0).clamp_min(1e-8)
    return [(t - mean) / std for t in (train, *others)]


def fit_logreg(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float, iters: int = 200):
    torch.manual_seed(0)
    w = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), b.detach()


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).double().mean())


def choose_l2(x: torch.Tensor, y: torch.Tensor, groups: list[str], classes: int,
              k: int = 5) -> tuple[float, float]:
    """L2 penalty with the best leave-groups-out CV accuracy on the pool (ties: the larger),
    and that accuracy."""
    unique = sorted(set(groups))
    k = min(k, len(unique))
    if k < 2:
        return PROBE_L2_GRID[len(PROBE_L2_GRID) // 2], float("nan")
    fold_of = {g: i % k for i, g in enumerate(unique)}
    folds = np.array([fold_of[g] for g in groups])
    best, best_acc = None, -1.0
    for l2 in PROBE_L2_GRID:
        correct = 0
        for f in range(k):
            tr, te = torch.from_numpy(folds != f), torch.from_numpy(folds == f)
            xtr, xte = standardise(x[tr], x[te])
            w, b = fit_logreg(xtr, y[tr], classes, l2)
            correct += int(((xte @ w + b).argmax(1) == y[te]).sum())
        acc = correct / len(y)
        if acc >= best_acc - 1e-12:
            best, best_acc = l2, acc
    return best, best_acc


def probe(f_pool: torch.Tensor, y_pool: torch.Tensor, groups: list[str], f_val: torch.Tensor,
          y_val: torch.Tensor, classes: int) -> dict:
    l2, cv = choose_l2(f_pool, y_pool, groups, classes)
    xp, xv = standardise(f_pool, f_val)
    w, b = fit_logreg(xp, y_pool, classes, l2)
    centroids = torch.stack([xp[y_pool == c].mean(0) if (y_pool == c).any()
                             else torch.full((xp.shape[1],), float("inf"), dtype=xp.dtype)
                             for c in range(classes)])
    return {"dim": f_pool.shape[1], "l2": l2, "logreg_pool_cv": cv,
            "logreg_val": accuracy((xv @ w + b).argmax(1), y_val),
            "logreg_pool": accuracy((xp @ w + b).argmax(1), y_pool),
            "centroid_val": accuracy(torch.cdist(xv, centroids).argmin(1), y_val)}


# ---------------------------------------------------------------------- weight distances
def param_groups(network) -> dict[str, dict[str, torch.Tensor]]:
    enc = {n: p.detach().double().flatten() for n, p in network.encoder.named_parameters()}
    groups = {"encoder, all parameters": enc,
              "encoder, conv weights": {n: p for n, p in enc.items() if n.endswith("conv.weight")}}
    stages = sorted({int(n.split(".")[1]) for n in enc if n.startswith("stages.")})
    for s in stages:
        groups[f"encoder stage {s}"] = {n: p for n, p in enc.items() if n.startswith(f"stages.{s}.")}
    groups["decoder w/o seg_layers"] = {n: p.detach().double().flatten()
                                       for n, p in network.decoder.named_parameters()
                                       if not n.startswith("encoder.") and "seg_layers" not in n}
    return groups


def flat(group: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([group[n] for n in sorted(group)])


def compare(reference: dict, other: dict) -> tuple[float, float]:
    a, b = flat(reference), flat(other)
    rel = float((b - a).norm() / a.norm())
    cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return rel, cos


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results-folder", required=True, help="nnUNet_results/DatasetXXX_Name")
    parser.add_argument("--preprocessed-folder", required=True, help="nnUNet_preprocessed/DatasetXXX_Name")
    parser.add_argument("--pretrainer", default="SPConPretrainTrainer")
    parser.add_argument("--finetuner", default="SPConFinetuneTrainer")
    parser.add_argument("--baseline", default="SPConBaselineTrainer")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--configuration", default="2d")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    t0 = time.time()
    folders = {name: trainer_folder(args.results_folder, tr, args.plans, args.configuration, args.fold)
               for name, tr in (("pre-trained", args.pretrainer), ("fine-tuned", args.finetuner),
                                ("baseline", args.baseline))}
    for name, folder in folders.items():
        if not isdir(folder):
            raise FileNotFoundError(f"{name} folder not found: {folder}")
    checkpoints = {name: load_checkpoint(join(folder, args.checkpoint)) for name, folder in folders.items()}
    pre_dir = os.path.dirname(folders["pre-trained"])
    make_network, cm = build_network(join(pre_dir, "plans.json"), join(pre_dir, "dataset.json"),
                                     args.configuration)
    patch = tuple(int(p) for p in cm.patch_size)
    if len(patch) != 2:
        raise ValueError(f"configuration {args.configuration!r} is not 2d (patch {patch})")

    networks = {}
    torch.manual_seed(args.seed)
    networks["random init"] = make_network()
    for name in ("pre-trained", "fine-tuned", "baseline"):
        net = make_network()
        net.load_state_dict(checkpoints[name]["network_weights"])
        networks[name] = net

    # ------------------------------------------------------------------ 1. linear probes
    data, S = load_slices(args.preprocessed_folder, cm.data_identifier, patch)
    pool, val = data["pool"], data["val"]
    counts = np.bincount(val["y"].numpy(), minlength=S)
    majority = counts.max() / counts.sum()
    print(f"slices: pool {len(pool['y'])} from {len(pool['cases'])} cases, val {len(val['y'])} from "
          f"{len(val['cases'])} cases; S = {S} partitions; val slices per partition {counts.tolist()}; "
          f"patch {patch}; chance 1/S = {1 / S:.3f}, majority partition of val = {majority:.3f}")

    from spcl_nnunet.networks.heads import ProjectionHead
    probes = {}
    order = [("pre-trained", "encoder GAP", None), ("pre-trained", "projector z", "projector"),
             ("random init", "encoder GAP", None), ("fine-tuned", "encoder GAP", None),
             ("baseline", "encoder GAP", None)]
    for weights, features, head in order:
        projector = None
        if head == "projector":
            state = checkpoints["pre-trained"].get("projector_state")
            if state is None:
                print("  (pre-trained checkpoint has no projector_state: projector row skipped)")
                continue
            projector = ProjectionHead(int(networks[weights].encoder.output_channels[-1]),
                                       hidden_dim=state["mlp.0.weight"].shape[0],
                                       out_dim=state["mlp.2.weight"].shape[0])
            projector.load_state_dict(state)
            projector.eval()
        f_pool = bottleneck_features(networks[weights], pool["x"], projector)
        f_val = bottleneck_features(networks[weights], val["x"], projector)
        probes[f"{weights} / {features}"] = probe(f_pool, pool["y"], pool["groups"], f_val, val["y"], S)

    print("\n1. slice-position probe (fit on pool slices, scored on validation slices)")
    header = f"{'weights / features':34s} | {'dim':>4s} | {'logreg val':>10s} | {'L2 (CV)':>7s} | " \
             f"{'logreg pool':>11s} | {'pool CV':>7s} | {'centroid val':>12s}"
    print(header)
    print("-" * len(header))
    for name, r in probes.items():
        print(f"{name:34s} | {r['dim']:4d} | {r['logreg_val']:10.3f} | {r['l2']:7.0e} | "
              f"{r['logreg_pool']:11.3f} | {r['logreg_pool_cv']:7.3f} | {r['centroid_val']:12.3f}")
    print(f"chance 1/S = {1 / S:.3f}; majority partition of val = {majority:.3f}. 'logreg pool': the probe "
          f"on its own training slices; 'pool CV': leave-patients-out accuracy on the pool at the chosen L2 "
          f"(more slices than val, but the pre-training saw these slices and their labels)")

    # ------------------------------------------------------------------ 2. weight distances
    groups = {name: param_groups(net) for name, net in networks.items()}
    reference = groups["pre-trained"]
    rows = []
    for group in reference:
        row = {"group": group, "params": int(flat(reference[group]).numel()),
               "norm_pre": float(flat(reference[group]).norm())}
        for other in ("fine-tuned", "baseline", "random init"):
            row[other] = compare(reference[group], groups[other][group])
        rows.append(row)
    print("\n2. distance to the pre-trained weights: relative L2 ||X - pre|| / ||pre||, cosine(X, pre)")
    header = (f"{'parameters':24s} | {'#params':>9s} | {'fine-tuned rel':>14s} | {'cos':>6s} | "
              f"{'baseline rel':>12s} | {'cos':>6s} | {'random rel':>10s} | {'cos':>6s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['group']:24s} | {r['params']:9d} | {r['fine-tuned'][0]:14.3f} | {r['fine-tuned'][1]:6.3f} | "
              f"{r['baseline'][0]:12.3f} | {r['baseline'][1]:6.3f} | {r['random init'][0]:10.3f} | "
              f"{r['random init'][1]:6.3f}")
    enc = rows[0]
    ratio = enc["baseline"][0] / max(enc["fine-tuned"][0], 1e-12)
    verdict = "loaded" if enc["fine-tuned"][0] < 0.5 * enc["baseline"][0] else "NOT evidently loaded"
    print(f"fine-tuned encoder is {ratio:.1f}x closer to the pre-trained encoder than the baseline is: "
          f"pre-trained weights {verdict}")
    print(f"\n{time.time() - t0:.0f} s, {args.threads} thread(s)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"slices": {"pool": len(pool["y"]), "val": len(val["y"]), "partitions": S,
                                  "val_per_partition": counts.tolist(), "majority_val": float(majority)},
                       "probes": probes, "weights": rows}, f, indent=1)


if __name__ == "__main__":
    main()

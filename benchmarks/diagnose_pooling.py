"""Do the pooled bottleneck features still tell images apart? (issue #8's deficit, discrete MI)

SP-Con's projector and the discrete-MI bottleneck heads start with a global average pool of the
encoder's last stage (the method: GAP -> MLP). nnU-Net's blocks end in InstanceNorm + LeakyReLU, so
every channel of every image enters the pool with mean 0 and variance 1 before the LeakyReLU: its
spatial mean depends only on the shape of that channel's distribution, not on where or how strongly
it fires. This script measures how much of the image is left after the pool, on the validation slices
of ``spcl_folds.json``, for nnU-Net's seeded random initialisation and each given checkpoint:

* GAP after InstanceNorm + LeakyReLU (what the projector and cluster heads see);
* GAP of the last convolution's output, before its InstanceNorm;
* the flattened bottleneck (no pooling).

For each: the mean and minimum cosine similarity between the vectors of two different slices, and
the median over channels of std / |mean| across slices. CPU, one thread; trains nothing.

    python benchmarks/diagnose_pooling.py --preprocessed-folder $nnUNet_preprocessed/Dataset910_SyntheticACDC \\
        --checkpoint spcon=PATH/checkpoint_final.pth
"""

from __future__ import annotations

import argparse
from os.path import join

import torch

from diagnose_pretraining import build_network, load_checkpoint, load_slices
from spcl_nnunet.networks.unet_features import encode_with_last_conv


def similarity(features: torch.Tensor) -> str:
    """Pairwise cosine similarity of the rows (N, D) and the channels' relative spread."""
    features = features.double()
    unit = torch.nn.functional.normalize(features, dim=1)
    cosine = (unit @ unit.t())[~torch.eye(len(features), dtype=torch.bool)]
    spread = (features.std(0) / features.mean(0).abs().clamp_min(1e-8)).median()
    return f"cos mean {cosine.mean():.4f}, min {cosine.min():.4f}; channel std/|mean| median {spread:.3f}"


@torch.no_grad()
def pooled_views(network, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], tuple[int, ...]]:
    """The three views of the validation slices' bottleneck, and its shape (C, *spatial)."""
    network.eval()
    skips, last_conv = encode_with_last_conv(network.encoder, images)
    bottleneck = skips[-1]
    return {"GAP after InstanceNorm + LeakyReLU": bottleneck.flatten(2).mean(-1),
            "GAP of the last conv, before its InstanceNorm": last_conv.flatten(2).mean(-1),
            "flattened, no pooling": bottleneck.flatten(1)}, tuple(bottleneck.shape[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preprocessed-folder", required=True)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--plans", default="nnUNetPlans")
    parser.add_argument("--configuration", default="2d")
    parser.add_argument("--slices", type=int, default=64, help="validation slices used (the first N)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    make, configuration = build_network(join(args.preprocessed_folder, f"{args.plans}.json"),
                                        join(args.preprocessed_folder, "dataset.json"), args.configuration)
    data, _ = load_slices(args.preprocessed_folder, configuration.data_identifier, tuple(configuration.patch_size))
    images = data["val"]["x"][:args.slices]
    torch.manual_seed(args.seed)
    networks = {"random": make()}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--checkpoint expects NAME=PATH, got {item!r}")
        network = make()
        network.load_state_dict(load_checkpoint(path)["network_weights"])
        networks[name] = network
    print(f"{len(images)} validation slices, patch {tuple(configuration.patch_size)}")
    for name, network in networks.items():
        views, shape = pooled_views(network, images)
        print(f"{name}: bottleneck {shape}")
        for view, features in views.items():
            print(f"  {view:<48} {similarity(features)}")


if __name__ == "__main__":
    main()

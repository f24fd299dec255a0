"""nnU-Net's local logger, extended with SP-Con's per-epoch values.

nnU-Net's ``LocalLogger`` only accepts its own keys (``log`` asserts the key exists) and plots
``progress.png`` from them. ``SPConLocalLogger`` adds keys (contrastive loss, mean self-paced
weight, gamma, consistency loss, EMA decay, ...) and panels below nnU-Net's three that plot
them; trainers without segmentation validation (pre-training) drop the pseudo-Dice keys so that
the plot's epoch count (the shortest list) is not stuck at zero.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from nnunetv2.training.logging.nnunet_logger import LocalLogger, MetaLogger  # noqa: E402

DICE_KEYS = ("mean_fg_dice", "ema_fg_dice", "dice_per_class_or_region")


Panel = tuple[Sequence[str], Sequence[str]]   # keys on the left axis, keys on the right axis


class SPConLocalLogger(LocalLogger):
    """``panels``: one extra plot per entry, below nnU-Net's three; each entry names the keys
    drawn on its left axis and those drawn on its right axis (values of different scales, e.g.
    a loss and gamma)."""

    def __init__(self, panels: Sequence[Panel], with_dice: bool = True, verbose: bool = False):
        super().__init__(verbose)
        if not with_dice:
            for key in DICE_KEYS:
                del self.my_fantastic_logging[key]
        self.panels = [(tuple(left), tuple(right)) for left, right in panels]
        self.extra_keys = tuple(k for left, right in self.panels for k in (*left, *right))
        if len(set(self.extra_keys)) != len(self.extra_keys):
            raise ValueError(f"a key appears twice in the progress panels: {self.extra_keys}")
        for key in self.extra_keys:
            self.my_fantastic_logging[key] = []
        self.with_dice = with_dice

    def plot_progress_png(self, output_folder: str) -> None:
        fig = self.progress_figure()
        if fig is None:
            return
        fig.savefig(f"{output_folder}/progress.png")
        plt.close(fig)

    def progress_figure(self) -> Figure | None:
        """The figure ``plot_progress_png`` saves (None before the first complete epoch): nnU-Net's
        three plots (losses and pseudo Dice, epoch duration, learning rate), then one per panel;
        the caller closes it (``plt.close``)."""
        log = self.my_fantastic_logging
        epoch = min(len(v) for v in log.values()) - 1
        if epoch < 0:
            return None
        x = list(range(epoch + 1))
        fig, axes = plt.subplots(3 + len(self.panels), 1, figsize=(14, 5.5 * (3 + len(self.panels))))

        ax = axes[0]
        ax.plot(x, log["train_losses"][:epoch + 1], color="b", label="loss_tr", linewidth=2)
        ax.plot(x, log["val_losses"][:epoch + 1], color="r", label="loss_val", linewidth=2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(loc="upper left")
        if self.with_dice:
            ax2 = ax.twinx()
            ax2.plot(x, log["mean_fg_dice"][:epoch + 1], color="g", ls="dotted", label="pseudo dice")
            ax2.plot(x, log["ema_fg_dice"][:epoch + 1], color="g", label="pseudo dice (mov. avg.)")
            ax2.set_ylabel("pseudo dice")
            ax2.legend(loc="upper right")

        ax = axes[1]
        durations = [e - s for e, s in zip(log["epoch_end_timestamps"][:epoch + 1], log["epoch_start_timestamps"])]
        ax.plot(x, durations, color="b", label="epoch duration", linewidth=2)
        ax.set_ylim(0, max(durations) * 1.1 if durations else 1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("time [s]")
        ax.legend(loc="upper left")

        ax = axes[2]
        ax.plot(x, log["lrs"][:epoch + 1], color="b", label="learning rate", linewidth=2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.legend(loc="upper left")

        color = 0
        for ax, (left, right) in zip(axes[3:], self.panels):
            for keys, target, where in ((left, ax, "upper left"), (right, ax.twinx() if right else None, "upper right")):
                if target is None:
                    continue
                for key in keys:
                    target.plot(x, log[key][:epoch + 1], label=key, linewidth=2, color=f"C{color}")
                    color += 1
                target.set_ylabel(" / ".join(keys))
                target.legend(loc=where)
            ax.set_xlabel("epoch")
        fig.tight_layout()
        return fig


def install_local_logger(meta_logger: MetaLogger, panels: Sequence[Panel], with_dice: bool) -> SPConLocalLogger:
    """Replace the local logger of an nnU-Net ``MetaLogger`` (keeps wandb etc. untouched)."""
    meta_logger.local_logger = SPConLocalLogger(panels, with_dice, meta_logger.local_logger.verbose)
    return meta_logger.local_logger


@contextmanager
def progress_plot_skipped(meta_logger: MetaLogger) -> Iterator[None]:
    """Inside the block the logger's ``plot_progress_png`` draws nothing (nnU-Net's
    ``on_epoch_end`` calls it after every epoch; drawing costs ~1.8 s on 2 CPU cores)."""
    meta_logger.plot_progress_png = lambda output_folder: None
    try:
        yield
    finally:
        del meta_logger.plot_progress_png

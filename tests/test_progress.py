"""SPConLocalLogger: nnU-Net's local logger with extra keys and panels in progress.png."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from nnunetv2.training.logging.nnunet_logger import MetaLogger

from nnunet_helpers import png_size
from spcl_nnunet.training.base import SPConTrainerBase
from spcl_nnunet.training.progress import SPConLocalLogger, install_local_logger, progress_plot_skipped

PANELS = [(("supervised_loss",), ("consistency_loss",)), (("rampup_weight",), ("ema_decay",))]


def logged_meta_logger(folder: Path, epochs: int = 3) -> tuple[MetaLogger, SPConLocalLogger]:
    """Epoch e logs e + 1 under nnU-Net's keys and 10 * (i + 1) + e + 1 under the i-th extra key
    (each extra key its own values: a plot of the wrong key shows)."""
    meta = MetaLogger(str(folder), resume=False, verbose=False)
    logger = install_local_logger(meta, PANELS, with_dice=True)
    for epoch in range(epochs):
        for key in ("mean_fg_dice", "train_losses", "val_losses", "lrs", "epoch_start_timestamps",
                    "epoch_end_timestamps", "dice_per_class_or_region"):
            meta.log(key, [0.5, 0.5] if key == "dice_per_class_or_region" else float(epoch + 1), epoch)
        for i, key in enumerate(logger.extra_keys):
            meta.log(key, float(10 * (i + 1) + epoch + 1), epoch)
    return meta, logger


def plotted(fig) -> dict[int, list[tuple[str, list[float], str]]]:
    """Per row of the figure: (label, y values, ylabel of its axis) of every line, the row's own
    axis first, then its twin (right) axis."""
    rows: dict[int, list] = {}
    for ax in fig.axes:                  # twins come after every row's own axis
        row = ax.get_subplotspec().rowspan.start
        rows.setdefault(row, []).extend((line.get_label(), [float(y) for y in line.get_ydata()], ax.get_ylabel())
                                        for line in ax.get_lines())
    return rows


def test_extra_keys_are_logged_and_plotted(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    meta, logger = logged_meta_logger(tmp_path)
    assert meta.local_logger is logger
    assert logger.extra_keys == ("supervised_loss", "consistency_loss", "rampup_weight", "ema_decay")
    assert meta.get_value("ema_decay", None) == [41.0, 42.0, 43.0]
    fig = logger.progress_figure()
    try:
        rows = plotted(fig)
        assert [tuple(fig.get_size_inches())] == [(14.0, 27.5)]           # 5.5 in per row: 3 of nnU-Net's + 2 panels
    finally:
        plt.close(fig)
    assert sorted(rows) == [0, 1, 2, 3, 4]
    assert [label for label, _, _ in rows[0]] == ["loss_tr", "loss_val", "pseudo dice", "pseudo dice (mov. avg.)"]
    assert [label for label, _, _ in rows[2]] == ["learning rate"]
    # each panel: its left keys on the row's axis, its right keys on the twin axis, with their logged values
    assert rows[3] == [("supervised_loss", [11.0, 12.0, 13.0], "supervised_loss"),
                       ("consistency_loss", [21.0, 22.0, 23.0], "consistency_loss")]
    assert rows[4] == [("rampup_weight", [31.0, 32.0, 33.0], "rampup_weight"),
                       ("ema_decay", [41.0, 42.0, 43.0], "ema_decay")]
    logger.plot_progress_png(str(tmp_path))
    # the saved picture is that figure: 14 x 27.5 in at matplotlib's 100 dpi
    assert png_size(tmp_path / "progress.png") == (1400, 2750)
    with pytest.raises(AssertionError):
        meta.log("not_a_key", 1.0, 0)                       # nnU-Net's own check stays


def test_without_dice_nothing_before_the_first_epoch_and_several_keys_per_axis(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    logger = SPConLocalLogger([(("contrastive_loss", "mean_positive_weight"), ("gamma",)),
                               (("unweighted_loss_train",), ())], with_dice=False)
    assert logger.progress_figure() is None                 # no epoch logged yet: nothing to draw
    logger.plot_progress_png(str(tmp_path))
    assert not (tmp_path / "progress.png").exists()
    for key in ("train_losses", "val_losses", "lrs", "epoch_start_timestamps", "epoch_end_timestamps"):
        logger.log(key, 1.0, 0)
    for key, value in (("contrastive_loss", 2.0), ("mean_positive_weight", 0.25), ("gamma", 2.0),
                       ("unweighted_loss_train", 3.5)):
        logger.log(key, value, 0)
    fig = logger.progress_figure()
    try:
        rows = plotted(fig)
    finally:
        plt.close(fig)
    assert [label for label, _, _ in rows[0]] == ["loss_tr", "loss_val"]          # no pseudo-Dice axis
    assert rows[3] == [("contrastive_loss", [2.0], "contrastive_loss / mean_positive_weight"),
                       ("mean_positive_weight", [0.25], "contrastive_loss / mean_positive_weight"),
                       ("gamma", [2.0], "gamma")]
    assert rows[4] == [("unweighted_loss_train", [3.5], "unweighted_loss_train")]   # no twin without right keys


def test_without_dice_and_duplicate_keys() -> None:
    logger = SPConLocalLogger([(("contrastive_loss",), ("gamma",))], with_dice=False)
    assert "mean_fg_dice" not in logger.my_fantastic_logging and "gamma" in logger.my_fantastic_logging
    with pytest.raises(ValueError, match="twice"):
        SPConLocalLogger([(("gamma",), ()), ((), ("gamma",))])


def test_skipped_progress_plot_draws_nothing_and_then_draws_again(tmp_path: Path) -> None:
    meta, _ = logged_meta_logger(tmp_path)
    with progress_plot_skipped(meta):
        meta.plot_progress_png(str(tmp_path))
    assert not (tmp_path / "progress.png").exists()
    meta.plot_progress_png(str(tmp_path))                  # nnU-Net's method again, through the MetaLogger
    assert (tmp_path / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("every, epochs, rank, drawn", [
    (1, 4, 0, [0, 1, 2, 3]),          # nnU-Net's habit: after every epoch
    (5, 12, 0, [4, 9, 11]),           # every 5th and the last
    (4, 4, 0, [3]),                   # the last only
    (100, 3, 0, [2]),
    (1, 4, 1, []),                    # only rank 0 draws
])
def test_progress_plot_epochs(every: int, epochs: int, rank: int, drawn: list[int]) -> None:
    state = SimpleNamespace(progress_plot_every=every, num_epochs=epochs, local_rank=rank)
    ends = []
    for epoch in range(epochs):
        state.current_epoch = epoch
        if SPConTrainerBase.plots_progress_this_epoch(state):
            ends.append(epoch)
    assert ends == drawn

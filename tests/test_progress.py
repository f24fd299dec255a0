"""SPConLocalLogger: nnU-Net's local logger with extra keys and panels in progress.png."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from nnunetv2.training.logging.nnunet_logger import MetaLogger

from spcl_nnunet.training.base import SPConTrainerBase
from spcl_nnunet.training.progress import SPConLocalLogger, install_local_logger, progress_plot_skipped

PANELS = [(("supervised_loss",), ("consistency_loss",)), (("rampup_weight",), ("ema_decay",))]


def logged_meta_logger(folder: Path, epochs: int = 3) -> tuple[MetaLogger, SPConLocalLogger]:
    meta = MetaLogger(str(folder), resume=False, verbose=False)
    logger = install_local_logger(meta, PANELS, with_dice=True)
    for epoch in range(epochs):
        for key in ("mean_fg_dice", "train_losses", "val_losses", "lrs", "epoch_start_timestamps",
                    "epoch_end_timestamps", "dice_per_class_or_region", *logger.extra_keys):
            value = [0.5, 0.5] if key == "dice_per_class_or_region" else float(epoch + 1)
            meta.log(key, value, epoch)
    return meta, logger


def test_extra_keys_are_logged_and_plotted(tmp_path: Path) -> None:
    meta, logger = logged_meta_logger(tmp_path)
    assert meta.local_logger is logger
    assert logger.extra_keys == ("supervised_loss", "consistency_loss", "rampup_weight", "ema_decay")
    assert meta.get_value("ema_decay", None) == [1.0, 2.0, 3.0]
    logger.plot_progress_png(str(tmp_path))
    assert (tmp_path / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(AssertionError):
        meta.log("not_a_key", 1.0, 0)                       # nnU-Net's own check stays


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

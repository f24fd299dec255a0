"""SPConLocalLogger: nnU-Net's local logger with extra keys and panels in progress.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from nnunetv2.training.logging.nnunet_logger import MetaLogger

from spcl_nnunet.training.progress import SPConLocalLogger, install_local_logger

PANELS = [(("supervised_loss",), ("consistency_loss",)), (("rampup_weight",), ("ema_decay",))]


def test_extra_keys_are_logged_and_plotted(tmp_path: Path) -> None:
    meta = MetaLogger(str(tmp_path), resume=False, verbose=False)
    logger = install_local_logger(meta, PANELS, with_dice=True)
    assert meta.local_logger is logger
    assert logger.extra_keys == ("supervised_loss", "consistency_loss", "rampup_weight", "ema_decay")
    for epoch in range(3):
        for key in ("mean_fg_dice", "train_losses", "val_losses", "lrs", "epoch_start_timestamps",
                    "epoch_end_timestamps", "dice_per_class_or_region", *logger.extra_keys):
            value = [0.5, 0.5] if key == "dice_per_class_or_region" else float(epoch + 1)
            meta.log(key, value, epoch)
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

"""Progress of an experiment: one line per step, with the elapsed time and an ETA."""

from __future__ import annotations

import threading
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``h:mm:ss``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """One line per run started / finished, with elapsed time and an ETA from the finished runs."""

    def __init__(self, total: int, jobs: int, out: TextIO):
        self.total, self.jobs, self.out = total, jobs, out
        self.start = time.time()
        self.done = 0
        self.worked: list[float] = []       # durations of finished runs that trained or predicted
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            self.out.write(f"[{clock(time.time() - self.start)}] {text}\n")
            self.out.flush()

    def eta(self) -> str:
        """Mean duration of the runs that worked x the runs left / the jobs (``ETA ?`` before one)."""
        remaining = self.total - self.done
        if remaining == 0:
            return "done"
        if not self.worked:
            return "ETA ?"
        return f"ETA {clock(sum(self.worked) / len(self.worked) * remaining / self.jobs)}"

    def finished(self, seconds: float, worked: bool) -> tuple[int, str]:
        """Count a finished run (``worked``: it trained or predicted, so its time says something
        about the runs left); returns (runs done, ETA)."""
        with self.lock:
            self.done += 1
            if worked:
                self.worked.append(seconds)
            return self.done, self.eta()

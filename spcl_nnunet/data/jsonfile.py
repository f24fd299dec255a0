"""Reading the JSON files the plugin and nnU-Net write, with an error that names the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json(path: str | os.PathLike[str], what: str = "") -> Any:
    """The decoded content of the JSON file ``path``; ``ValueError`` naming it (after ``what``,
    e.g. "schedule file") when it is not valid JSON. The caller checks that the file exists."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{what + ' ' if what else ''}{path}: not valid JSON ({err})") from err

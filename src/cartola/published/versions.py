"""Integer model versions under ``serving_model/<name>/``: the one rule every part shares.

Light on purpose (no TensorFlow or TFX): the server, the runners and the tests list versions
without paying TFX's import time.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List

# A served version is a folder named by an integer; the Pusher's hidden staging folders
# (".staging-*") never match.
VERSION_DIR = re.compile(r"^\d+$")


def model_versions(base: Path) -> List[int]:
    """Integer versions present under a model's serving folder, ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir()
                  if p.is_dir() and VERSION_DIR.match(p.name))

"""Where Aurea keeps things on disk by default, decided in one place.

State (the SQLite database, local resources) lives in ``$AUREA_STATE_DIR``, else ``$AUREA_HOME``,
else ``~/.local/share/aurea``; downloaded models in ``$AUREA_HOME/models``, else
``~/.cache/aurea/models``. Tests point ``AUREA_STATE_DIR`` at a fresh directory per test, so no
run sees another's state while the model cache stays shared.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_db_path", "model_dir", "state_dir"]


def state_dir() -> Path:
    for var in ("AUREA_STATE_DIR", "AUREA_HOME"):
        value = os.environ.get(var)
        if value:
            return Path(value)
    return Path.home() / ".local" / "share" / "aurea"


def default_db_path() -> Path:
    """The one SQLite file the durable stores share by default."""
    return state_dir() / "aurea.db"


def model_dir() -> Path:
    home = os.environ.get("AUREA_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "aurea") / "models"

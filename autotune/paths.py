"""Where autotune keeps its state: the workspace folder (storage, artifacts, caches)."""

from __future__ import annotations

import os
from pathlib import Path

# The repository (or installed package) root holds the built-in catalogues.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def workspace() -> Path:
    """The folder for study storage, artifacts and caches: $AUTOTUNE_HOME or ./.autotune."""
    return Path(os.environ.get("AUTOTUNE_HOME", ".autotune")).resolve()


def cache_dir(kind: str) -> Path:
    path = workspace() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_storage_url() -> str:
    return f"sqlite:///{workspace() / 'autotune.db'}"

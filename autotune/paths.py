"""Where autotune keeps its state (the workspace folder: storage, artifacts, caches) and its built-in catalogues."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def _builtin_catalogues() -> Path:
    """The folder that holds the built-in studies/, search_spaces/, proxies/ and hardware/ catalogues.

    An installed wheel ships them as package data in autotune/catalogue/ (pyproject.toml maps the packages
    `autotune.catalogue.<folder>` onto the repository's top-level folders). A source checkout, editable install
    included, has no such folder in the package: there they are the live top-level folders of the repository, beside
    the package, so an edited catalogue takes effect without a reinstall.
    """
    shipped = files(__package__) / "catalogue"
    if shipped.is_dir():
        return Path(str(shipped))  # a wheel is installed unpacked: a real folder
    return Path(__file__).resolve().parent.parent


# The root of the built-in catalogues: the installed package data, or the repository in a source checkout.
PACKAGE_ROOT = _builtin_catalogues()


def workspace() -> Path:
    """The folder for study storage, artifacts and caches: $AUTOTUNE_HOME or ./.autotune."""
    return Path(os.environ.get("AUTOTUNE_HOME", ".autotune")).resolve()


def cache_dir(kind: str) -> Path:
    path = workspace() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_storage_url() -> str:
    return f"sqlite:///{workspace() / 'autotune.db'}"

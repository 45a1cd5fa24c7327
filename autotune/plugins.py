"""Finds the plugin classes (proxies, targets) defined in the modules of a package, by a name attribute."""

from __future__ import annotations

import importlib
import pkgutil


def discover(package: str, path, base: type, key: str, skip: set[str]) -> dict[str, type]:
    """Every subclass of `base` with a non-empty `key` attribute in the package's modules, by that key."""
    found: dict[str, type] = {}
    for module_info in pkgutil.iter_modules(path):
        if module_info.name in skip:
            continue
        module = importlib.import_module(f"{package}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, base) and value is not base and getattr(value, key):
                found[getattr(value, key)] = value
    return found

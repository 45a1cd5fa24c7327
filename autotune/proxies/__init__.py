"""Cheap proxy metrics that score a plan in seconds; one module per proxy, found by its `name`.

Adding a proxy = one module here defining a `Proxy` subclass + naming it in a proxies/*.toml recipe.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from autotune.proxies.base import Proxy, ProxyContext

__all__ = ["Proxy", "ProxyContext", "registered_proxies"]


@cache
def registered_proxies() -> dict[str, type[Proxy]]:
    found: dict[str, type[Proxy]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Proxy) and value is not Proxy and value.name:
                found[value.name] = value
    return found

"""Cheap proxy metrics that score a plan in seconds; one module per proxy, found by its `name`.

Adding a proxy = one module here defining a `Proxy` subclass + naming it in a proxies/*.toml recipe.
"""

from __future__ import annotations

from functools import cache

from autotune.plugins import discover
from autotune.proxies.base import Proxy, ProxyContext

__all__ = ["Proxy", "ProxyContext", "registered_proxies"]


@cache
def registered_proxies() -> dict[str, type[Proxy]]:
    return discover(__name__, __path__, Proxy, "name", skip={"base"})

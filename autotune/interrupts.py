"""Stops (SIGTERM, Ctrl-C) land between storage calls, never inside one.

A KeyboardInterrupt raised inside an SQLite write can leave that connection holding the database's lock: every later
write in the process, the record that the cycle stopped among them, then fails with "database is locked". The storage
runs each call shielded (ShieldedRDBStorage); a stop that arrives meanwhile is raised when the call returns.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading

import optuna

_depth = 0  # nesting of shielded calls on the main thread, where Python runs signal handlers
_pending: BaseException | None = None


@contextlib.contextmanager
def shielded():
    """Defer a stop requested through `interrupt` until the block has finished."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are handled on the main thread only
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            stop, _pending = _pending, None
            raise stop


def interrupt(stop: BaseException) -> None:
    """Raise `stop` now, or when the running storage call returns. Called from signal handlers."""
    global _pending
    if _depth:
        _pending = stop
        return
    raise stop


def on_ctrl_c(signum, frame) -> None:
    """A SIGINT handler that raises KeyboardInterrupt as Python's default does, outside storage calls."""
    interrupt(KeyboardInterrupt())


def install_ctrl_c() -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_ctrl_c)


def _shield(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        with shielded():
            return method(*args, **kwargs)

    return call


class ShieldedRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose public calls are never cut by a stop (see the module's doc)."""


# The public storage API, and the private calls Optuna's cache (_CachedStorage) makes to its backend.
_CALLED_BY_CACHE = ("_create_new_trial", "_get_best_trial_id", "_get_stale_trial_ids", "_get_trials", "_set_trial_param")
for _name in [n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")] + list(_CALLED_BY_CACHE):
    if callable(getattr(optuna.storages.RDBStorage, _name, None)):
        setattr(ShieldedRDBStorage, _name, _shield(getattr(optuna.storages.RDBStorage, _name)))

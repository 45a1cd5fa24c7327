"""A lineage's records in the Optuna storage: its cycles, what is deployed per target, its changelog, its lock.

Everything lives in the storage (the system of record), so every worker and the dashboard see it:
- study `<lineage>/lineage` (no trials) holds, as user attributes, `cycles` (one record per cycle),
  `deployed/<target>` (the stack of deployed versions, newest last) and `history` (every event);
- study `<lineage>/running` exists while a cycle runs: creating a study is atomic in every storage, so two
  processes can never both hold it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time

import optuna

from autotune.errors import AutotuneError

RECORD_SUFFIX = "/lineage"
LOCK_SUFFIX = "/running"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class LineageBusy(AutotuneError):
    """Another process is running a cycle of this lineage."""


class Lineage:
    def __init__(self, storage: optuna.storages.BaseStorage, name: str, create: bool = True) -> None:
        self.storage, self.name = storage, name
        record = f"{name}{RECORD_SUFFIX}"
        if not create and record not in {s.study_name for s in optuna.get_all_study_summaries(storage, False)}:
            raise AutotuneError(f"no lineage {name!r} in this storage (have {lineages(storage)})")
        self.study = optuna.create_study(storage=storage, study_name=record, load_if_exists=True)
        if "kind" not in self.study.user_attrs:
            self.study.set_user_attr("kind", "lineage")

    def _attrs(self) -> dict:
        """The record study's attributes as stored now (another process may have changed them)."""
        return optuna.load_study(study_name=self.study.study_name, storage=self.storage).user_attrs

    def _get(self, key: str, default):
        return self._attrs().get(key, default)

    # ------------------------------------------------------------ cycles

    def cycles(self) -> list[dict]:
        return self._get("cycles", [])

    def cycle(self, number: int) -> dict:
        for record in self.cycles():
            if record["cycle"] == number:
                return record
        raise AutotuneError(f"lineage {self.name!r} has no cycle {number} (have {[c['cycle'] for c in self.cycles()]})")

    def latest_cycle(self, finished: bool = False) -> dict | None:
        records = [c for c in self.cycles() if not finished or c.get("status") == "finished"]
        return records[-1] if records else None

    def save_cycle(self, record: dict) -> None:
        records = [c for c in self.cycles() if c["cycle"] != record["cycle"]] + [record]
        self.study.set_user_attr("cycles", sorted(records, key=lambda c: c["cycle"]))

    # ------------------------------------------------------------ deployments

    def deployed(self, target: str) -> list[dict]:
        return self._get(f"deployed/{target}", [])

    def current(self, target: str) -> dict | None:
        stack = self.deployed(target)
        return stack[-1] if stack else None

    def targets(self, attrs: dict | None = None) -> list[str]:
        attrs = self._attrs() if attrs is None else attrs
        return sorted(k.removeprefix("deployed/") for k, v in attrs.items() if k.startswith("deployed/") and v)

    def push(self, target: str, record: dict) -> None:
        self.study.set_user_attr(f"deployed/{target}", [*self.deployed(target), record])

    def pop(self, target: str) -> tuple[dict, dict | None]:
        stack = self.deployed(target)
        if len(stack) < 2:
            raise AutotuneError(
                f"lineage {self.name!r}: target {target!r} has {len(stack)} deployed version(s); "
                "rollback needs an earlier one to return to"
            )
        self.study.set_user_attr(f"deployed/{target}", stack[:-1])
        return stack[-1], stack[-2]

    # ------------------------------------------------------------ history

    def history(self) -> list[dict]:
        return self._get("history", [])

    def log(self, event: str, **details) -> dict:
        entry = {"event": event, "when": now(), "who": whoami(), **details}
        self.study.set_user_attr("history", [*self.history(), entry])
        self.publish()
        return entry

    def publish(self, events: int = 30) -> None:
        """The lineage's state as a markdown note on its record study, so optuna-dashboard shows it."""
        from optuna_dashboard import save_note

        attrs = self._attrs()  # read once for the whole note
        lines = [f"# Lineage {self.name}", "", "## Deployed", "", "| target | version | cycle | trial | when | who | why |"]
        lines.append("|---|---|---|---|---|---|---|")
        for target in self.targets(attrs):
            r = attrs[f"deployed/{target}"][-1]
            lines.append(f"| {target} | v{r['version']} | c{r['cycle']} | {r['trial']} | {r['when']} | {r['who']} | {r['why']} |")
        lines += ["", f"## History (last {events})", "", "| when | event | details |", "|---|---|---|"]
        for e in attrs.get("history", [])[-events:]:
            details = ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("event", "when", "who", "record", "deltas"))
            lines.append(f"| {e['when']} | {e['event']} | {details.replace('|', '/')} |")
        save_note(self.study, "\n".join(lines))

    # ------------------------------------------------------------ lock

    @contextlib.contextmanager
    def running(self):
        """Hold the lineage's cycle lock; refuses (LineageBusy) while another live process holds it."""
        name = f"{self.name}{LOCK_SUFFIX}"
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(), "cycle": None}
        lock = None
        for _ in range(3):
            try:
                lock = optuna.create_study(storage=self.storage, study_name=name)
                break
            except optuna.exceptions.DuplicatedStudyError:
                held = self.locked()
                if held is None:
                    continue  # released meanwhile: try again
                if not _stale(held):
                    raise LineageBusy(
                        f"lineage {self.name!r}: cycle {held.get('cycle')} is running (pid {held.get('pid')} on "
                        f"{held.get('host')} since {held.get('since')}); one cycle of a lineage runs at a time"
                    ) from None
                # Its holder died: remove that lock (by id, so a lock another process took meanwhile survives).
                with contextlib.suppress(KeyError):
                    self.storage.delete_study(held["_study_id"])
        if lock is None:
            raise LineageBusy(f"lineage {self.name!r}: could not take the cycle lock (another process keeps taking it)")
        self._lock = lock
        try:
            lock.set_user_attr("holder", holder)
            yield
        finally:
            with contextlib.suppress(KeyError):
                self.storage.delete_study(lock._study_id)

    def hold(self, cycle: int) -> None:
        """Record which cycle the held lock is for."""
        holder = self._lock.user_attrs.get("holder", {})
        self._lock.set_user_attr("holder", holder | {"cycle": cycle})

    def locked(self) -> dict | None:
        """The lock's holder ({} while it is being written), or None when no cycle runs."""
        try:
            lock = optuna.load_study(study_name=f"{self.name}{LOCK_SUFFIX}", storage=self.storage)
        except KeyError:
            return None
        return lock.user_attrs.get("holder", {}) | {"_study_id": lock._study_id}


def _stale(holder: dict) -> bool:
    """A lock whose holder is a dead process on this host (a killed run) may be taken over. A lock on another host
    is never taken over automatically (its process cannot be checked from here)."""
    if holder.get("host") != socket.gethostname() or "pid" not in holder:
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lineages(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(
        s.study_name.removesuffix(RECORD_SUFFIX)
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.study_name.endswith(RECORD_SUFFIX)
    )

"""`autotune watch`: a long-lived service that starts a warm cycle of a lineage when a trigger fires.

Triggers (the spec's [watch] table): a new checkpoint file in `model_dir`; drift of the recorded traffic
([replay] inputs), measured as the PSI of the FP32 model's output distribution against the one the latest cycle
was tuned on; a cadence (`every = "7d"`). One cycle of a lineage runs at a time (the lineage lock, shared by every
process on the storage). SIGTERM stops it cleanly: an idle watch exits at once, a running cycle is interrupted
(its completed trials are kept; the next cycle command resumes it).
"""

from __future__ import annotations

import calendar
import signal
import time
from pathlib import Path

from autotune.cycle import run_cycle
from autotune.errors import AutotuneError
from autotune.interrupts import interrupt
from autotune.lineage import Lineage, LineageBusy
from autotune.progress import console
from autotune.replay import load_recording, output_histogram, psi
from autotune.spec import StudySpec
from autotune.studies import storage_for
from autotune.workloads import load_workload
from autotune.workloads.base import file_sha256, with_checkpoint


class Stopped(KeyboardInterrupt):
    """Raised in a running cycle by SIGTERM; a KeyboardInterrupt so libraries unwind as they do on Ctrl-C."""


def log(message: str) -> None:
    console.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} watch: {message}", soft_wrap=True)


def _seconds_since(stamp: str) -> float:
    return time.time() - calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


class Watcher:
    def __init__(self, spec: StudySpec) -> None:
        watch = spec.watch
        if not (watch.model_dir or watch.drift_threshold is not None or watch.every_seconds):
            raise AutotuneError(f"{spec.path}: watch: no trigger; set model_dir, drift_threshold or every")
        if watch.drift_threshold is not None and not spec.replay.inputs:
            raise AutotuneError(f"{spec.path}: watch.drift_threshold: drift is measured on [replay] inputs; name them")
        self.spec = spec
        self.storage = storage_for(spec.storage)
        self.stopping = False
        self.in_cycle = False
        self.sizes: dict[Path, int] = {}  # a checkpoint is taken once its size stops changing between polls
        self.hashes: dict[tuple, str] = {}
        self.checked_traffic = ""  # the traffic file already found within the drift threshold

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True
        log(f"{signal.Signals(signum).name} received: stopping" + (" (interrupting the running cycle)" if self.in_cycle else ""))
        if self.in_cycle:
            self.in_cycle = False  # a second signal during the clean-up must not interrupt it
            interrupt(Stopped())  # raised between storage calls: the stop is recorded

    def serve(self, once: bool = False) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        watch = self.spec.watch
        log(
            f"{self.spec.name}: model_dir {watch.model_dir or '-'} ({watch.pattern}), "
            f"drift PSI > {watch.drift_threshold if watch.drift_threshold is not None else '-'} on {self.spec.replay.inputs or '-'}, "
            f"every {watch.every_seconds or '-'} s, polling every {watch.poll_seconds:g} s"
        )
        try:
            while not self.stopping:
                self.poll()
                if once:
                    break
                deadline = time.monotonic() + watch.poll_seconds
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(min(0.2, watch.poll_seconds))
        except Stopped:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log("stopped")
        return 0

    def poll(self) -> None:
        try:
            fired = self.trigger()
        except Exception as exc:  # a file rotated mid-read, a busy database: log it, try again next poll
            log(f"cannot check triggers: {type(exc).__name__}: {exc}")
            return
        if fired is None or self.stopping:
            return
        reason, model, new = fired
        log(f"trigger: {reason}")
        self.in_cycle = True
        try:
            outcome = run_cycle(self.spec, model or None, trigger=reason, new=new)
            log(f"cycle c{outcome.cycle} done" + (f" (exit code {outcome.exit_code}: regression)" if outcome.exit_code else ""))
        except LineageBusy as exc:
            log(f"skipped: {exc}")
        except Exception as exc:  # the service outlives one failed cycle; the cycle's record says why
            log(f"cycle failed: {type(exc).__name__}: {exc}")
        finally:
            self.in_cycle = False

    def trigger(self) -> tuple[str, str, bool] | None:
        """(why, model checkpoint, force a new cycle) of the first trigger that fires, else None."""
        lineage = Lineage(self.storage, self.spec.name)
        cycles = lineage.cycles()
        latest = cycles[-1] if cycles else None
        fired = self._new_checkpoint({c["identity"]["model"] for c in cycles})
        if fired:
            return fired
        if latest is None:
            if self.spec.watch.model_dir:
                return None  # waiting for the first checkpoint
            return "first cycle of the lineage", "", False
        if latest.get("status") in ("running", "interrupted"):  # stopped or killed mid-cycle: finish it first
            if lineage.locked() is not None:
                return None  # another process is running a cycle of this lineage
            return f"resume c{latest['cycle']} ({latest['status']})", latest.get("model", ""), False
        latest = lineage.latest_cycle(finished=True)  # a failed cycle waits for a new trigger
        if latest is None:
            return None
        model = latest.get("model", "")
        if self.spec.watch.drift_threshold is not None:
            try:
                fired = self._drift(latest, model, {c["identity"].get("replay") for c in cycles})
            except Exception as exc:  # a half-written traffic file must not silence the cadence
                log(f"cannot measure drift: {type(exc).__name__}: {exc}")
                fired = None
            if fired:
                return fired
        every = self.spec.watch.every_seconds
        if every and _seconds_since(latest["finished"]) >= every:
            return f"cadence: c{latest['cycle']} finished {_seconds_since(latest['finished']):.0f} s ago (every {every:g} s)", model, True
        return None

    def _new_checkpoint(self, known: set[str]) -> tuple[str, str, bool] | None:
        folder = self.spec.watch.model_dir
        if not folder:
            return None
        if not Path(folder).is_dir():
            raise AutotuneError(f"{self.spec.path}: watch.model_dir: {folder}: no such directory")
        files = sorted(Path(folder).glob(self.spec.watch.pattern), key=lambda p: p.stat().st_mtime)
        for path in reversed(files):
            size = path.stat().st_size
            settled = self.sizes.get(path) == size
            self.sizes[path] = size
            if not settled:
                continue  # may still be being written; taken at the next poll if unchanged
            if self._sha256(path) not in known:
                return f"new checkpoint {path.name}", str(path), False
            return None  # the newest settled file has had its cycle
        return None

    def _sha256(self, path: Path) -> str:
        """Hashed once per (path, size, mtime): a multi-GB checkpoint is not re-read on every poll."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self.hashes:
            self.hashes[key] = file_sha256(path)
        return self.hashes[key]

    def _drift(self, latest: dict, model: str, seen: set) -> tuple[str, str, bool] | None:
        path = Path(self.spec.replay.inputs)
        if not path.is_file():
            return None
        digest = file_sha256(path)[:16]
        if digest in seen or digest == self.checked_traffic:  # this traffic already had a cycle (or was checked)
            return None
        workload = load_workload(self.spec.workload)
        if model:
            workload = with_checkpoint(workload, model)
        recording = load_recording(path, workload)
        reference = latest["drift_reference"]
        outputs = workload.io.run_batched(workload.fp32_model(), recording.inputs)
        current = output_histogram(outputs, workload.io.output_kind, reference.get("edges"))
        value = psi(reference, current)
        threshold = self.spec.watch.drift_threshold
        if value > threshold:
            return f"drift: PSI {value:.3f} > {threshold:g} on {path.name} vs c{latest['cycle']}", model, False
        log(f"traffic {path.name} changed; PSI {value:.3f} <= {threshold:g}: no cycle")
        self.checked_traffic = digest
        return None

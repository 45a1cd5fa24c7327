"""The regression alert hook: a shell command (the JSON summary on its stdin) or an http(s) URL (a JSON POST)."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from autotune.progress import console

TIMEOUT_S = 30


def send_alert(hook: str, summary: dict) -> str:
    """Call the hook; returns what happened in one line (an alert that cannot be sent must not stop the cycle)."""
    body = json.dumps(summary, default=str).encode()
    try:
        if hook.startswith(("http://", "https://")):
            request = urllib.request.Request(hook, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                outcome = f"alert POSTed to {hook}: HTTP {response.status}"
        else:
            done = subprocess.run(hook, shell=True, input=body, capture_output=True, timeout=TIMEOUT_S)
            outcome = f"alert command exited {done.returncode}" + (
                f": {done.stderr.decode(errors='replace').strip()[:200]}" if done.returncode else ""
            )
    except Exception as exc:  # the network, a missing command, a timeout
        outcome = f"alert hook {hook!r} failed: {type(exc).__name__}: {exc}"
    console.print(outcome)
    return outcome

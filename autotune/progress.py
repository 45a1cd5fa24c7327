"""Rich progress bars shared by training, search and evaluation (trials done, ETA, a status field)."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Piped output (CI logs, `| tee`) would otherwise be cut to 80 columns and fold every table.
_probe = Console(stderr=True)
console = Console(stderr=True, width=None if _probe.is_terminal else max(200, shutil.get_terminal_size().columns))


def progress_bar(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=disable,
    )


@contextlib.contextmanager
def third_party_output_hidden() -> Iterator[None]:
    """Keep libraries' own progress bars (NNCF draws two per build on stdout) off the terminal:
    autotune shows one bar per phase on stderr."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield

"""Write an output folder all or nothing: build it beside OUT, rename it into place at the end.

The staging folder `.OUT.partial-PID` vanishes on any failure, Ctrl-C or SIGTERM; one left by a
process that was killed outright (SIGKILL, power loss) is removed by the next run that writes OUT.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from onnxforge.errors import BadInput, Terminated, termination_requested


def check_output(out: Path, force: bool) -> None:
    """Refuse an existing OUT without --force, or an OUT that cannot be created."""
    if out.exists() and not force:
        raise BadInput(f"output folder '{out}' already exists: pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise BadInput(f"output '{out}' exists and is not a folder: choose another path")
    parent = _nearest_existing(out.parent)
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise BadInput(f"cannot write the output folder '{out}': '{parent}' is not a writable folder")


@contextmanager
def staged_folder(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes OUT, on any failure or Ctrl-C it vanishes."""
    check_output(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_stages(out)
        stage = out.parent / f".{out.name}.partial-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as error:
        raise BadInput(f"cannot write the output folder '{out}': {error.strerror}") from None
    try:
        yield stage
        _move_into_place(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def remove_stale_stages(out: Path) -> list[Path]:
    """Delete the staging (and replaced) folders of OUT left by processes that no longer run; return them."""
    stale = [path for path in out.parent.glob(f".{out.name}.*-*")
             if _stage_pid(path, out.name) is not None and not _alive(_stage_pid(path, out.name))]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _stage_pid(path: Path, name: str) -> int | None:
    """The process id in `.NAME.partial-PID` or `.NAME.old-PID`, else None."""
    for kind in ("partial", "old"):
        tail = path.name.removeprefix(f".{name}.{kind}-")
        if tail != path.name and tail.isdigit():
            return int(tail)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _move_into_place(stage: Path, out: Path) -> None:
    if termination_requested():  # a library swallowed the Terminated raised while it ran: still leave nothing
        raise Terminated
    if not out.exists():
        stage.rename(out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path

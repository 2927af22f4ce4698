"""The export folder as one transaction: written into a temporary folder beside the target and
renamed into place when complete, never half-written, with Ctrl-C held over the renames and
the clean-up. What `Reconstruction.export` writes into it is up to the caller."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import FaceLiftError, OutputError, OutputExistsError
from .formats import OUTPUTS

#: What `Reconstruction.export` writes (`facelift.export.OUTPUTS`). A folder holding nothing but
#: these (with a params.json FaceLift wrote) is a previous export, which a new export may replace.
EXPORT_FILES = frozenset(f for files in OUTPUTS.values() for f in files)
_OS_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # a file browser's, not the user's
TMP_MARK = ".facelift-tmp-"  # in the names of export's temporary folders: .<name>.facelift-tmp-<pid>-...
_MAX_PARAMS_BYTES = 4 << 20
_NAME_MAX = 255  # bytes in one file name on common file systems
_TMP_TAIL = 8 + len("-old")  # the random part, and what `_move_into_place` appends to set the old one aside


def temporary_prefix(name: str) -> str:
    """The start of the temporary folders' names for the export folder `name`:
    `.<name>.facelift-tmp-<pid>-`. A name too long to leave room for the rest (a name of up to
    255 bytes is itself valid) is cut to its first characters plus a hash of the whole name, so
    the temporary name still fits and still differs from another long name's."""
    tail = f"{TMP_MARK}{os.getpid()}-"
    room = _NAME_MAX - _TMP_TAIL - len(tail) - 1  # 1: the leading dot
    raw = os.fsencode(name)
    if len(raw) > room:
        cut = raw[:room - 9].decode("utf-8", "ignore")  # whole characters only
        name = f"{cut}-{hashlib.sha1(raw).hexdigest()[:8]}"
    return f".{name}{tail}"


def _make_temporary(directory: Path) -> Path:
    """A new empty folder beside `directory`, named `temporary_prefix` + 8 random characters.
    Made by os.mkdir (not tempfile.mkdtemp, which makes it 0700): the finished export is this
    folder renamed, so its mode is the umask's, as for any folder the user makes."""
    prefix = temporary_prefix(directory.name)
    for _ in range(100):
        path = directory.parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {directory}")


@contextmanager
def export_folder(directory: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `directory` (an absolute path, checked with
    `check_export_target`); when the block ends normally, rename it to `directory`. On any
    error or Ctrl-C it is removed, and an OSError (disk full, permissions) becomes OutputError."""
    check_export_target(directory)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = _make_temporary(directory)
    except OSError as exc:
        raise OutputError(f"Cannot create the output folder {directory}: {exc.strerror or exc}.") from exc
    try:
        yield tmp
        with _interrupts_held():
            _move_into_place(tmp, directory)
    except BaseException as exc:
        with _interrupts_held():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, FaceLiftError):  # disk full, permissions
            raise OutputError(f"Could not write the reconstruction to {directory}: {exc.strerror or exc}.") \
                from exc
        raise


def check_export_target(directory: Path) -> None:
    """Raise OutputExistsError unless `directory` is absent, an empty folder or a previous
    FaceLift export (see `Reconstruction.export`)."""
    directory = Path(os.path.abspath(os.fspath(directory)))
    cwd = Path(os.path.abspath(os.getcwd()))
    if directory == cwd or directory in cwd.parents:
        raise OutputExistsError(
            f"Will not write the reconstruction over {directory}: it is the current folder or contains it. "
            "Give a new sub-folder, e.g. out/photo.")
    if not os.path.lexists(directory):
        return
    if directory.is_symlink():
        raise OutputExistsError(
            f"{directory} is a symbolic link; FaceLift does not replace links. Choose another output folder.")
    if not directory.is_dir():
        raise OutputExistsError(
            f"{directory} exists and is a file, not a folder; FaceLift will not replace it. "
            "Choose another output folder.")
    try:
        entries = list(directory.iterdir())
    except OSError as exc:
        raise OutputExistsError(f"Cannot look inside {directory} ({exc.strerror}); choose another output folder.") \
            from exc
    kept = [p for p in entries if p.name not in _OS_CLUTTER]
    if not kept:
        return  # empty: nothing to lose
    foreign = sorted(p.name for p in kept if p.name not in EXPORT_FILES or p.is_symlink() or not p.is_file())
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        why = f"it holds {', '.join(repr(n) for n in foreign[:3])}{more}, which FaceLift did not write"
    elif not _written_by_facelift(directory / "params.json"):
        why = "it has no params.json written by FaceLift"
    else:
        return  # a previous FaceLift export
    raise OutputExistsError(
        f"{directory} already exists and is not a FaceLift export ({why}). FaceLift only replaces an empty "
        "folder or its own earlier output, so nothing was changed: choose another output folder, or move "
        "those files away.")


def _written_by_facelift(params: Path) -> bool:
    """Whether `params` is a params.json that `Reconstruction.export` wrote."""
    try:
        if params.stat().st_size > _MAX_PARAMS_BYTES:
            return False
        data = json.loads(params.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"library_version", "pose", "sh_coefficients", "face_box"} <= set(data)


def _move_into_place(tmp: Path, directory: Path) -> None:
    """Rename the finished `tmp` to `directory`, replacing an existing (checked) one: the old
    folder is renamed aside first and put back if the rename fails, then removed."""
    if not os.path.lexists(directory):
        os.replace(tmp, directory)  # fails, changing nothing, if someone created it meanwhile
        return
    check_export_target(directory)  # again, right before replacing it
    old = tmp.with_name(tmp.name + "-old")
    os.replace(directory, old)
    try:
        os.replace(tmp, directory)
    except BaseException:
        os.replace(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _interrupts_held():
    """Hold Ctrl-C (SIGINT) until the block has finished, then deliver it: a file-system step
    that must not stop half-way (renames, clean-up). Python runs signal handlers in the main
    thread only, so elsewhere nothing needs holding."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    except (ValueError, OSError):  # no signals here (e.g. a sub-interpreter)
        yield
        return
    if previous is None:  # installed outside Python: the closest is Python's default
        previous = signal.default_int_handler
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, received[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)

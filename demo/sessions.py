"""What each session keeps (its reconstruction and its files), and the bound on how many are kept.

Session files go under one work folder, made on first use (`work_root`) and deleted at exit.
"""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

from demo.config import MAX_KEPT, MAX_KEPT_PER_CLIENT

log = logging.getLogger("facelift.app")

_work_root: Path | None = None
_work_root_lock = threading.Lock()


def work_root() -> Path:
    """The folder the sessions' files go under: made on first use (not at import), deleted at exit."""
    global _work_root
    with _work_root_lock:
        if _work_root is None:
            _work_root = Path(tempfile.mkdtemp(prefix="facelift-app-"))
            atexit.register(shutil.rmtree, _work_root, True)
        return _work_root


class SessionExpired(Exception):
    """The session's reconstruction was dropped (replaced, expired or evicted)."""


class Session:
    """What a browser tab (or API client session) keeps: its reconstruction and its files.

    Files go to folders under `work_root()`, one per export or turntable; gradio copies what a
    handler returns into its own cache, so only the newest export folder and the newest
    TURNTABLES_KEPT turntable folders are kept. `cleanup()` (a newer reconstruction, gr.State expiry, or eviction from KEPT)
    drops the reconstruction and deletes the folders; a folder still being written is deleted
    when its handler finishes."""

    def __init__(self, rec, name: str, photo: bytes | None = None, layers=None, address: str | None = None):
        self.rec = rec
        self.address = address  # the client's (`client_address`), for KEPT's per-client limit
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "face"
        self.photo = photo    # the photo as a JPEG (`keep_photo`), for the exports drawn over it
        self.layers = layers  # what the opacity slider blends (`overlay_layers`)
        self.dirs: list[tuple[str, Path]] = []
        self.glbs: dict[bool, Path] = {}  # the latest export's GLB with / without the details
        self.closed = False
        self._busy: set[Path] = set()
        self._lock = threading.Lock()

    def reconstruction(self):
        rec = self.rec
        if rec is None:
            raise SessionExpired
        KEPT.touch(self)
        return rec

    def new_dir(self, kind: str = "export") -> Path:
        with self._lock:
            if self.closed:
                raise SessionExpired
            path = Path(tempfile.mkdtemp(dir=work_root()))
            self.dirs.append((kind, path))
            return path

    @contextmanager
    def workdir(self, kind: str, keep: int | None = None):
        """A new folder for one handler's files; afterwards only the newest `keep` finished
        folders of this kind are kept (all are deleted if the session closed meanwhile)."""
        path = self.new_dir(kind)
        with self._lock:
            self._busy.add(path)
        try:
            yield path
        finally:
            with self._lock:
                self._busy.discard(path)
                done = [p for k, p in self.dirs if (k == kind or self.closed) and p not in self._busy]
                stale = done if self.closed else done[:-keep] if keep else []
                self._remove(stale)

    def _remove(self, paths) -> None:  # with self._lock held
        gone = set(paths)
        for path in gone:
            shutil.rmtree(path, ignore_errors=True)
        self.dirs = [(k, p) for k, p in self.dirs if p not in gone]

    def folders(self) -> list[Path]:
        return [p for _, p in self.dirs]

    def cleanup(self) -> None:
        with self._lock:
            self.closed = True
            self.rec = self.photo = self.layers = None  # the memory goes now, even if gradio keeps this object
            self._remove([p for _, p in self.dirs if p not in self._busy])
        KEPT.discard(self)


class KeptReconstructions:
    """The sessions holding a reconstruction, least recently used first, at most `limit`, and
    at most `per_client` of one client address: adding one more drops the oldest (of that
    address first; its visitor is asked to reconstruct again). This bounds memory whatever
    gradio does with sessions (its state lives an hour, or an hour after the tab closes, and
    gradio keeps up to 10,000 sessions)."""

    def __init__(self, limit: int, per_client: int | None = None):
        self.limit = max(1, int(limit))
        self.per_client = max(1, int(per_client)) if per_client is not None else self.limit
        self._sessions: OrderedDict[int, Session] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: Session) -> None:
        with self._lock:
            self._sessions[id(session)] = session
            evicted = []
            address = getattr(session, "address", None)
            if address is not None:
                same = [k for k, s in self._sessions.items() if getattr(s, "address", None) == address]
                evicted += [self._sessions.pop(k) for k in same[:-self.per_client]]
            while len(self._sessions) > self.limit:
                evicted.append(self._sessions.popitem(last=False)[1])
        for old in evicted:
            log.info("dropping the least recently used reconstruction (%d kept at most, %d per client address)",
                     self.limit, self.per_client)
            old.cleanup()

    def touch(self, session: Session) -> None:
        with self._lock:
            if id(session) in self._sessions:
                self._sessions.move_to_end(id(session))

    def discard(self, session: Session) -> None:
        with self._lock:
            if self._sessions.get(id(session)) is session:
                del self._sessions[id(session)]

    def __len__(self) -> int:
        return len(self._sessions)


KEPT = KeptReconstructions(MAX_KEPT, MAX_KEPT_PER_CLIENT)


def drop_session(value) -> None:
    """gr.State's delete_callback, and a new reconstruction: the old one's session closes."""
    if isinstance(value, Session):
        value.cleanup()

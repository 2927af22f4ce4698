"""The HTTP layer (issue 17), an ASGI middleware around the app gradio builds: security headers on
every response, the upload bytes per client address, the upload folder's disk budget, the job cap at
the door for /reconstruct, and the uploads deleted with their session."""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import threading
import time
from collections import OrderedDict

import gradio as gr

from demo.config import (
    EVICT_AFTER_S,
    MAX_BODY_BYTES,
    MAX_UPLOAD_MB,
    MB,
    UPLOAD_DISK_MB,
    UPLOAD_MB_PER_CLIENT,
    UPLOAD_WINDOW_S,
)
from demo.jobs import door_counts, door_joined, door_refusal, job_fn, paths_in_jobs
from demo.uploads import inside, named_paths, upload_root

log = logging.getLogger("facelift.app")

# (name, value) on every response. The Gradio front end needs inline scripts and styles (its config
# and Svelte's styles), string evaluation (it does not start without it), blob:/data: pictures, its
# theme's Google fonts.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
    "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
    "font-src 'self' data: https://fonts.gstatic.com",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "connect-src 'self' data: blob:",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    # instead of X-Frame-Options (which cannot name several sites): embeddable in its Hugging Face Space page
    "frame-ancestors 'self' https://huggingface.co https://*.hf.space",
])
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_JOB_ROUTE = re.compile(r"/gradio_api/(?:queue/join|(?:call/v2|call|run|api)/(?P<api>[^/]+))/?$")
_UPLOAD_ROUTE = re.compile(r"/gradio_api/upload/?$")


def _mb(nbytes: float) -> str:
    mb = nbytes / MB
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class UploadAllowance:
    """Bytes each client address may send within a sliding window (`charge`)."""

    def __init__(self, limit_bytes: float, window_s: float, max_clients: int = 10_000):
        self.limit, self.window, self.max_clients = int(limit_bytes), float(window_s), max_clients
        self._sent: OrderedDict[str, list[tuple[float, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def charge(self, address: str | None, nbytes: int, now: float | None = None) -> str | None:
        """None (and the bytes counted) if `address` may send `nbytes` more now; else why not."""
        now = time.monotonic() if now is None else now
        key = address or "unknown"
        with self._lock:
            sent = [(t, n) for t, n in self._sent.get(key, []) if now - t < self.window]
            used = sum(n for _, n in sent)
            if used + nbytes > self.limit:
                self._sent[key] = sent
                wait, freed = self.window, 0
                for t, n in sent:  # oldest first: when enough of it has left the window
                    freed += n
                    if used - freed + nbytes <= self.limit:
                        wait = t + self.window - now
                        break
                return (f"Your address has sent {_mb(used)} to this page in the last {_minutes(self.window)}; "
                        f"{_mb(self.limit)} is the most it accepts. Try again in {_minutes(wait)}.")
            self._sent[key] = sent + [(now, nbytes)]
            self._sent.move_to_end(key)
            while len(self._sent) > self.max_clients:
                self._sent.popitem(last=False)
        return None


def _files_under(root: str):
    """(mtime, size, path) of the regular files under `root` (symlinks are neither followed nor counted)."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield info.st_mtime, info.st_size, path


class DiskBudget:
    """gradio's upload/cache folder kept under `limit_bytes`: `make_room` evicts the oldest files
    that may go (older than `min_age_s`, not named by a queued or running job, not there before
    the app served: gradio's copies of the examples) and reserves room for a request underway."""

    def __init__(self, limit_bytes: float, min_age_s: float):
        self.limit, self.min_age = int(limit_bytes), float(min_age_s)
        self.reserved = 0
        self.protected: set[str] = set()
        self._lock = threading.Lock()

    def protect_existing(self) -> None:
        self.protected = {path for _, _, path in _files_under(upload_root())}

    def make_room(self, nbytes: int, in_use=frozenset()) -> bool:
        """True (and `nbytes` reserved until `release`) if the folder has room for `nbytes` more."""
        root = upload_root()
        with self._lock:
            files = sorted(_files_under(root))
            total = sum(size for _, size, _ in files)
            now, evicted = time.time(), 0
            for mtime, size, path in files:
                if total + self.reserved + nbytes <= self.limit:
                    break
                if now - mtime < self.min_age or path in in_use or path in self.protected:
                    continue
                try:
                    folder_is_old = now - os.lstat(os.path.dirname(path)).st_mtime >= self.min_age
                    os.unlink(path)
                except OSError:
                    continue
                total, evicted = total - size, evicted + 1
                if folder_is_old:  # not one an upload may be moving into now
                    _remove_empty_parent(path, root)
            if evicted:
                log.info("upload folder over its budget: evicted %d oldest files (%s left)", evicted, _mb(total))
            if total + self.reserved + nbytes > self.limit:
                return False
            self.reserved += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.reserved = max(0, self.reserved - nbytes)


def _remove_empty_parent(path: str, root: str) -> None:
    """The folder gradio made for one upload, once empty."""
    parent = os.path.dirname(path)
    if parent != root and inside(parent, root):
        try:
            os.rmdir(parent)
        except OSError:
            pass


class SessionUploads:
    """Which files in the upload folder each session's jobs named, so that they go when the
    session ends (`delete_session_uploads`); bounded (sessions beyond `max_sessions` are forgotten:
    their files then go with the disk budget or gradio's hourly cleanup)."""

    def __init__(self, max_sessions: int = 10_000, max_files: int = 64):
        self.max_sessions, self.max_files = max_sessions, max_files
        self._files: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, session: str, paths) -> None:
        with self._lock:
            files = self._files.setdefault(session, [])
            files += [p for p in paths if p not in files]
            del files[:-self.max_files]
            self._files.move_to_end(session)
            while len(self._files) > self.max_sessions:
                self._files.popitem(last=False)

    def forget(self, session: str) -> list[str]:
        """The session's files that no other session named."""
        with self._lock:
            mine = self._files.pop(session, [])
            others = {p for files in self._files.values() for p in files}
        return [p for p in mine if p not in others]


UPLOAD_ALLOWANCE = UploadAllowance(UPLOAD_MB_PER_CLIENT * MB, UPLOAD_WINDOW_S)
DISK = DiskBudget(UPLOAD_DISK_MB * MB, EVICT_AFTER_S)
SESSION_UPLOADS = SessionUploads()


def _delete_upload(path: str, root: str) -> bool:
    """Delete one uploaded file (a regular file, resolved inside the upload folder) and its folder if empty."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    try:
        if not inside(real, real_root) or not stat.S_ISREG(os.lstat(real).st_mode):
            return False
        os.unlink(real)
    except OSError:
        return False
    _remove_empty_parent(real, real_root)
    return True


def delete_session_uploads(request: gr.Request = None) -> None:
    """gradio's unload event (the tab closed, or an API client closed): the files this session's
    jobs named go now, unless another session named them too or a job still needs them."""
    session = getattr(request, "session_hash", None)
    if not session:
        return
    paths = SESSION_UPLOADS.forget(session)
    if not paths:
        return
    in_use, root = paths_in_jobs(), upload_root()
    deleted = sum(_delete_upload(p, root) for p in paths if p not in in_use and p not in DISK.protected)
    log.info("session ended: deleted %d of its %d uploaded files", deleted, len(paths))


class _OnResponseStart:
    """A `send` that calls `callback` once: when the response starts, or at `close()` if it never did."""

    def __init__(self, send, callback):
        self.send, self.callback, self.called = send, callback, False

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            self.close()
        await self.send(message)

    def close(self) -> None:
        if not self.called:
            self.called = True
            self.callback()


def _with_security_headers(send):
    names = {name for name, _ in SECURITY_HEADERS}

    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": headers + SECURITY_HEADERS}
        await send(message)
    return send_with_headers


async def _read_body(receive, keep: bool = True) -> tuple[bytes, bool]:
    """The request's body (at most MAX_BODY_BYTES + 1 of it; nothing without `keep`: a refused
    body is only drained) and whether the client disconnected."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        if keep and size <= MAX_BODY_BYTES:
            chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replaying(body: bytes, receive):
    """A `receive` that gives the app the body already read, then the client's own messages."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


_last_refusal: dict[str | None, float] = {}  # address -> time.monotonic() of its last 429 for bytes
REFUSAL_GRACE_S = 10.0


def _refused_recently(address: str | None) -> bool:
    """Whether `address` had a byte-allowance 429 in the last REFUSAL_GRACE_S seconds (and note
    this one): its first refusal is drained so the client reads the message; the ones a flooder
    sends after it are answered at once and the connection closed, so its bodies cost nothing."""
    now = time.monotonic()
    last = _last_refusal.get(address)
    if len(_last_refusal) > 10_000:
        _last_refusal.clear()
    _last_refusal[address] = now
    return last is not None and now - last < REFUSAL_GRACE_S


async def _refuse(send, status: int, message: str, as_json: bool, retry_after_s: float | None = None,
                  close: bool = False) -> None:
    import json

    if as_json:
        body, kind = json.dumps({"detail": message, "error": message}).encode(), b"application/json"
    else:
        body, kind = message.encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after_s))).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


NO_ROOM = "The server has no room for more uploads right now; try again in a few minutes."


class HttpGuard:
    """ASGI middleware around the app gradio builds (`launch(app_kwargs=http_guard_kwargs())`):
    security headers on every response; on POSTs to gradio's API a per-address byte allowance
    (429), a size cap (413) and a Content-Length (411); room in the disk budget for uploads and
    large bodies (503); the per-session/address cap on queued heavy jobs for /reconstruct (429,
    JSON); and it notes which uploaded files each session's jobs name (`delete_session_uploads`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_security_headers(send)
        path = scope.get("path", "")
        if scope.get("method") != "POST" or "/gradio_api/" not in path:
            return await self.app(scope, receive, send)
        upload = _UPLOAD_ROUTE.search(path) is not None
        job = _JOB_ROUTE.search(path)
        as_json = not upload
        client = scope.get("client")
        address = client[0] if client else None
        length = _content_length(scope)
        if length is None:
            return await _refuse(send, 411, "Send the request with a Content-Length.", as_json)
        if length > MAX_BODY_BYTES:
            return await _refuse(send, 413, f"The request is larger than the {MAX_UPLOAD_MB} MB this page accepts.",
                                 as_json)
        refusal = UPLOAD_ALLOWANCE.charge(address, length)
        if refusal is not None:
            log.info("refused %s from %s: %s", path, address, refusal)
            if _refused_recently(address):  # a client that keeps sending: answer without taking its body
                return await _refuse(send, 429, refusal, as_json, retry_after_s=60, close=True)
            await _read_body(receive, keep=False)  # read (not kept) so that the client gets the answer, not a reset
            return await _refuse(send, 429, refusal, as_json, retry_after_s=60)
        if job is None and not upload:
            return await self.app(scope, receive, send)
        joined = None
        if job is not None:
            body, gone = await _read_body(receive)
            if gone:
                return
            receive = _replaying(body, receive)
            refusal, counted = await self._job_refusal(job["api"], body, address)
            if refusal is not None:
                log.info("refused a job at the door from %s: %s", address, refusal)
                return await _refuse(send, 429, refusal, True, retry_after_s=10)
            if counted is not None:
                send = joined = _OnResponseStart(send, lambda: door_joined(*counted))
        try:
            await self._with_room(scope, receive, send, upload, length, as_json)
        finally:
            if joined is not None:
                joined.close()

    async def _with_room(self, scope, receive, send, upload: bool, length: int, as_json: bool):
        """The app, once the disk budget has room for an upload or a large body (a picture inside it)."""
        if not upload and length <= 64 * 1024:
            return await self.app(scope, receive, send)
        import anyio

        if not await anyio.to_thread.run_sync(DISK.make_room, length, paths_in_jobs()):
            log.warning("upload folder full (%s budget): refused %s", _mb(DISK.limit), scope.get("path"))
            if upload:
                await _read_body(receive, keep=False)
            return await _refuse(send, 503, NO_ROOM, as_json, retry_after_s=60)
        try:
            await self.app(scope, receive, send)
        finally:
            DISK.release(length)

    async def _job_refusal(self, api_name: str | None, body: bytes, address: str | None):
        """(why the job is refused or None, (session, address) if `door_refusal` counted it)."""
        import json

        try:
            if len(body) > MB:
                import anyio

                payload = await anyio.to_thread.run_sync(json.loads, body)
            else:
                payload = json.loads(body)
        except ValueError:
            return None, None  # gradio answers malformed requests itself
        if not isinstance(payload, dict):
            return None, None
        session = payload.get("session_hash")
        session = session if isinstance(session, str) and session else None
        fn = job_fn(api_name, payload)
        refusal = door_refusal(fn, session, address)
        if refusal is None and session is not None:
            paths = named_paths(payload.get("data"), upload_root())
            if paths:
                SESSION_UPLOADS.note(session, paths)
        return refusal, (session, address) if refusal is None and door_counts(fn) else None


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


def http_guard_kwargs() -> dict:
    """launch(app_kwargs=...) for the FastAPI app gradio builds: HttpGuard inside gradio's own
    CORS and compression middleware, and the files already in the upload folder kept."""
    from starlette.middleware import Middleware

    DISK.protect_existing()
    return {"middleware": [Middleware(HttpGuard)]}

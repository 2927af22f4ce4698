"""Small FaceLift bundles made in tests, and a fake Hugging Face Hub serving them.

`make_bundle` writes a real bundle (the shipped face model, tiny FAN and DRN) in well under
a second. `FakeHub` is a loopback-only HTTP server that answers the requests
`huggingface_hub` (2.x) makes for `snapshot_download` / `hf_hub_download`:

* ``GET /api/models/{repo}/revision/{rev}``: model info, ``{"id", "sha", "siblings"}``
* ``GET /api/models/{repo}/tree/{commit}?recursive=True``: the file listing
  (``type``, ``path``, ``size``, ``oid``); snapshot_download lists the tree of the commit
  that model info resolved
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``,
  a quoted ``ETag`` (the git blob sha1, as the Hub sends for non-LFS files) and ``Content-Length``
* errors as the Hub sends them: a status plus ``X-Error-Code`` (RepoNotFound,
  RevisionNotFound, EntryNotFound, GatedRepo), which huggingface_hub maps to its exceptions.

It speaks HTTP/1.0 (one request per connection), so once stopped nothing can still answer
on a kept-alive connection.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import torch

from facelift.models import DRN, FAN
from facelift.pipeline import BUNDLE_FORMAT_VERSION, CHECKPOINTS_DIR, DEFAULT_BUNDLE_CONFIG

CARD = "---\nlibrary_name: facelift\n---\n\n# Test bundle\n"


def make_bundle(directory: Path, seed: int = 0, *, fan_dtype: torch.dtype = torch.float32,
                pickles: bool = False) -> Path:
    """A loadable bundle: shipped face model, FAN and DRN at 128 px with ngf=2 (seeded)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CHECKPOINTS_DIR / "face_model.safetensors", directory / "face_model.safetensors")
    torch.manual_seed(seed)
    FAN(resolution=128, ngf=2).to(fan_dtype).save_pretrained(directory / "fan")
    DRN(resolution=128, ngf=2).save_pretrained(directory / "drn")
    config = {**DEFAULT_BUNDLE_CONFIG, "format_version": BUNDLE_FORMAT_VERSION, "library_version": "0.1.0",
              "components": {"face_model": "face_model.safetensors", "bnet": None, "fan": "fan", "drn": "drn"},
              "seed": seed}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "README.md").write_text(CARD)
    if pickles:  # never to be read: not valid pickles at all, so any attempt fails loudly
        (directory / "pytorch_model.bin").write_bytes(b"\x80\x04 this is not a pickle")
        (directory / "fan" / "pytorch_model.bin").write_bytes(b"\x80\x04 this is not a pickle")
    return directory


def folder_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(Path(directory).rglob("*"))
            if p.is_file()}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_sha(files: dict[str, bytes]) -> str:
    h = hashlib.sha1()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + git_blob_sha1(files[name]).encode())
    return h.hexdigest()


class FakeHub:
    """repos: {repo_id: {"refs": {name: commit}, "commits": {commit: {path: bytes}}}}."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.gated: set[str] = set()
        self.tokens: dict[str, str] = {}  # private repo -> token it needs
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                hub._handle(self, body=True)

            def do_HEAD(self):
                hub._handle(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)
        self._thread.start()
        self.running = True

    # ------------------------------------------------------------------ content
    def add_commit(self, repo_id: str, files: dict[str, bytes], *refs: str) -> str:
        sha = commit_sha(files)
        repo = self.repos.setdefault(repo_id, {"refs": {}, "commits": {}})
        repo["commits"][sha] = dict(files)
        for ref in refs:
            repo["refs"][ref] = sha
        return sha

    def add_folder(self, repo_id: str, folder: Path, *refs: str) -> str:
        return self.add_commit(repo_id, folder_files(folder), *refs)

    def requested(self, pattern: str) -> list[str]:
        with self._lock:
            return [path for _, path in self.requests if re.search(pattern, path)]

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=5)
            assert not self._thread.is_alive(), "the fake Hub did not stop"
            self.running = False

    # ------------------------------------------------------------------ serving
    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = urlsplit(h.path).path
        with self._lock:
            self.requests.append((h.command, path))
        try:
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path):
                repo_id, commit = self._resolve(unquote(m[1]), unquote(m[2]), h)
                files = self.repos[repo_id]["commits"][commit]
                info = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": repo_id in self.tokens,
                        "siblings": [{"rfilename": name} for name in sorted(files)]}
                return self._send(h, 200, json.dumps(info).encode(), body, {"Content-Type": "application/json"})
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
                repo_id, commit = self._resolve(unquote(m[1]), unquote(m[2]), h)
                files = self.repos[repo_id]["commits"][commit]
                folders = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
                tree = [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in folders]
                tree += [{"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
                         for name, data in sorted(files.items())]
                return self._send(h, 200, json.dumps(tree).encode(), body, {"Content-Type": "application/json"})
            if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                repo_id, commit = self._resolve(unquote(m[1]), unquote(m[2]), h)
                name = unquote(m[3])
                files = self.repos[repo_id]["commits"][commit]
                if name not in files:
                    return self._error(h, 404, "EntryNotFound", f"{name} does not exist", body,
                                       {"X-Repo-Commit": commit})
                data = files[name]
                return self._send(h, 200, data, body, {"Content-Type": "application/octet-stream",
                                                       "X-Repo-Commit": commit,
                                                       "ETag": f'"{git_blob_sha1(data)}"'})
            return self._error(h, 404, None, "Not Found", body)
        except _HubError as err:
            return self._error(h, err.status, err.code, err.message, body, err.headers)

    def _resolve(self, repo_id: str, revision: str, h) -> tuple[str, str]:
        if repo_id in self.gated:
            raise _HubError(403, "GatedRepo", "Access to this model is restricted")
        needs = self.tokens.get(repo_id)
        if needs is not None and h.headers.get("Authorization") != f"Bearer {needs}":
            raise _HubError(401, "RepoNotFound", "Repository not found")
        repo = self.repos.get(repo_id)
        if repo is None:
            raise _HubError(401, "RepoNotFound", "Repository not found")
        commit = repo["refs"].get(revision, revision)
        if commit not in repo["commits"]:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo_id, commit

    @staticmethod
    def _send(h, status: int, data: bytes, body: bool, headers: dict) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _error(self, h, status: int, code: str | None, message: str, body: bool, headers: dict | None = None):
        extra = {"Content-Type": "application/json", "X-Error-Message": message, **(headers or {})}
        if code:
            extra["X-Error-Code"] = code
        self._send(h, status, json.dumps({"error": message}).encode(), body, extra)


class _HubError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

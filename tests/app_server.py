"""Run `app.py` in a subprocess on a free loopback port, once per test session.

Used by tests/test_app.py (gradio_client) and tests/test_app_browser.py (playwright): the
first to ask starts the server, both share it, and it is terminated at the end of the
session (pytest config cleanup, with atexit as a backstop).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
START_TIMEOUT_S = 150  # loading the model and one warm-up reconstruction on a busy 2-core machine

_server: "AppServer | None" = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    def __init__(self, env: dict[str, str] | None = None, name: str = "app_server"):
        """`env`: variables for the app on top of this process's (FACELIFT_APP_* limits); its log
        goes to test-artifacts/<name>.log."""
        ARTIFACTS.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = ARTIFACTS / f"{name}.log"
        # the server's own upload folder (GRADIO_TEMP_DIR), so tests can check what it holds and
        # plant files in it (a FIFO, a symlink) the way a bug elsewhere on the server might
        self.upload_dir = Path(tempfile.mkdtemp(prefix="facelift-test-uploads-")).resolve()
        # GRADIO_ANALYTICS_ENABLED is left to the app's default (off: demo/config.py), which
        # tests/test_app.py checks
        env = {**{k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"},
               "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port), "PYTHONUNBUFFERED": "1",
               "GRADIO_TEMP_DIR": str(self.upload_dir), **(env or {})}
        self._log = open(self.log_path, "w")
        start = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - start

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with code {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"app.py did not answer on {self.url} within {START_TIMEOUT_S} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if not self._log.closed:
            self._log.close()
        shutil.rmtree(self.upload_dir, ignore_errors=True)


def app_server(config) -> AppServer:
    """The shared server; `config` is pytest's config (its cleanup stops the server)."""
    global _server
    if _server is None or _server.process.poll() is not None:
        _server = AppServer()
        server = _server
        config.add_cleanup(server.stop)
    return _server

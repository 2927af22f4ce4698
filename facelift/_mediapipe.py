"""Everything FaceLift does with MediaPipe itself: its solutions (FaceMesh, the face detector),
its mesh's edges, and its native start-up logging. `landmarks.LandmarkDetector` and
`face_model.topology` use it.

Nothing happens on import: `mediapipe` is imported, absl's verbosity set and fd 2 redirected
(only when asked) when a graph is first started.

The native start-up chatter: when a graph starts (and when FaceMesh first finds a face)
MediaPipe's C++ side writes a few lines straight to fd 2 ("INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.", absl's "WARNING: All log messages before absl::InitializeLog()
...", "W0000 ... inference_feedback_manager.cc:114] ..."). With mediapipe 0.10.21 no
environment variable set before the import silences them (GLOG_minloglevel,
GLOG_stderrthreshold, GLOG_v, TF_CPP_MIN_LOG_LEVEL: tried, no effect; the bindings use absl
logging and TFLite's own logger, and expose no log level). The only way is to catch fd 2 while
a graph starts and first runs. That redirect is process-wide: output of other threads written
meanwhile is held back until it ends (then passed on). So it is off by default, and only a
single-threaded program such as the command line turns it on (`quiet_native_startup_logs()`,
public as `facelift.landmarks.quiet_native_startup_logs`); a server (the Gradio app) keeps it
off and its log shows these lines once per detector.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading

#: The start-up lines dropped; anything else caught meanwhile (real errors) is passed on.
_NOISE = re.compile(
    r"^(INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$"
    r"|INFO: Initialized TensorFlow Lite runtime\.$"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|[IW]\d{4} [\d:.]+ +\d+ (inference_feedback_manager|landmark_projection_calculator)\.cc:\d+\] )"
)
_quiet_native = False
_fd2_lock = threading.Lock()  # one redirect at a time: nested ones could leave fd 2 lost


def quiet_native_startup_logs(enabled: bool = True) -> bool:
    """Drop MediaPipe's native start-up lines from stderr (see above) by redirecting fd 2
    for the moment a graph starts and first runs. For single-threaded programs (the CLI)
    only: another thread's stderr output is held back while the redirect lasts. Returns
    the previous setting."""
    global _quiet_native
    previous, _quiet_native = _quiet_native, bool(enabled)
    return previous


@contextlib.contextmanager
def filtered_native_stderr():
    """When enabled (`quiet_native_startup_logs`), capture fd 2 (where the C++ side writes,
    whatever `sys.stderr` is) and pass on everything except MediaPipe's start-up lines;
    otherwise nothing."""
    if not _quiet_native or not _fd2_lock.acquire(blocking=False):  # off, or never nest
        yield
        return
    try:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2
            yield
            return
        with tempfile.TemporaryFile(mode="w+b") as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (AttributeError, OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                kept = [ln for ln in tmp.read().splitlines(keepends=True)
                        if not _NOISE.match(ln.decode("utf-8", "replace").rstrip("\r\n"))]
                if kept:  # byte for byte as written, a missing final newline added
                    _write_all(2, b"".join(kept) + (b"" if kept[-1].endswith(b"\n") else b"\n"))
    finally:
        _fd2_lock.release()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def start_graph(factory, *args, **kwargs):
    """A MediaPipe solution `factory(*args, **kwargs)`, its start-up lines filtered when
    enabled. The graph opens its models on its own threads after the constructor returns,
    so when filtering, wait for that to finish inside the redirect."""
    with filtered_native_stderr():
        graph = factory(*args, **kwargs)
        if _quiet_native:
            try:
                graph._graph.wait_until_idle()  # SolutionBase's CalculatorGraph
            except Exception:  # a MediaPipe without it: some lines may show, nothing worse
                pass
    return graph


def solutions():
    """`mediapipe.solutions`, absl's Python logging turned down to errors first."""
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    import mediapipe as mp

    return mp.solutions


def tessellation_edges() -> frozenset:
    """MediaPipe's face-mesh tessellation: the edges (pairs of the 468 vertex indices) it ships
    instead of triangles (`face_model.topology` recovers those)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return FACEMESH_TESSELATION

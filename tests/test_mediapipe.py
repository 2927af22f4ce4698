"""The MediaPipe wrapping (facelift._mediapipe): its native start-up lines dropped from fd 2 only
when asked; nothing done on import."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_STARTUP_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                  "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                  ("W0000 00:00:1796124160.116995    5694 inference_feedback_manager.cc:114] Feedback manager "
                   "requires a model with a single signature inference. Disabling support for feedback tensors."))


def test_native_stderr_filter_drops_only_the_startup_lines(capfd, monkeypatch):
    """Written to fd 2 (as the C++ side does) while the filter is on: MediaPipe's start-up
    lines are dropped, anything else (a real error, another warning) is passed on as is."""
    from facelift import _mediapipe

    monkeypatch.setattr(_mediapipe, "_quiet_native", True)
    real = ["E0000 00:00:1796124160.1 5694 graph.cc:1] a real error",
            "W0000 00:00:1796124160.1 5694 other_calculator.cc:7] a warning that matters", "plain text"]
    with _mediapipe.filtered_native_stderr():
        os.write(2, ("\n".join([_STARTUP_NOISE[0], real[0], *_STARTUP_NOISE[1:], real[1]]) + "\n").encode())
        os.write(2, real[2].encode())  # no final newline
    assert capfd.readouterr().err == "\n".join(real) + "\n"
    monkeypatch.setattr(_mediapipe, "_quiet_native", False)  # the library default: fd 2 untouched
    with _mediapipe.filtered_native_stderr():
        os.write(2, (_STARTUP_NOISE[0] + "\n").encode())
    assert capfd.readouterr().err == _STARTUP_NOISE[0] + "\n"


def test_importing_touches_neither_mediapipe_nor_fd_2():
    """Importing the wrapping (and the landmarks and topology above it) loads no MediaPipe,
    leaves fd 2 and absl's logging alone; the CLI's switch is off."""
    code = (
        "import os, sys\n"
        "before = os.fstat(2)\n"
        "import facelift._mediapipe as mp, facelift.landmarks, facelift.face_model.topology\n"
        "after = os.fstat(2)\n"
        "assert (before.st_ino, before.st_dev) == (after.st_ino, after.st_dev)\n"
        "assert 'mediapipe' not in sys.modules and 'absl' not in sys.modules, 'imported'\n"
        "assert mp._quiet_native is False\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stdout + out.stderr

"""Face landmarks: MediaPipe FaceMesh (478 points per face, offline) in image space.

Points are `(x, y, z)` in pixels of the *input* image (docs/ARCHITECTURE.md image space);
`z` is MediaPipe's relative depth scaled to pixels (smaller = closer to the camera).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from .errors import InvalidImageError, NoFaceError

N_LANDMARKS = 478
N_MESH = 468  # the first 468 points are the face-mesh vertices; 468..477 are the irises

# MediaPipe's C++ side logs through glog/absl; keep warnings and errors, drop info spam.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# Start-up chatter MediaPipe's C++ side writes straight to fd 2 before its logging is set up.
_NOISE = re.compile(
    r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl|[IW]\d{4} .*\] )"
)


@contextlib.contextmanager
def _filtered_native_stderr():
    """Capture fd 2 and re-emit everything except MediaPipe's info/warning start-up lines."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured by a host)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines() if not _NOISE.match(ln)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _face_mesh_module():
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    import mediapipe as mp

    return mp.solutions.face_mesh


@dataclass
class Face:
    """One detected face: `points` (478, 3) float32 and `box` (x0, y0, x1, y1) of the 468 mesh points."""

    points: np.ndarray
    box: tuple[float, float, float, float]

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @classmethod
    def from_points(cls, points: np.ndarray) -> "Face":
        points = np.asarray(points, np.float32)
        mesh = points[:N_MESH, :2]
        x0, y0 = mesh.min(axis=0)
        x1, y1 = mesh.max(axis=0)
        return cls(points, (float(x0), float(y0), float(x1), float(y1)))


class LandmarkDetector:
    """MediaPipe FaceMesh wrapper. Thread-safe; use as a context manager or call `close()`."""

    def __init__(self, max_faces: int = 5, min_confidence: float = 0.5, pad_fraction: float = 0.3,
                 max_detect_side: int = 1280):
        if max_faces < 1:
            raise ValueError("max_faces must be at least 1")
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self.pad_fraction = pad_fraction
        self.max_detect_side = max_detect_side
        self._lock = threading.Lock()
        self._started = False
        with _filtered_native_stderr():
            self._mesh = _face_mesh_module().FaceMesh(
                static_image_mode=True,
                refine_landmarks=True,
                max_num_faces=max_faces,
                min_detection_confidence=min_confidence,
            )

    # ---- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._mesh is not None:
                self._mesh.close()
                self._mesh = None

    def __enter__(self) -> "LandmarkDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- detection ------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an HxWx3 uint8 RGB image, largest box first. Raises `NoFaceError`."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidImageError(
                f"Landmark detection needs an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}."
            )
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            raise InvalidImageError("Landmark detection got an empty image.")

        faces = self._detect_scaled(image)
        if not faces and self.pad_fraction > 0:
            # tight crops: MediaPipe's detector wants some context around the face
            py, px = int(round(h * self.pad_fraction)), int(round(w * self.pad_fraction))
            padded = np.pad(image, ((py, py), (px, px), (0, 0)), mode="edge")
            faces = self._detect_scaled(padded)
            for f in faces:
                f[:, 0] -= px
                f[:, 1] -= py
        if not faces:
            raise NoFaceError(
                f"No face was found in the {w}x{h} image. Use a photo where a face is clearly visible, "
                "roughly frontal and not too small."
            )
        out = [Face.from_points(p) for p in faces]
        out.sort(key=lambda f: f.area, reverse=True)
        return out

    def _detect_scaled(self, image: np.ndarray) -> list[np.ndarray]:
        """Run FaceMesh, downscaling huge images; points in `image`'s pixel coordinates."""
        h, w = image.shape[:2]
        if max(h, w) > self.max_detect_side:
            import cv2

            scale = self.max_detect_side / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        with self._lock:
            if self._mesh is None:
                raise RuntimeError("LandmarkDetector is closed.")
            image = np.ascontiguousarray(image)
            if self._started:
                result = self._mesh.process(image)
            else:  # the graph logs start-up messages until its landmark model first runs
                with _filtered_native_stderr():
                    result = self._mesh.process(image)
                self._started = bool(result.multi_face_landmarks)
        faces = []
        for lm in result.multi_face_landmarks or []:
            p = np.array([(q.x, q.y, q.z) for q in lm.landmark], np.float32)
            # normalised coordinates are resolution-free: scale straight to `image` pixels
            p *= np.array([w, h, w], np.float32)
            faces.append(p)
        return faces

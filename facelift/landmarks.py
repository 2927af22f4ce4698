"""Face landmarks: MediaPipe FaceMesh (478 points per face, offline) in image space.

Points are `(x, y, z)` in pixels of the *input* image (docs/ARCHITECTURE.md image space);
`z` is MediaPipe's relative depth scaled to pixels (smaller = closer to the camera).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._mediapipe import filtered_native_stderr, quiet_native_startup_logs, solutions, start_graph
from .errors import InvalidImageError, NoFaceError

# quiet_native_startup_logs is defined with the rest of the MediaPipe wrapping (_mediapipe) and
# public here, where the CLI and docs/ROBUSTNESS.md find it
__all__ = ["N_LANDMARKS", "N_MESH", "WIDE_SHOT_FRACTION", "Face", "LandmarkDetector", "quiet_native_startup_logs"]

N_LANDMARKS = 478
N_MESH = 468  # the first 468 points are the face-mesh vertices; 468..477 are the irises


@dataclass
class Face:
    """One detected face: `points` (478, 3) float32 and `box` (x0, y0, x1, y1) of the 468 mesh points;
    `score` is the face detector's confidence where known (faces found by the full-range
    detector; FaceMesh does not report one)."""

    points: np.ndarray
    box: tuple[float, float, float, float]
    score: float | None = None

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


# ---- full-range search for small faces -----------------------------------------------
# FaceMesh finds faces with the short-range BlazeFace, which sees the whole image at 128x128
# and misses faces smaller than about a tenth of the image (whole-body and group photos).
# For those the full-range BlazeFace is run on square tiles of the image, and FaceMesh
# again on a crop around each face it finds.

#: FaceMesh's detector finds faces down to about 1/10 of the image's longer side. Look for
#: more faces when the largest one it found is smaller than this fraction of the longer
#: side (a wide shot, where others may be smaller still); otherwise the photo is a portrait.
WIDE_SHOT_FRACTION = 0.15
#: Crop around a full-range detection: this many times the detection box's side ...
_CROP_EXPAND = 2.0
#: ... resampled to this side in pixels for FaceMesh.
_CROP_SIDE = 256
#: Boxes overlapping more than this (intersection over union) are the same face.
_SAME_FACE_IOU = 0.3

Box = tuple[float, float, float, float]


def _iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _contains(box: Box, x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _square_tiles(w: int, h: int) -> list[tuple[int, int, int]]:
    """Square tiles `(x0, y0, side)` covering a `w` x `h` image, overlapping by at least a
    quarter tile (so any face up to that size lies whole in one); a near-square image is
    one tile, `(0, 0, 0)` meaning "the whole image"."""
    side, long = min(w, h), max(w, h)
    if long <= 1.25 * side:
        return [(0, 0, 0)]
    n = math.ceil((long - side / 4) / (side * 3 / 4))  # (n * side - long) / (n - 1) >= side / 4
    starts = [round(i * (long - side) / (n - 1)) for i in range(n)]
    return [(s, 0, side) if w > h else (0, s, side) for s in starts]


def _crop_square(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray | None:
    """`image[y0:y0+side, x0:x0+side]`, edge-replicated where it reaches outside the image."""
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    pad = ((cy0 - y0, y0 + side - cy1), (cx0 - x0, x0 + side - cx1), (0, 0))
    return np.pad(image[cy0:cy1, cx0:cx1], pad, mode="edge")


class LandmarkDetector:
    """MediaPipe FaceMesh wrapper. Thread-safe; use as a context manager or call `close()`.

    With `find_small_faces` (default), images where FaceMesh finds no face, or only faces
    small for the image (see `WIDE_SHOT_FRACTION`), are also searched with MediaPipe's
    full-range face detector (on square tiles of the image, faces down to about 1/15 of its
    shorter side), then FaceMesh on a crop around each face it finds: whole-body and group
    photos. Portraits and selfies do not pay for it.
    """

    def __init__(self, max_faces: int = 20, min_confidence: float = 0.5, pad_fraction: float = 0.3,
                 max_detect_side: int = 1280, find_small_faces: bool = True):
        if max_faces < 1:
            raise ValueError("max_faces must be at least 1")
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self.pad_fraction = pad_fraction
        self.max_detect_side = max_detect_side
        self.find_small_faces = find_small_faces
        self._lock = threading.Lock()
        self._started: set[str] = set()  # graphs past their start-up log messages
        self._full_range: Any = None  # MediaPipe FaceDetection, created on first need
        self._mesh = start_graph(
            solutions().face_mesh.FaceMesh,
            static_image_mode=True,
            refine_landmarks=True,
            max_num_faces=max_faces,
            min_detection_confidence=min_confidence,
        )

    # ---- lifetime -------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            for graph in (self._mesh, self._full_range):
                if graph is not None:
                    graph.close()
            self._mesh = self._full_range = None

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
        out = [Face.from_points(p) for p in faces]
        largest = max((max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in (f.box for f in out)), default=0.0)
        if self.find_small_faces and len(out) < self.max_faces and largest < WIDE_SHOT_FRACTION * max(h, w):
            out += self._detect_small(image, out)
        if not out:
            raise NoFaceError(
                f"No face was found in the {w}x{h} image. Use a photo where a face is clearly visible: "
                "whole (not cut off by the border), turned less than about 60 degrees from the camera "
                "(not a profile) and not too small."
            )
        out.sort(key=lambda f: f.area, reverse=True)
        return out

    def _downscaled(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """`image` shrunk to at most `max_detect_side` pixels a side, and the scale factor."""
        h, w = image.shape[:2]
        if max(h, w) <= self.max_detect_side:
            return image, 1.0
        import cv2

        scale = self.max_detect_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale

    def _detect_scaled(self, image: np.ndarray) -> list[np.ndarray]:
        """Run FaceMesh, downscaling huge images; points in `image`'s pixel coordinates."""
        h, w = image.shape[:2]
        # normalised coordinates are resolution-free: scale straight to `image` pixels
        return [p * np.array([w, h, w], np.float32) for p in self._run_mesh(self._downscaled(image)[0])]

    def _detect_small(self, image: np.ndarray, known: list[Face]) -> list[Face]:
        """Faces the full-range detector finds that are not in `known` (FaceMesh on a crop
        around each), up to `max_faces` in all."""
        found: list[Face] = []
        for score, box in self._full_range_boxes(image):
            if len(known) + len(found) >= self.max_faces:
                break
            cx, cy = _centre(box)
            if any(_contains(f.box, cx, cy) for f in known + found):
                continue
            face = self._mesh_in_crop(image, box)
            if face is not None and all(_iou(face.box, f.box) <= _SAME_FACE_IOU for f in known + found):
                face.score = score
                found.append(face)
        return found

    def _full_range_boxes(self, image: np.ndarray) -> list[tuple[float, Box]]:
        """Full-range detector (score, box in `image` pixels), best first, overlaps merged."""
        small, scale = self._downscaled(image)
        sh, sw = small.shape[:2]
        scored = []
        for x0, y0, side in _square_tiles(sw, sh):
            tile = small[y0:y0 + side, x0:x0 + side] if side else small
            th, tw = tile.shape[:2]
            for score, (bx0, by0, bx1, by1) in self._run_full_range(tile):
                box = ((x0 + bx0 * tw) / scale, (y0 + by0 * th) / scale,
                       (x0 + bx1 * tw) / scale, (y0 + by1 * th) / scale)
                scored.append((score, box))
        scored.sort(key=lambda sb: sb[0], reverse=True)
        boxes: list[tuple[float, Box]] = []
        for score, box in scored:  # the same face seen in two overlapping tiles
            if all(_iou(box, b) <= _SAME_FACE_IOU for _, b in boxes):
                boxes.append((score, box))
        return boxes

    def _mesh_in_crop(self, image: np.ndarray, box: Box) -> Face | None:
        """FaceMesh on a square crop around a detector `box`; the face there containing the
        box centre (nearest it if several), in `image` pixels; None if FaceMesh finds none."""
        import cv2

        cx, cy = _centre(box)
        side = max(1, int(round(_CROP_EXPAND * max(box[2] - box[0], box[3] - box[1]))))
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        crop = _crop_square(image, x0, y0, side)
        if crop is None:
            return None
        interp = cv2.INTER_AREA if side > _CROP_SIDE else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (_CROP_SIDE, _CROP_SIDE), interpolation=interp)
        best, best_d = None, math.inf
        for p in self._run_mesh(crop):
            # normalised crop coordinates -> `image` pixels; z like x (crop width = `side`)
            face = Face.from_points(p * np.float32(side) + np.array([x0, y0, 0], np.float32))
            fx, fy = _centre(face.box)
            d = math.hypot(fx - cx, fy - cy)
            if _contains(face.box, cx, cy) and d < best_d:
                best, best_d = face, d
        return best

    # ---- MediaPipe graphs (one at a time, under the lock) -------------------------------
    def _run_mesh(self, image: np.ndarray) -> list[np.ndarray]:
        """FaceMesh on `image`: (478, 3) float32 points per face, normalised to its width/height."""
        with self._lock:
            if self._mesh is None:
                raise RuntimeError("LandmarkDetector is closed.")
            # the graph logs start-up messages until its landmark model first runs
            result = self._quietly("mesh", self._mesh.process, np.ascontiguousarray(image))
            if result.multi_face_landmarks:
                self._started.add("mesh")
        return [np.array([(q.x, q.y, q.z) for q in lm.landmark], np.float32)
                for lm in result.multi_face_landmarks or []]

    def _run_full_range(self, image: np.ndarray) -> list[tuple[float, Box]]:
        """Full-range face detector on `image`: (score, box normalised to its width/height)."""
        with self._lock:
            if self._mesh is None:
                raise RuntimeError("LandmarkDetector is closed.")
            if self._full_range is None:
                self._full_range = start_graph(
                    solutions().face_detection.FaceDetection,
                    model_selection=1, min_detection_confidence=self.min_confidence)
            result = self._quietly("full_range", self._full_range.process, np.ascontiguousarray(image))
            self._started.add("full_range")
        out = []
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            out.append((float(det.score[0]), (b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height)))
        return out

    def _quietly(self, graph: str, fn, *args, **kwargs):
        """`fn(*args, **kwargs)`, filtering native start-up chatter (when enabled, see
        `quiet_native_startup_logs`) until `graph` has started."""
        if graph in self._started:
            return fn(*args, **kwargs)
        with filtered_native_stderr():  # a no-op unless enabled
            return fn(*args, **kwargs)

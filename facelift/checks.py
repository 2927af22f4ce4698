"""What FaceLift refuses (a FaceLiftError saying why) and what it warns about: the face's size,
how much of it lies outside the photo, and how far it is turned."""

from __future__ import annotations

import numpy as np

from ._validate import is_int
from .errors import ExtremePoseError, FaceCutOffError, FaceIndexError, ImageTooSmallError
from .fitting import FitResult
from .landmarks import Face

MIN_FACE_SIZE = 40  # pixels across the face box
#: Share of the face's landmarks that may lie outside the photo (a face cut off by the
#: border): beyond this the face is refused with FaceCutOffError; up to it, it is
#: reconstructed, the parts outside marked invisible, and a warning recorded.
MAX_OUTSIDE_FRACTION = 0.35
#: |yaw| in degrees beyond which a face is refused as a profile (ExtremePoseError), and
#: beyond which a warning is recorded. MediaPipe's landmarks flatten strong turns: a face
#: turned ~70 degrees fits at ~60, and beyond ~70 degrees MediaPipe usually finds no face.
MAX_YAW_DEG = 75.0
WARN_YAW_DEG = 45.0
WARN_PITCH_DEG = 45.0


def check_face_index(face_index) -> int:
    """`face_index` as an int; FaceIndexError unless it is a whole number (not a bool)."""
    if not is_int(face_index):
        raise FaceIndexError(f"face_index must be a whole number (0 = the largest face), got {face_index!r}.")
    return int(face_index)


def pick_face(faces: list[Face], face_index: int) -> Face:
    """Face `face_index` of `faces`; FaceIndexError listing the faces when there is no such face,
    ImageTooSmallError when it is smaller than MIN_FACE_SIZE pixels across."""
    if not 0 <= face_index < len(faces):
        listed = "; ".join(f"{i}: {_box_text(f.box)}" for i, f in enumerate(faces))
        raise FaceIndexError(
            f"face_index={face_index}, but {len(faces)} face(s) were found (valid: 0..{len(faces) - 1}, "
            f"largest first; boxes x0,y0-x1,y1 in pixels: {listed}).")
    face = faces[face_index]
    x0, y0, x1, y1 = face.box
    if min(x1 - x0, y1 - y0) < MIN_FACE_SIZE:
        raise ImageTooSmallError(
            f"The face is only {int(x1 - x0)}x{int(y1 - y0)} pixels; FaceLift needs at least "
            f"{MIN_FACE_SIZE} pixels across the face. Use a larger or closer photo.")
    return face


def _box_text(box) -> str:
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    return f"{x0},{y0}-{x1},{y1}"


def face_outside_fraction(face: Face, width: int, height: int) -> float:
    """Share of the face's mesh landmarks that lie outside a `width` x `height` image
    (MediaPipe places the landmarks of a face cut off by the border beyond it)."""
    pts = np.asarray(face.points)[:, :2][:468]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= width) & (pts[:, 1] >= 0) & (pts[:, 1] <= height)
    return float(1.0 - inside.mean()) if len(pts) else 1.0


def check_face_in_image(face: Face, width: int, height: int) -> list[str]:
    """Raise FaceCutOffError when more than MAX_OUTSIDE_FRACTION of the face lies outside
    the image; return a warning (a list of one) when a noticeable part of it does."""
    outside = face_outside_fraction(face, width, height)
    if outside > MAX_OUTSIDE_FRACTION:
        raise FaceCutOffError(
            f"The face is cut off by the image border: about {outside * 100:.0f}% of it lies outside the photo, "
            f"and FaceLift needs at least {(1 - MAX_OUTSIDE_FRACTION) * 100:.0f}% of the face inside. "
            "Use a photo that shows the whole face.")
    if outside >= 0.01:
        return [f"About {outside * 100:.0f}% of the face is outside the photo (cut off by the border): "
                "its shape there is extrapolated and its texture is marked invisible (visibility.png)."]
    return []


def check_pose(fit: FitResult) -> list[str]:
    """Raise ExtremePoseError beyond MAX_YAW_DEG of yaw (a profile); warnings for strong turns."""
    yaw, pitch, _ = fit.yaw_pitch_roll()
    if abs(yaw) > MAX_YAW_DEG:
        raise ExtremePoseError(
            f"The face is turned {abs(yaw):.0f} degrees to the side (a profile). FaceLift reconstructs faces "
            f"turned up to {MAX_YAW_DEG:.0f} degrees: a profile shows too little of the face to unwrap its "
            "texture. Use a photo where both eyes can be seen.")
    out = []
    if abs(yaw) > WARN_YAW_DEG:
        out.append(f"The face is turned about {abs(yaw):.0f} degrees to the side: its far side is hidden in the "
                   "photo, so its texture there is marked invisible (visibility.png) and filled in by the model.")
    if abs(pitch) > WARN_PITCH_DEG:
        out.append(f"The face is tilted about {abs(pitch):.0f} degrees up or down: parts of it are hidden in the "
                   "photo and marked invisible (visibility.png).")
    return out

"""The 68 iBUG 300-W landmarks on the face model: which MediaPipe vertex stands for each
(facelift.evaluation.landmarks68 derives and checks the choice against ground truth)."""

from __future__ import annotations

import numpy as np

#: MediaPipe vertex per iBUG point 1..68.
IBUG68_FROM_MEDIAPIPE = np.array([
    # jaw 1-17 (subject's right ear -> chin -> left ear; image left -> right for a frontal face)
    234, 93, 132, 58, 172, 136, 149, 176, 152, 400, 378, 365, 397, 288, 361, 323, 454,
    # right brow 18-22, left brow 23-27
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 28-31, nostrils 32-36
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 37-42, left eye 43-48
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lips 49-60, inner lips 61-68
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)

#: iBUG regions (0-based slices of the 68 points).
REGIONS = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36), "eyes": slice(36, 48),
           "mouth": slice(48, 68)}
#: Indices of the non-jaw ("inner") points, the usual 51-point subset.
INNER = np.arange(17, 68)


def model_landmarks68(points_468: np.ndarray) -> np.ndarray:
    """The 68 iBUG points from (>=468, 2 or 3) per-vertex points (e.g. ``fit.project(model)``)."""
    return np.asarray(points_468)[IBUG68_FROM_MEDIAPIPE, :2]

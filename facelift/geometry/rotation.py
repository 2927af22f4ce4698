"""Rotations in model/camera space (docs/ARCHITECTURE.md: X image-right, Y up, Z towards the
camera; right-handed rotations, angles in degrees).

Two orders of the angles, on purpose:

- a head pose is `R = R_y(yaw) @ R_x(pitch) @ R_z(roll)` (`rotation_from_yaw_pitch_roll`,
  `yaw_pitch_roll`; what `FitResult.yaw_pitch_roll` and landmarks.json report);
- a renderer's view orbits the viewer about the posed face, `V = R_x(pitch) @ R_y(yaw) @ R_face`
  (`view_rotation`), so pitch stays about the screen's horizontal axis at any yaw.
"""

from __future__ import annotations

import math

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    """The (3, 3) cross-product matrix `[v]_x`: `skew(v) @ w == np.cross(v, w)`."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def rodrigues(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrix of rotation vector `r` and the left Jacobian of SO(3) at `r`.

    The left Jacobian J satisfies `exp(r + d) ~= exp(J d) exp(r)`, hence
    `d(R X)/dr = -[R X]_x J`.
    """
    th2 = float(r @ r)
    th = math.sqrt(th2)
    if th < 1e-4:  # Taylor series; exact enough far below double-precision noise
        a, b, c = 1.0 - th2 / 6.0, 0.5 - th2 / 24.0, 1.0 / 6.0 - th2 / 120.0
    else:
        a, b, c = math.sin(th) / th, (1.0 - math.cos(th)) / th2, (th - math.sin(th)) / (th2 * th)
    K = skew(r)
    K2 = K @ K
    eye = np.eye(3)
    return eye + a * K + b * K2, eye + b * K + c * K2


def rotation_from_yaw_pitch_roll(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """`R = R_y(yaw) @ R_x(pitch) @ R_z(roll)` (degrees); the inverse of `yaw_pitch_roll`."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("YXZ", [yaw, pitch, roll], degrees=True).as_matrix()


def yaw_pitch_roll(rotation: np.ndarray) -> tuple[float, float, float]:
    """Head pose in degrees, with `rotation = R_y(yaw) @ R_x(pitch) @ R_z(roll)`.

    Positive yaw turns the nose towards the image right (the subject's left); positive pitch
    tilts the nose down; positive roll turns the face counter-clockwise as seen in the image.
    """
    from scipy.spatial.transform import Rotation

    yaw, pitch, roll = Rotation.from_matrix(rotation).as_euler("YXZ", degrees=True)
    return float(yaw), float(pitch), float(roll)


def view_rotation(yaw: float = 0.0, pitch: float = 0.0, rotation_of_face=None) -> np.ndarray:
    """`R_x(pitch) @ R_y(yaw) @ rotation_of_face`, angles in degrees: a renderer's view
    (`render.Renderer`: positive yaw turns the face towards image-right, positive pitch tilts
    it down; `rotation_of_face`, the fitted `R`, defaults to the identity)."""
    a, b = np.deg2rad(yaw), np.deg2rad(pitch)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    face = np.eye(3) if rotation_of_face is None else np.asarray(rotation_of_face, float)
    if face.shape != (3, 3):
        raise ValueError(f"rotation_of_face must be (3, 3), got {face.shape}")
    return rx @ ry @ face


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking the direction of `a` to that of `b` (3-vectors)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    K = skew(v)
    return np.eye(3) + K + K @ K / (1 + c)

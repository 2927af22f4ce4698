"""Rotations (facelift.geometry.rotation): the exponential map, the head pose's and the view's
angle conventions, the rotation between two directions."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facelift.geometry.rotation import (
    rodrigues,
    rotation_between,
    rotation_from_yaw_pitch_roll,
    skew,
    view_rotation,
    yaw_pitch_roll,
)


def test_skew_is_the_cross_product():
    v, w = np.array([0.3, -1.2, 2.0]), np.array([1.5, 0.2, -0.7])
    np.testing.assert_allclose(skew(v) @ w, np.cross(v, w), atol=1e-15)
    np.testing.assert_allclose(skew(v), -skew(v).T)


@pytest.mark.parametrize("r", [[0.3, -0.8, 0.2], [1e-6, 0.0, 0.0], [0.0, 2.5, 0.4], [0.0, 0.0, 0.0]])
def test_rodrigues_is_the_exponential_map_with_its_left_jacobian(r):
    r = np.array(r, float)
    R, J = rodrigues(r)
    np.testing.assert_allclose(R, Rotation.from_rotvec(r).as_matrix(), atol=1e-12)
    for k in range(3):  # exp(r + d) ~= exp(J d) exp(r)
        d = np.zeros(3)
        d[k] = 1e-6
        left = Rotation.from_rotvec(J @ d).as_matrix() @ R
        np.testing.assert_allclose(rodrigues(r + d)[0], left, atol=1e-11)


def test_yaw_pitch_roll_round_trip_and_order():
    R = rotation_from_yaw_pitch_roll(-25, 12, 7)
    np.testing.assert_allclose(yaw_pitch_roll(R), (-25, 12, 7), atol=1e-9)
    ry, rx, rz = (Rotation.from_euler(axis, angle, degrees=True).as_matrix()
                  for axis, angle in (("y", -25), ("x", 12), ("z", 7)))
    np.testing.assert_allclose(R, ry @ rx @ rz, atol=1e-12)  # the pose: yaw, then pitch, then roll
    assert all(isinstance(a, float) for a in yaw_pitch_roll(R))


def test_view_rotation_is_pitch_after_yaw_after_the_face():
    face = rotation_from_yaw_pitch_roll(10, -5, 3)
    ry = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    rx = Rotation.from_euler("x", -20, degrees=True).as_matrix()
    np.testing.assert_allclose(view_rotation(30, -20, face), rx @ ry @ face, atol=1e-12)
    np.testing.assert_allclose(view_rotation(), np.eye(3))
    nose = view_rotation(yaw=30) @ np.array([0.0, 0.0, 1.0])
    assert nose[0] > 0  # positive yaw: the nose to image-right
    assert (view_rotation(pitch=30) @ np.array([0.0, 0.0, 1.0]))[1] < 0  # positive pitch: down
    with pytest.raises(ValueError, match="rotation_of_face must be"):
        view_rotation(rotation_of_face=np.eye(2))


@pytest.mark.parametrize("a, b", [([1, 0, 0], [0, 0, 1]), ([0.2, 0.9, -0.3], [0.5, -0.1, 0.8]),
                                  ([0, 0, 2], [0, 0, 5]), ([0, 0, 1], [0, 0, -3])])
def test_rotation_between_takes_a_to_b(a, b):
    a, b = np.array(a, float), np.array(b, float)
    R = rotation_between(a, b)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R @ (a / np.linalg.norm(a)), b / np.linalg.norm(b), atol=1e-12)

import numpy as np
import pytest
from scipy.io import savemat

from facelift.evaluation.landmarks68 import IBUG68_FROM_MEDIAPIPE, INNER, load_ground_truth, model_landmarks68, read_pts

# the iBUG 68 mirror permutation (0-based)
_PAIRS = ([(k, 16 - k) for k in range(8)] + [(17 + k, 26 - k) for k in range(5)] + [(31, 35), (32, 34)]
          + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
          + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])
_SELF = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]


@pytest.mark.slow
def test_mapping_is_68_distinct_vertices_and_left_right_symmetric(face_model):
    idx = IBUG68_FROM_MEDIAPIPE
    assert idx.shape == (68,) and len(set(idx.tolist())) == 68 and idx.max() < face_model.n_vertices
    assert len(INNER) == 51
    mirror = face_model.mirror
    for a, b in _PAIRS:
        assert mirror[idx[a]] == idx[b], (a + 1, b + 1)
    for a in _SELF:
        assert mirror[idx[a]] == idx[a], a + 1


def test_right_side_points_are_on_the_image_left_for_a_frontal_face(face_model):
    pts = model_landmarks68(np.stack([face_model.mean_shape[:, 0], -face_model.mean_shape[:, 1]], -1))
    assert pts[0, 0] < pts[16, 0] and pts[36, 0] < pts[45, 0] and pts[48, 0] < pts[54, 0]
    assert pts[19, 1] < pts[30, 1] < pts[57, 1] < pts[8, 1]  # brow above nose tip above lower lip above chin


def test_ground_truth_loaders(tmp_path, shared_file):
    pts = shared_file("data/faces/eval/eos/image_0010.pts")
    p = read_pts(pts)
    assert p.shape == (68, 2)
    assert np.allclose(load_ground_truth(pts.with_suffix(".png")), p)
    gt = np.random.default_rng(0).uniform(0, 400, (3, 68))
    savemat(tmp_path / "face.mat", {"pt3d_68": gt})
    assert np.allclose(load_ground_truth(tmp_path / "face.jpg"), gt[:2].T)
    assert load_ground_truth(tmp_path / "other.jpg") is None

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelift.errors import InvalidImageError, NoFaceError
from facelift.landmarks import N_LANDMARKS, Face, LandmarkDetector

REPO = Path(__file__).resolve().parents[1]

ASTRONAUT = REPO / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def detector():
    with LandmarkDetector() as d:
        yield d


@pytest.fixture(scope="module")
def astronaut():
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


def test_astronaut_one_face(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert f.points.shape == (N_LANDMARKS, 3) and f.points.dtype == np.float32
    # the face is in the upper middle of the 512x512 image
    x0, y0, x1, y1 = f.box
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 220
    assert 60 < x1 - x0 < 140 and 70 < y1 - y0 < 150
    xy = f.points[:, :2]
    assert (xy[:, 0] >= x0 - 1).all() and (xy[:, 0] <= x1 + 1).all()
    assert (xy[:, 1] >= y0 - 1).all() and (xy[:, 1] <= y1 + 1).all()
    # image space: y down, so the forehead (10) is above the chin (152); subject's right
    # eye corner (33) is on the image left of the left one (263); nose tip is closest (z)
    assert f.points[10, 1] < f.points[152, 1]
    assert f.points[33, 0] < f.points[263, 0]
    assert f.points[1, 2] < f.points[234, 2]
    assert f.area == pytest.approx((x1 - x0) * (y1 - y0))


def test_tight_crop_needs_padding(astronaut):
    with LandmarkDetector(pad_fraction=0.3) as padded, LandmarkDetector(pad_fraction=0.0) as plain:
        full = padded.detect(astronaut)[0]
        x0, y0, x1, y1 = (int(round(c)) for c in full.box)
        m = 20
        crop = np.ascontiguousarray(astronaut[y0 + m:y1 - m, x0 + m:x1 - m])
        with pytest.raises(NoFaceError):
            plain.detect(crop)
        faces = padded.detect(crop)
    assert len(faces) == 1
    # mapped back into the crop's coordinates: agrees with the full-image landmarks
    expected = full.points[:, :2] - np.array([x0 + m, y0 + m])
    err = np.linalg.norm(faces[0].points[:, :2] - expected, axis=1)
    assert np.median(err) < 0.08 * (x1 - x0)
    assert faces[0].box[0] < 0 and faces[0].box[1] < 0  # points reach outside the crop


def test_blank_image_raises(detector):
    with pytest.raises(NoFaceError, match="No face"):
        detector.detect(np.full((240, 320, 3), 127, np.uint8))


def test_bad_input_raises(detector):
    with pytest.raises(InvalidImageError):
        detector.detect(np.zeros((64, 64), np.uint8))


def test_large_image_is_downscaled(astronaut):
    big = np.asarray(Image.fromarray(astronaut).resize((2048, 2048), Image.BILINEAR))
    with LandmarkDetector(max_detect_side=640) as d:
        small = d.detect(astronaut)[0]
        large = d.detect(big)[0]
    assert np.allclose(np.array(large.box) / 4, small.box, atol=4)


def test_two_faces_largest_first(detector, shared_dir):
    path = shared_dir / "data/faces/eval/3ddfa_v2/trump_hillary.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    faces = detector.detect(np.asarray(Image.open(path).convert("RGB")))
    assert len(faces) == 2
    assert faces[0].area >= faces[1].area
    # two separate faces side by side
    assert faces[0].box[2] < faces[1].box[0] or faces[1].box[2] < faces[0].box[0]


def test_closed_detector_refuses():
    d = LandmarkDetector()
    d.close()
    d.close()
    with pytest.raises(RuntimeError):
        d.detect(np.full((64, 64, 3), 0, np.uint8))


def test_face_from_points_box():
    pts = np.zeros((N_LANDMARKS, 3), np.float32)
    pts[:468, 0] = np.linspace(10, 20, 468)
    pts[:468, 1] = np.linspace(5, 45, 468)
    pts[470] = (100, 100, 0)  # iris points do not count for the box
    f = Face.from_points(pts)
    assert f.box == (10.0, 5.0, 20.0, 45.0) and f.area == 400.0

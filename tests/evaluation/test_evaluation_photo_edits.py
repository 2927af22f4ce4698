"""Image-space occluders and photo perturbations (facelift/evaluation/image_occluders.py,
perturbations.py) on constructed cases with a known answer."""

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from facelift.evaluation import image_occluders as IO
from facelift.evaluation import perturbations as P
from facelift.evaluation.masks import LEFT_EYE, RIGHT_EYE

ASTRONAUT = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"
rng = np.random.default_rng(0)
PHOTO = np.clip(rng.normal(128, 40, (120, 160, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def face(pipeline):
    from facelift.image import load_image

    image = load_image(ASTRONAUT)
    return image, pipeline.detect(image)[0]


# ---- image-space occluders --------------------------------------------------------------

def test_sunglasses_cover_both_eyes_and_not_the_mouth(face):
    image, f = face
    for seed in range(5):
        occ = IO.make_image_occluder("sunglasses", image.shape, f.points, np.random.default_rng(seed))
        full = occ.full_alpha()
        for i in RIGHT_EYE + LEFT_EYE:
            x, y = f.points[i, :2].astype(int)
            assert full[y, x] > 0.99, (seed, i)
        for i in (61, 291, 17, 152):  # mouth corners, lower lip, chin
            x, y = f.points[i, :2].astype(int)
            assert full[y, x] == 0.0, (seed, i)


def test_a_microphone_covers_the_mouth_not_the_eyes_and_is_dark(face):
    image, f = face
    for seed in range(5):
        occ = IO.make_image_occluder("microphone", image.shape, f.points, np.random.default_rng(seed))
        full = occ.full_alpha()
        for i in (13, 14, 0, 17):  # the lips' inner edges, the upper and the lower lip
            x, y = f.points[i, :2].astype(int)
            assert full[y, x] > 0.99, (seed, i)
        for i in RIGHT_EYE + LEFT_EYE:
            x, y = f.points[i, :2].astype(int)
            assert full[y, x] == 0.0, (seed, i)
        assert occ.colour[occ.alpha > 0.5].mean() < 0.35  # a dark ball and a black handle
        assert occ.colour[occ.alpha > 0.5].max() > occ.colour[occ.alpha > 0.5].min() + 0.1  # grille, highlight


def test_eyeglasses_frame_the_eyes_and_leave_them_and_the_mouth_uncovered(face):
    image, f = face
    for seed in range(6):
        occ = IO.make_image_occluder("eyeglasses", image.shape, f.points, np.random.default_rng(seed))
        full = occ.full_alpha()
        for i in RIGHT_EYE + LEFT_EYE + (61, 291, 17, 152):  # clear lenses; mouth corners, lower lip, chin
            x, y = f.points[i, :2].astype(int)
            assert full[y, x] == 0.0, (seed, i)
        for eye in (RIGHT_EYE, LEFT_EYE):  # a rim around each eye: covered above and below its centre
            c = f.points[list(eye), :2].mean(0)
            column = full[:, int(round(c[0]))]
            assert column[: int(c[1])].max() > 0.5 and column[int(c[1]):].max() > 0.5, seed
        # thin frames, not lenses: an erosion by 0.08 x the eyes' distance leaves nothing of them
        d = np.linalg.norm(f.points[list(RIGHT_EYE), :2].mean(0) - f.points[list(LEFT_EYE), :2].mean(0))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(0.08 * d) + 1,) * 2)
        left = lambda a: cv2.erode((a > 0.5).astype(np.uint8), disk).sum() / (a > 0.5).sum()  # noqa: E731
        sun = IO.make_image_occluder("sunglasses", image.shape, f.points, np.random.default_rng(seed))
        assert left(occ.alpha) < 0.05 and left(sun.alpha) > 0.3, seed  # (where rims and bridge meet)
        assert np.ptp(occ.colour.reshape(-1, 3), 0).max() < 1e-6  # one frame colour


def test_an_unknown_occluder_kind_is_refused(face):
    image, f = face
    with pytest.raises(ValueError, match="microphone"):
        IO.make_image_occluder("scarf", image.shape, f.points, np.random.default_rng(0))


@pytest.mark.parametrize("kind", IO.KINDS + IO.EXTRA_KINDS)
def test_occluders_lie_on_the_face_and_are_reproducible(face, kind):
    image, f = face
    x0, y0, x1, y1 = f.box
    a = IO.make_image_occluder(kind, image.shape, f.points, np.random.default_rng(3))
    b = IO.make_image_occluder(kind, image.shape, f.points, np.random.default_rng(3))
    c = IO.make_image_occluder(kind, image.shape, f.points, np.random.default_rng(4))
    assert np.array_equal(a.alpha, b.alpha) and (a.x0, a.y0) == (b.x0, b.y0)
    assert not (a.alpha.shape == c.alpha.shape and np.array_equal(a.alpha, c.alpha))
    full = a.full_alpha()
    on_face = full[int(y0):int(y1), int(x0):int(x1)]
    face_area = (x1 - x0) * (y1 - y0)
    covered = (on_face > 0.5).sum() / face_area
    assert 0.03 < covered < 0.4, covered  # a real part of the face, not all of it
    assert a.colour.shape == a.alpha.shape + (3,) and 0 <= a.colour.min() and a.colour.max() <= 1


def test_paste_composites_inside_the_occluder_only():
    alpha = np.zeros((10, 20), np.float32)
    alpha[2:8, 5:15] = 1.0
    alpha[0, 0] = 0.5
    colour = np.zeros((10, 20, 3), np.float32)
    colour[..., 0] = 1.0
    occ = IO.ImageOccluder(alpha, colour, 30, 40, PHOTO.shape[:2])
    out = IO.paste(PHOTO, occ)
    assert (out[42:48, 35:45] == [255, 0, 0]).all()
    assert np.array_equal(out[40, 30], np.round(PHOTO[40, 30] * 0.5 + np.array([127.5, 0, 0])).astype(np.uint8))
    untouched = np.ones(PHOTO.shape[:2], bool)
    untouched[40:50, 30:50] = False
    assert np.array_equal(out[untouched], PHOTO[untouched])
    assert IO.paste(PHOTO, IO.ImageOccluder(np.zeros((0, 0), np.float32), np.zeros((0, 0, 3)), 0, 0,
                                            PHOTO.shape[:2])).tobytes() == PHOTO.tobytes()


def _grid_maps(R=16, scale=2.0, t=(3.0, 5.0)):
    """Texel (i, j) projects onto the centre of photo pixel (row 2i, column 2j)."""
    i, j = np.mgrid[0:R, 0:R].astype(np.float64)
    px, py = 2 * j + 0.5, 2 * i + 0.5
    pos = np.stack([(px - t[0]) / scale, -(py - t[1]) / scale, np.zeros_like(px)], -1).astype(np.float32)
    mask = np.ones((R, R), bool)
    mask[0, 0] = False
    return SimpleNamespace(position=pos, mask=mask), scale, t


def test_uv_coverage_samples_the_photo_where_the_unwrap_does():
    maps, s, t = _grid_maps()
    x, y = IO.texel_pixels(maps, s, t)
    assert x[3, 4] == pytest.approx(8.5) and y[3, 4] == pytest.approx(6.5)
    alpha = np.zeros((40, 40), np.float32)
    alpha[10:20, 6:30] = 1.0
    cov = IO.uv_coverage(alpha, maps, s, t)
    expected = alpha[::2, ::2][:16, :16].copy()
    expected[0, 0] = 0.0  # outside the layout
    np.testing.assert_allclose(cov, expected, atol=1e-6)
    crop = alpha[8:22, 4:32]  # the same coverage as a crop placed at its offset
    np.testing.assert_allclose(IO.uv_coverage(crop, maps, s, t, offset=(4, 8)), expected, atol=1e-6)
    assert IO.uv_coverage(np.zeros((0, 0), np.float32), maps, s, t).sum() == 0


# ---- photo perturbations ----------------------------------------------------------------

def test_srgb_round_trip_and_identity_edits():
    assert np.array_equal(P.linear_to_srgb(P.srgb_to_linear(PHOTO)), PHOTO)
    assert np.array_equal(P.exposure(PHOTO, 1.0), PHOTO)
    assert np.array_equal(P.white_balance(PHOTO, (1, 1, 1)), PHOTO)
    assert np.array_equal(P.gamma(PHOTO, 1.0), PHOTO)


def test_exposure_and_white_balance_scale_linear_light():
    lin = P.srgb_to_linear(PHOTO)
    dark = P.srgb_to_linear(P.exposure(PHOTO, 0.7))
    ok = lin > 0.05
    np.testing.assert_allclose(dark[ok] / lin[ok], 0.7, atol=0.03)
    bright = P.exposure(PHOTO, 1.3)
    assert (bright >= PHOTO).all() and (bright[PHOTO > 230] == 255).all()  # highlights clip
    warm = P.srgb_to_linear(P.white_balance(PHOTO, (1.2, 1.0, 0.8)))
    red = ok[..., 0] & (lin[..., 0] < 0.8)  # not clipped
    np.testing.assert_allclose(warm[..., 0][red] / lin[..., 0][red], 1.2, atol=0.03)
    assert np.abs(warm[..., 1] - lin[..., 1]).max() == 0
    g = P.random_white_balance(np.random.default_rng(1))
    assert g[1] == 1 and 0.1 <= abs(g[0] - 1) <= 0.2 and g[0] - 1 == pytest.approx(1 - g[2])


def test_gamma_jpeg_and_half_size():
    c = PHOTO.astype(np.float64) / 255
    np.testing.assert_allclose(P.gamma(PHOTO, 0.8) / 255, c ** 0.8, atol=0.5 / 255 + 1e-9)
    assert (P.gamma(PHOTO, 1.25) <= PHOTO).all()
    yy, xx = np.mgrid[0:120, 0:160]
    smooth = np.stack([xx * 1.5, yy * 2, np.full_like(xx, 90)], -1).astype(np.uint8)
    j = P.jpeg(smooth, 30)
    assert j.shape == smooth.shape and j.dtype == np.uint8
    assert 0 < np.abs(j.astype(int) - smooth).mean() < 4  # lossy, but the same picture
    checker = (((xx + yy) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    flat = P.half_size(checker)
    assert flat.shape == checker.shape and np.abs(flat.astype(int) - 127.5).max() <= 1  # 1-px detail is gone
    assert np.array_equal(P.half_size(np.full((31, 47, 3), 77, np.uint8)), np.full((31, 47, 3), 77, np.uint8))


def test_shadow_darkens_one_side_of_the_line_through_the_face():
    f = P.shadow_factor((100, 200), (100, 50), 0.0, 100, transmission=0.3, softness=0.05)
    assert f[:, 180].max() == pytest.approx(0.3, abs=1e-3)  # x > 100: shadowed
    assert f[:, 20].min() == pytest.approx(1.0, abs=1e-3)
    # pixel centre 99.5 is 0.5 px before the line, the edge is 5 px wide: 1 - 0.7 * logistic(-0.1)
    assert f[50, 99] == pytest.approx(1 - 0.7 / (1 + np.exp(0.1)), abs=1e-5)
    grey = np.full((100, 200, 3), 150, np.uint8)
    points = np.stack(np.meshgrid(np.linspace(60, 140, 26), np.linspace(20, 80, 18)), -1).reshape(-1, 2)
    out = P.cast_shadow(grey, points, np.random.default_rng(0))
    dark = out[..., 0] < 150
    assert 0.35 < dark.mean() < 0.65  # about half the picture
    assert out.min() == P.linear_to_srgb(P.srgb_to_linear(np.uint8(150)) * P.SHADOW_TRANSMISSION)


def test_perturb_knows_every_edit(face):
    image, f = face
    for name in P.PERTURBATIONS:
        out = P.perturb(image, name, f.points, np.random.default_rng(0))
        assert out.shape == image.shape and out.dtype == np.uint8, name
        assert np.abs(out.astype(int) - image).mean() > 0.5, name  # it changed the photo
    with pytest.raises(ValueError):
        P.perturb(image, "sepia", f.points, np.random.default_rng(0))

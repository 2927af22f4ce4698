"""facelift.visualize: pictures for people (pure numpy + PIL, no model needed)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from facelift import visualize as vis


@dataclass
class FakeFace:
    points: np.ndarray
    box: tuple


def _face(x0, y0, x1, y1, n=478):
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n), np.zeros(n)], 1).astype(np.float32)
    return FakeFace(pts, (x0, y0, x1, y1))


def _disc_mask(r=64):
    y, x = np.mgrid[:r, :r]
    return (x - r / 2 + 0.5) ** 2 + (y - r / 2 + 0.5) ** 2 < (r / 2 - 2) ** 2


def test_draw_faces_marks_boxes_and_landmarks():
    image = np.full((400, 600, 3), 90, np.uint8)
    faces = [_face(50, 50, 250, 300), _face(400, 100, 500, 220)]
    out = vis.draw_faces(image, faces, selected=0, max_side=None)
    assert out.shape == image.shape and out.dtype == np.uint8
    green = np.all(out == vis.SELECTED, axis=-1)
    orange = np.all(out == vis.OTHER, axis=-1)
    assert green[50:300, 50:250].sum() > 500  # box outline + landmarks of the selected face
    assert orange[100:220, 400:500].sum() > 100  # the other face's box
    assert not green[100:220, 400:500].any()
    assert not green[:40].any() and not orange[:40].any()  # nothing drawn away from the faces
    assert np.array_equal(image, np.full_like(image, 90))  # input untouched


def test_draw_faces_downscales_large_photos():
    image = np.zeros((2000, 3000, 3), np.uint8)
    out = vis.draw_faces(image, [_face(100, 100, 900, 1200)], max_side=768)
    assert out.shape == (512, 768, 3)
    # the box is drawn at the scaled position
    green = np.all(out == vis.SELECTED, axis=-1)
    ys, xs = np.nonzero(green)
    assert 22 < xs.min() < 30 and 300 < ys.max() < 312  # scale 768 / 3000


def test_texture_with_visibility_hatches_unseen_texels():
    texture = np.full((64, 64, 3), 0.5, np.float32)
    visibility = np.zeros((64, 64), np.float32)
    visibility[:, :32] = 1
    mask = _disc_mask()
    out = vis.texture_with_visibility(texture, visibility, mask)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    seen = mask.copy()
    seen[:, 32:] = False
    assert np.all(out[seen] == 128)  # visible texels are the texture as it is
    hidden = mask.copy()
    hidden[:, :32] = False
    assert np.abs(out[hidden].astype(int) - 128).max() > 30  # hatched
    assert np.all(out[~mask] == vis.BACKGROUND)
    with pytest.raises(ValueError):
        vis.texture_with_visibility(texture, visibility[:10], mask)


def test_normal_map_image():
    n = np.zeros((32, 32, 3), np.float32)
    n[8:24, 8:24] = (0, 0, 1)
    out = vis.normal_map_image(n)
    assert tuple(out[16, 16]) == (128, 128, 255)
    assert tuple(out[0, 0]) == vis.BACKGROUND


def test_confidence_image():
    c = np.zeros((16, 16), np.float32)
    c[4:12, 4:12] = 1.0
    c[4:12, 4:8] = 0.0
    mask = np.zeros((16, 16), bool)
    mask[2:14, 2:14] = True
    out = vis.confidence_image(c, mask)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) == vis.BACKGROUND
    low, high = out[6, 5].astype(int), out[6, 10].astype(int)
    assert tuple(high) == tuple(vis.colormap(np.array([1.0]), 0, 1, "sequential")[0])
    assert abs(int(high.sum()) - int(low.sum())) > 100  # trusted and untrusted texels look different
    with pytest.raises(ValueError, match="confidence"):
        vis.confidence_image(np.zeros((4, 4, 3)))


@pytest.mark.parametrize("cmap", ["diverging", "sequential"])
def test_colormap_endpoints_and_monotone_lightness(cmap):
    lut = vis.COLORMAPS[cmap]
    out = vis.colormap(np.array([-1.0, 0.0, 1.0, 5.0, np.nan]), -1.0, 1.0, cmap)
    assert out.shape == (5, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0], (lut[0] * 255 + 0.5).astype(np.uint8))
    assert np.array_equal(out[2], (lut[-1] * 255 + 0.5).astype(np.uint8))
    assert np.array_equal(out[3], out[2])  # clipped
    assert np.array_equal(out[4], out[1])  # NaN -> 0
    flat = vis.colormap(np.zeros(3), 0.0, 0.0)  # empty range: the middle colour, no division by zero
    assert flat.shape == (3, 3)


def test_displacement_image_has_a_legend_and_a_symmetric_scale():
    mask = _disc_mask()
    d = np.zeros((64, 64), np.float32)
    d[20:30, 20:30] = 0.3e-3   # +0.3 mm: red
    d[40:50, 30:40] = -0.3e-3  # -0.3 mm: blue
    out = vis.displacement_image(d, mask, size=256)
    assert out.shape[0] == 256 and out.shape[1] > 256 + 40  # the map plus the colour bar
    m = out[:, :256].astype(int)
    red, blue = m[25 * 4, 25 * 4], m[45 * 4, 35 * 4]
    assert red[0] > red[2] + 60 and blue[2] > blue[0] + 60
    zero = m[10 * 4 + 30, 32 * 4]
    assert np.all(zero > 230)  # zero displacement is white
    assert tuple(out[0, 0]) == vis.BACKGROUND
    bar = out[:, 256:]
    assert (np.abs(bar.astype(int) - bar.mean(axis=(0, 1))).sum(-1) > 60).any()  # it draws something
    no_legend = vis.displacement_image(d, mask, size=128, legend=False)
    assert no_legend.shape == (128, 128, 3)
    assert vis.displacement_image(np.zeros((16, 16)), None, size=32).shape[0] == 32  # all-zero input is fine
    with pytest.raises(ValueError):
        vis.displacement_image(d, mask, unit="inch")


def test_nice_limits_and_ticks():
    assert vis._nice_limit(0.34) == 0.5
    assert vis._nice_limit(0.2) == 0.2
    assert vis._nice_limit(0.021) == 0.025
    assert vis._nice_limit(7.0) == 10.0
    assert vis._format_tick(0.0, 0.5) == "0"
    assert vis._format_tick(-0.25, 0.5) == "-0.25"
    assert vis._format_tick(0.5, 0.5) == "+0.50"


def test_colorbar_fits_its_labels():
    bar = vis.colorbar(-10000, 10000, 200, title="um")
    assert bar.shape[0] == 200 and bar.shape[1] >= 60
    # the right-most column is background: labels are not cut off
    assert np.all(bar[:, -1] == 255)


def test_turntable_frames_and_gif(tmp_path):
    yaws = vis.turntable_yaws(8, 30)
    assert len(yaws) == 8 and yaws[0] == 0 and max(yaws) == pytest.approx(30) and min(yaws) == pytest.approx(-30)
    calls = []

    def render(yaw, size):
        calls.append(yaw)
        img = np.zeros((size, size, 3), np.uint8)
        img[:, : int(size * (yaw + 40) / 80)] = (200, 120, 60)
        return img

    frames = vis.turntable_frames(render, 8, 30, size=32)
    assert calls == yaws and len(frames) == 8
    path = vis.save_gif(tmp_path / "sub" / "turn.gif", frames, fps=10)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 8 and im.size == (32, 32)
        assert im.info.get("loop") == 0 and im.info.get("duration") == 100
        im.seek(2)
        frame = np.asarray(im.convert("RGB")).astype(int)
        assert np.abs(frame - frames[2]).max() <= 8  # a shared palette keeps the colours
    assert not list(tmp_path.glob("sub/.*"))  # no temporary file left behind
    with pytest.raises(ValueError):
        vis.save_gif(tmp_path / "empty.gif", [])
    with pytest.raises(ValueError):
        vis.save_gif(tmp_path / "mixed.gif", [frames[0], np.zeros((8, 8, 3), np.uint8)])


def test_obj_zip_holds_obj_mtl_and_textures(tmp_path):
    from facelift import export

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    f = np.array([[0, 1, 2]])
    uv = np.array([[0, 0], [1, 0], [0, 1]], float)
    n = np.tile([0.0, 0.0, 1.0], (3, 1))
    albedo = np.full((4, 4, 3), 200, np.uint8)
    obj = export.export_obj(tmp_path / "mesh", v, f, uv, n, albedo)
    (tmp_path / "mesh" / "unrelated.txt").write_text("not part of the mesh")
    zpath = vis.obj_zip(obj, tmp_path / "out" / "mesh.zip")
    with zipfile.ZipFile(zpath) as zf:
        assert sorted(zf.namelist()) == ["albedo.png", "mesh.mtl", "mesh.obj"]
        assert zf.read("mesh.obj") == obj.read_bytes()
    with pytest.raises(FileNotFoundError):
        vis.obj_zip(tmp_path / "missing.obj", tmp_path / "x.zip")


def test_on_background_and_upscale():
    img = np.ones((8, 8, 3), np.float32)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    out = vis.on_background(img, mask)
    assert tuple(out[0, 0]) == vis.BACKGROUND and tuple(out[3, 3]) == (255, 255, 255)
    assert vis.upscale(out, 32).shape == (32, 32, 3)
    assert vis.upscale(np.zeros((10, 20)), 40).shape == (20, 40, 3)
    with pytest.raises(ValueError):
        vis.on_background(img, mask[:4])

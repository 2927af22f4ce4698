import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh

from facelift.fitting import project_points
from facelift.geometry.rotation import rotation_from_yaw_pitch_roll, view_rotation
from facelift.geometry.sh import default_sh, directional_light_sh, light_direction
from facelift.render import Renderer, render_sh_sphere

SIZE = 128
BG = (255, 255, 255)


@pytest.fixture(scope="module")
def face(synthetic_model):
    m = synthetic_model
    normals = trimesh.Trimesh(m.mean_shape, m.triangles, process=False).vertex_normals
    albedo = np.transpose(m.albedo_map(), (1, 2, 0))
    return m.mean_shape, m.triangles, m.uv, normals, albedo


@pytest.fixture(scope="module")
def renderer():
    with Renderer(SIZE, SIZE) as r:
        yield r


def face_mask(img, bg=BG):
    return np.any(img != np.asarray(bg, np.uint8), axis=-1)


def brightness(img):
    return img.astype(np.float64).mean(-1)


@pytest.mark.slow
def test_render_shows_the_face(renderer, face):
    img = renderer.render(*face)
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    mask = face_mask(img)
    assert 0.2 < mask.mean() < 0.9
    assert mask[SIZE // 2, SIZE // 2]


def test_relighting_left_vs_right(renderer, face):
    halves = []
    for azimuth in (-70, 70):
        img = renderer.render(*face, light=(azimuth, 0))
        mask, b = face_mask(img), brightness(img)
        left = b[:, : SIZE // 2][mask[:, : SIZE // 2]].mean()
        right = b[:, SIZE // 2:][mask[:, SIZE // 2:]].mean()
        halves.append((left, right))
    (l_left, r_left), (l_right, r_right) = halves
    assert l_left > r_left + 20  # light from image-left
    assert r_right > l_right + 20  # light from image-right


def test_back_faces_are_culled(renderer, face):
    bg = (10, 20, 30)
    img = renderer.render(*face, yaw=180, background=bg)
    assert not face_mask(img, bg).any()
    assert face_mask(renderer.render(*face, background=bg), bg).any()


def test_normals_mode(renderer, face):
    img = renderer.render(*face, mode="normals")
    centre = img[SIZE // 2, SIZE // 2].astype(int)
    assert np.all(np.abs(centre - [128, 128, 255]) <= 4), centre  # n = +Z at the middle
    mask = face_mask(img)
    top, bottom = img[: SIZE // 3], img[-SIZE // 3:]
    assert top[..., 1][mask[: SIZE // 3]].mean() > 150  # upper part faces up (+Y)
    assert bottom[..., 1][mask[-SIZE // 3:]].mean() < 105
    turned = renderer.render(*face, mode="normals", yaw=40)
    assert turned[..., 0][face_mask(turned)].mean() > img[..., 0][mask].mean() + 20  # towards +X


def test_yaw_direction_and_fixed_zoom(renderer, face):
    v = face[0]
    front = v[np.argmax(v[:, 2])]  # the tip of the cap
    rotated = (front - (v.min(0) + v.max(0)) / 2) @ view_rotation(yaw=30).T
    assert rotated[0] > 0  # positive yaw turns the face to image-right
    rows = [np.nonzero(face_mask(renderer.render(*face, yaw=y)).any(1))[0] for y in (0, 30)]
    assert abs(rows[0][0] - rows[1][0]) <= 1 and abs(rows[0][-1] - rows[1][-1]) <= 1


def test_albedo_mode_ignores_light(renderer, face):
    a = renderer.render(*face, mode="albedo", light=(-70, 0))
    b = renderer.render(*face, mode="albedo", light=(70, 30), light_intensity=3.0, ambient=0.0)
    c = renderer.render(*face, mode="albedo", sh=default_sh() * 0.2)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    albedo = face[4]
    R = albedo.shape[0]
    expected = albedo[R // 2, R // 2] * 255  # uv (0.5, 0.5) is the middle of the image
    assert np.all(np.abs(a[SIZE // 2, SIZE // 2] - expected) <= 3)


def test_ambient_sh_reproduces_albedo(renderer, face):
    albedo_img = renderer.render(*face, mode="albedo").astype(int)
    sh_img = renderer.render(*face, sh=default_sh()).astype(int)
    assert np.abs(sh_img - albedo_img).max() <= 2
    ambient_only = renderer.render(*face, light=(0, 0), light_intensity=0.0, ambient=1.0).astype(int)
    assert np.abs(ambient_only - albedo_img).max() <= 2
    # on black, anti-aliased rim pixels scale with the face colour too
    black = (0, 0, 0)
    full = renderer.render(*face, mode="albedo", background=black).astype(int)
    dim = renderer.render(*face, sh=default_sh() * 0.5, background=black).astype(int)
    assert face_mask(full, black).mean() > 0.2
    assert np.abs(dim - full * 0.5).max() <= 2


def test_sh_lighting_turns_with_the_face(renderer, face):
    # light from the face's own right (+X in model space): it stays there whatever the view
    sh = directional_light_sh(np.array([1.0, 0.0, 0.0]), ambient=0.2)
    for yaw in (-30, 30):
        img = renderer.render(*face, sh=sh, yaw=yaw)
        mask, b = face_mask(img), brightness(img)
        assert b[:, SIZE // 2:][mask[:, SIZE // 2:]].mean() > b[:, : SIZE // 2][mask[:, : SIZE // 2]].mean()
    # `sh` is in the photo's camera space: a face turned towards the light (+X) in the photo is
    # lit in front, one turned away is not; yaw brings both back to a frontal view
    lit = renderer.render(*face, sh=sh, rotation_of_face=view_rotation(yaw=90), yaw=-90)
    unlit = renderer.render(*face, sh=sh, rotation_of_face=view_rotation(yaw=-90), yaw=90)
    assert np.array_equal(face_mask(lit), face_mask(unlit))
    assert brightness(lit)[face_mask(lit)].mean() > brightness(unlit)[face_mask(unlit)].mean() + 60


def test_renderer_is_reused(face):
    with Renderer(64, 64) as r:
        images, contexts = [], []
        for _ in range(3):
            images.append(r.render(*face))
            contexts.append(r._offscreen)
        assert contexts[0] is not None and all(c is contexts[0] for c in contexts)
        assert all(np.array_equal(images[0], im) for im in images)
        assert r.render(*face, size=(96, 48)).shape == (48, 96, 3)
        assert r._offscreen is contexts[0]
        assert np.array_equal(r.render(*face), images[0])
    assert r._offscreen is None
    assert np.array_equal(r.render(*face), images[0])  # reopens after close
    r.close()


def test_concurrent_renders(renderer, face):
    settings = [dict(light=(-70, 0)), dict(light=(70, 0), yaw=20), dict(mode="normals", pitch=15)]
    expected = [renderer.render(*face, **s) for s in settings]
    results = {}
    barrier = threading.Barrier(len(settings))

    def work(i):
        barrier.wait()
        results[i] = [renderer.render(*face, **settings[i]) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(settings))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, exp in enumerate(expected):
        assert len(results[i]) == 3 and all(np.array_equal(img, exp) for img in results[i])


def test_two_renderers_close_independently(face):
    a, b = Renderer(64, 64), Renderer(64, 64)
    ref = a.render(*face)
    b.render(*face)
    b.close()  # must not tear down the EGL display that `a` uses
    assert np.array_equal(a.render(*face), ref)
    a.close()


def test_render_rejects_bad_input(renderer, face):
    v, f, uv, n, albedo = face
    with pytest.raises(ValueError):
        renderer.render(v, f, uv[:-1], n, albedo)
    with pytest.raises(ValueError):
        renderer.render(v, f, uv, n, albedo, mode="wireframe")
    with pytest.raises(ValueError):
        renderer.render(v, f + len(v), uv, n, albedo)


def test_render_sh_sphere():
    sh = directional_light_sh(light_direction(80, 0), ambient=0.1)
    img = render_sh_sphere(sh, size=64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert np.array_equal(img[0, 0], [255, 255, 255])
    b = brightness(img)
    assert b[32, 56] > b[32, 8] + 80
    flat = render_sh_sphere(default_sh(), size=64, albedo=0.5)
    assert np.all(np.abs(flat[32, 32].astype(int) - 128) <= 1)


@pytest.mark.parametrize("platform", [None, "egl"])
@pytest.mark.slow
def test_missing_gl_raises_render_error(platform):
    """No usable EGL device: a RenderError that says what to install (run in a fresh
    interpreter, since PyOpenGL binds its platform once per process)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYOPENGL_PLATFORM", "DISPLAY")}
    if platform:
        env["PYOPENGL_PLATFORM"] = platform
    env["EGL_DEVICE_ID"] = "99"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    code = (
        "import numpy as np\n"
        "from facelift.errors import RenderError\n"
        "from facelift.render import Renderer\n"
        "v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)\n"
        "try:\n"
        "    Renderer(16, 16).render(v, [[0, 1, 2]], v[:, :2], v * 0 + [0, 0, 1], np.ones((4, 4, 3)))\n"
        "except RenderError as e:\n"
        "    print('RenderError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "RenderError:" in out.stdout, out.stdout + out.stderr
    assert "apt-get install" in out.stdout


# ---- the photo's own camera ------------------------------------------------------------------

PHOTO_W, PHOTO_H = 160, 120  # not square: a swapped width and height would show
PHOTO_POSE = dict(scale=500.0, translation=(70.0, 66.0),
                  rotation=rotation_from_yaw_pitch_roll(25.0, -10.0, 15.0))  # no symmetry left


def test_photo_view_lands_where_the_fit_projects(renderer, face):
    """Every model point is drawn at the pixel `fitting.project_points` gives it: the coverage
    matches the projected outline, and the colour at the projected points of the visible
    vertices is their camera-space normal (a mirrored, flipped or offset image would not be)."""
    v, f, uv, n, albedo = face
    pose = PHOTO_POSE
    view = renderer.render_photo_view(v, f, uv, n, albedo, mode="normals", size=(PHOTO_W, PHOTO_H), **pose)
    assert view.image.shape == (PHOTO_H, PHOTO_W, 3) and view.alpha.shape == view.depth.shape == (PHOTO_H, PHOTO_W)
    xy = project_points(v, pose["scale"], pose["rotation"], pose["translation"])
    covered = view.alpha > 0.5
    rows, cols = np.nonzero(covered)
    assert abs(cols.min() - xy[:, 0].min()) <= 1.5 and abs(cols.max() + 1 - xy[:, 0].max()) <= 1.5
    assert abs(rows.min() - xy[:, 1].min()) <= 1.5 and abs(rows.max() + 1 - xy[:, 1].max()) <= 1.5
    n_cam = n @ pose["rotation"].T
    facing = n_cam[:, 2] > 0.5  # clearly visible, not on the rim
    px = np.floor(xy[facing]).astype(int)
    inside = (px[:, 0] >= 1) & (px[:, 0] < PHOTO_W - 1) & (px[:, 1] >= 1) & (px[:, 1] < PHOTO_H - 1)
    assert inside.sum() > 100
    drawn = view.image[px[inside, 1], px[inside, 0]].astype(float) / 255 * 2 - 1
    err = np.linalg.norm(drawn - n_cam[facing][inside], axis=1)
    assert np.median(err) < 0.05, np.median(err)


def test_photo_view_depth_is_camera_z(renderer, face):
    v, f, uv, n, albedo = face
    pose = PHOTO_POSE
    view = renderer.render_photo_view(v, f, uv, n, albedo, size=(PHOTO_W, PHOTO_H), **pose)
    covered = ~np.isnan(view.depth)
    assert np.array_equal(covered, view.alpha > 0.5) or (covered != (view.alpha > 0.5)).mean() < 0.01
    z_cam = v @ pose["rotation"].T
    nearest = int(np.argmax(z_cam[:, 2]))
    x, y = project_points(v[nearest:nearest + 1], pose["scale"], pose["rotation"], pose["translation"])[0]
    assert abs(view.depth[int(y), int(x)] - z_cam[nearest, 2]) < 0.002  # metres; a flat triangle nearby
    assert np.nanmax(view.depth) <= z_cam[:, 2].max() + 1e-4
    assert np.nanmin(view.depth) >= z_cam[:, 2].min() - 1e-4
    assert view.image[covered].mean() > 50  # shaded, not black

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from facelift.face_model import FaceModel
from facelift.geometry.rasterize import rasterize_uv
from facelift.geometry.subdivision import loop_subdivision_matrix
from facelift.mesh import DenseMesh, DenseMeshBuilder

REAL_MODEL = Path(__file__).resolve().parents[1] / "checkpoints" / "face_model.safetensors"


def rot(yaw, pitch=0.0):
    a, b = np.deg2rad(yaw), np.deg2rad(pitch)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rx @ ry


def models(synthetic_model):
    out = [synthetic_model]
    if REAL_MODEL.is_file():
        out.append(FaceModel.load(REAL_MODEL))
    return out


@pytest.fixture(scope="module")
def builder(synthetic_model):
    return DenseMeshBuilder(synthetic_model, resolution=128, subdivisions=2)


# ---- dense mesh -------------------------------------------------------------------------
def test_dense_mesh_layout(synthetic_model, builder):
    m = synthetic_model
    d = builder.build(m.mean_shape)
    G = 128
    assert isinstance(d, DenseMesh) and d.resolution == G
    M = len(d.vertices)
    assert d.vertices.shape == (M, 3) and d.vertices.dtype == np.float32
    assert d.faces.dtype == np.int32 and d.faces.min() >= 0 and d.faces.max() < M
    assert d.uv.shape == (M, 2) and d.normals.shape == (M, 3) and d.grid_index.shape == (M,)
    i, j = np.divmod(d.grid_index, G)
    np.testing.assert_allclose(d.uv[:, 0], (j + 0.5) / G, atol=1e-7)
    np.testing.assert_allclose(d.uv[:, 1], 1 - (i + 0.5) / G, atol=1e-7)
    # same texel-centre convention as the UV maps: the grid covers the layout's texels
    mask = m.texel_map(G).mask
    covered = np.zeros(G * G, bool)
    covered[d.grid_index] = True
    assert (covered & ~mask.ravel()).sum() == 0
    assert covered.sum() > 0.97 * mask.sum()
    # every face is a grid triangle: corners within one cell
    fi, fj = i[d.faces], j[d.faces]
    assert np.all(np.ptp(fi, 1) <= 1) and np.all(np.ptp(fj, 1) <= 1)
    # faces are counter-clockwise seen from +Z (model space) and in uv
    p = d.vertices[d.faces]
    fn = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    assert np.all(fn[:, 2] > 0)
    t = d.uv[d.faces]
    assert np.all(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]) > 0)
    np.testing.assert_allclose(np.linalg.norm(d.normals, axis=1), 1.0, atol=1e-5)
    assert np.all(d.normals[:, 2] > 0)


def test_dense_mesh_lies_on_subdivided_surface(synthetic_model, builder):
    m = synthetic_model
    d = builder.build(m.mean_shape)
    S, tris, _ = loop_subdivision_matrix(m.triangles, m.n_vertices, 2)
    sub = S @ m.mean_shape.astype(np.float64)
    # an ellipsoid grid: the subdivided surface stays within a fraction of a mm of its base
    # and the dense vertices stay within the subdivided surface's bounds
    assert np.abs(d.vertices.min(0) - sub.min(0)).max() < 2e-3
    assert np.abs(d.vertices.max(0) - sub.max(0)).max() < 2e-3
    W = builder.weights
    np.testing.assert_allclose(np.asarray(W.sum(1)).ravel(), 1.0, atol=1e-5)
    np.testing.assert_allclose(W @ m.mean_shape, d.vertices, atol=1e-6)


def test_dense_mesh_is_linear_in_vertices(synthetic_model, builder):
    m = synthetic_model
    R = rot(30, -15)
    V = m.shape(np.ones(m.n_shape))
    d_model = builder.build(V)
    d_cam = builder.build(V @ R.T)
    np.testing.assert_allclose(d_cam.vertices, d_model.vertices @ R.T, atol=1e-6)
    np.testing.assert_allclose(d_cam.normals, d_model.normals @ R.T, atol=1e-4)


def test_sample_gathers_uv_maps(synthetic_model, builder):
    G = 128
    d = builder.build(synthetic_model.mean_shape)
    rng = np.random.default_rng(0)
    uv_map = rng.random((G, G, 3)).astype(np.float32)
    np.testing.assert_array_equal(d.sample(uv_map), uv_map.reshape(-1, 3)[d.grid_index])
    assert d.sample(uv_map[..., 0]).shape == (len(d.vertices),)
    # another resolution is resized: a smooth map stays consistent
    yy, xx = np.mgrid[0:256, 0:256] / 256
    big = np.stack([xx, yy], -1).astype(np.float32)
    np.testing.assert_allclose(d.sample(big)[:, 0], d.uv[:, 0], atol=2e-3)
    np.testing.assert_allclose(d.sample(big)[:, 1], 1 - d.uv[:, 1], atol=2e-3)
    with pytest.raises(ValueError, match="square UV map"):
        d.sample(np.zeros((10, 12, 3)))


def test_constant_displacement_moves_along_normals(synthetic_model, builder):
    V = synthetic_model.mean_shape @ rot(20).T
    base = builder.build(V)
    for rate_res in (128, 64):
        rate = np.full((rate_res, rate_res), 0.002, np.float32)
        d = builder.build(V, rate)
        moved = d.vertices - base.vertices
        np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 0.002, rtol=1e-4)
        np.testing.assert_allclose(moved, 0.002 * base.normals, atol=1e-7)
    inward = builder.build(V, np.full((128, 128, 1), -0.001, np.float32))
    np.testing.assert_allclose(inward.vertices - base.vertices, -0.001 * base.normals, atol=1e-7)
    off = builder.build(V, np.full((128, 128), 0.002, np.float32), details=False)
    np.testing.assert_array_equal(off.vertices, base.vertices)


def test_varying_displacement_is_read_per_texel(synthetic_model, builder):
    V = synthetic_model.mean_shape
    base = builder.build(V)
    rng = np.random.default_rng(3)
    rate = (rng.random((128, 128)) * 1e-3).astype(np.float32)
    d = builder.build(V, rate)
    moved = np.sum((d.vertices - base.vertices) * base.normals, 1)
    np.testing.assert_allclose(moved, rate.reshape(-1)[d.grid_index], atol=1e-7)
    # the normals were recomputed on the displaced surface
    assert np.degrees(np.arccos(np.clip(np.sum(d.normals * base.normals, 1), -1, 1))).max() > 5
    # details added to a smooth mesh built beforehand (e.g. for a render without details)
    from_smooth = builder.build(V, rate, smooth=base)
    np.testing.assert_array_equal(from_smooth.vertices, d.vertices)
    np.testing.assert_array_equal(from_smooth.normals, d.normals)
    assert builder.build(V, None, smooth=base).vertices is base.vertices


def test_dense_mesh_is_smooth_numerically(synthetic_model):
    import trimesh

    for m in models(synthetic_model):
        d = DenseMeshBuilder(m, resolution=256).build(m.mean_shape)
        base = np.degrees(trimesh.Trimesh(m.mean_shape, m.triangles, process=False).face_adjacency_angles)
        dense = _normal_steps(d.normals, d.faces)
        # genuinely sharp folds of a real face (nostrils, lip corners) stay: compare percentiles
        assert np.percentile(dense, 99) < 0.25 * np.percentile(base, 99), m.config.get("name")
        assert np.percentile(dense, 50) < 0.2 * np.percentile(base, 50), m.config.get("name")
    d = DenseMeshBuilder(synthetic_model, resolution=256).build(synthetic_model.mean_shape)
    assert _normal_steps(d.normals, d.faces).max() < 2.0  # the ellipsoid has no folds


def _normal_steps(normals, faces):
    """Angle (degrees) between the normals at the two ends of every edge."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    cos = np.sum(normals[e[:, 0]] * normals[e[:, 1]], 1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def _render_lit(vertices, faces, normals=None, size=256):
    pyrender = pytest.importorskip("pyrender")
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False)
    mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[0.8, 0.8, 0.8, 1.0], metallicFactor=0.0,
                                             roughnessFactor=1.0)
    scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 1.0], ambient_light=[0.0, 0.0, 0.0])
    scene.add(pyrender.Mesh.from_trimesh(mesh, material=mat, smooth=normals is not None))
    half = 1.1 * np.abs(vertices[:, :2]).max()
    pose = np.eye(4)
    pose[2, 3] = 1.0
    scene.add(pyrender.OrthographicCamera(xmag=half, ymag=half, znear=0.01, zfar=2.0), pose=pose)
    # light from the camera: every visible point is lit, so no shadow terminator (a genuine
    # kink in shading) crosses the image
    scene.add(pyrender.DirectionalLight(intensity=3.0), pose=np.eye(4))
    try:
        r = pyrender.OffscreenRenderer(size, size)
    except Exception as exc:
        pytest.skip(f"offscreen OpenGL unavailable: {exc}")
    try:
        color, depth = r.render(scene)
    finally:
        r.delete()
    return color.astype(np.float64).mean(-1), depth > 0


@pytest.mark.slow
def test_dense_mesh_renders_without_facets(synthetic_model):
    for m in models(synthetic_model):
        d = DenseMeshBuilder(m, resolution=256).build(m.mean_shape)
        smooth, mask_s = _render_lit(d.vertices, d.faces, d.normals)
        flat, mask_f = _render_lit(m.mean_shape, m.triangles)  # per-face normals
        inner = ndimage.binary_erosion(mask_s & mask_f, iterations=4)
        assert inner.sum() > 5000

        def max_second_difference(img):
            # shading of a smooth surface varies smoothly; facet edges are kinks
            gx = np.abs(img[:, 2:] - 2 * img[:, 1:-1] + img[:, :-2])[1:-1, :]
            gy = np.abs(img[2:] - 2 * img[1:-1] + img[:-2])[:, 1:-1]
            return np.maximum(gx, gy)[inner[1:-1, 1:-1]]

        s, f = max_second_difference(smooth), max_second_difference(flat)
        for q in (90, 99):
            assert np.percentile(s, q) < 0.4 * np.percentile(f, q), (m.config.get("name"), q)


def test_builder_errors(synthetic_model, builder):
    with pytest.raises(ValueError, match=r"vertices must have shape \(441, 3\)"):
        builder.build(np.zeros((440, 3)))
    with pytest.raises(ValueError, match="displacement_rate must be a UV map"):
        builder.build(synthetic_model.mean_shape, np.zeros((128, 128, 2)))
    with pytest.raises(ValueError, match="square UV map"):
        builder.build(synthetic_model.mean_shape, np.zeros((128, 64)))
    with pytest.raises(ValueError, match="NaN"):
        builder.build(synthetic_model.mean_shape, np.full((128, 128), np.nan))
    other = DenseMeshBuilder(synthetic_model, resolution=64, subdivisions=1).build(synthetic_model.mean_shape)
    with pytest.raises(ValueError, match="smooth is not a dense mesh of this builder"):
        builder.build(synthetic_model.mean_shape, np.zeros((128, 128)), smooth=other)
    with pytest.raises(ValueError, match="resolution must be an integer"):
        DenseMeshBuilder(synthetic_model, resolution=0)
    with pytest.raises(ValueError, match="subdivisions must be a non-negative integer"):
        DenseMeshBuilder(synthetic_model, subdivisions=-1)


def test_dense_mesh_keeps_holes_of_the_layout():
    # two sheets side by side in uv with a gap of half a texel: no grid face may bridge it
    def sheet(u0, u1, x0):
        xs, ys = np.meshgrid(np.linspace(x0, x0 + 0.05, 5), np.linspace(-0.05, 0.05, 5))
        us, vs = np.meshgrid(np.linspace(u0, u1, 5), np.linspace(0.1, 0.9, 5))
        idx = np.arange(25).reshape(5, 5)
        a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        return (np.stack([xs, ys, 0 * xs], -1).reshape(-1, 3), np.stack([us, vs], -1).reshape(-1, 2),
                np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]))

    G = 64
    gap = 0.5 / G
    v1, uv1, t1 = sheet(0.1, 0.5 - gap / 2, -0.06)
    v2, uv2, t2 = sheet(0.5 + gap / 2, 0.9, 0.01)
    V = np.concatenate([v1, v2])
    n = len(V)
    m = FaceModel(V, np.zeros((0, n, 3)), np.concatenate([t1, t2 + 25]), np.concatenate([uv1, uv2]),
                  np.arange(n), np.zeros((3, 4, 4)), np.zeros((0, 3, 4, 4)))
    d = DenseMeshBuilder(m, resolution=G, subdivisions=1).build(V)
    x = d.vertices[d.faces, 0]
    assert not np.any((x.min(1) < -0.005) & (x.max(1) > 0.005))
    assert len(d.faces) > 1000


def _boundary_loops(faces):
    """Sizes (edge counts) of the boundary loops of a triangle mesh, largest first."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    edges, count = np.unique(e, axis=0, return_counts=True)
    assert np.all(count <= 2), "non-manifold edges"
    b = edges[count == 1]
    if len(b) == 0:
        return []
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = int(faces.max()) + 1
    g = sp.coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    _, label = connected_components(g, directed=False)
    return sorted(np.unique(label[b[:, 0]], return_counts=True)[1].tolist(), reverse=True)


@pytest.mark.skipif(not REAL_MODEL.is_file(), reason="checkpoints/face_model.safetensors not built yet")
def test_real_dense_mesh_has_no_pinholes():
    # the model closes its mouth with fill triangles: the dense mesh is a disc whose only
    # boundary is the outer outline (thin triangles at the lip corners used to leave holes)
    trimesh = pytest.importorskip("trimesh")
    m = FaceModel.load(REAL_MODEL)
    for G in (128, 256):
        d = DenseMeshBuilder(m, resolution=G).build(m.mean_shape)
        assert len(_boundary_loops(d.faces)) == 1, G
        mesh = trimesh.Trimesh(d.vertices, d.faces, process=False)
        assert len(mesh.outline().entities) == 1 and mesh.euler_number == 1, G


@pytest.mark.skipif(not REAL_MODEL.is_file(), reason="checkpoints/face_model.safetensors not built yet")
def test_real_dense_mesh_keeps_an_open_mouth_open():
    # without the fill triangles the mouth is a hole of the layout whose lips touch in 3D:
    # no grid face may span it (a membrane), and the lip corners stay closed
    m = FaceModel.load(REAL_MODEL)
    inner_lip = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415]
    fill = np.all(np.isin(m.triangles, inner_lip), 1)
    assert 10 <= fill.sum() <= 30
    opened = FaceModel(m.mean_shape, m.shape_basis, m.triangles[~fill], m.uv, m.mirror, m.albedo_mean,
                       m.albedo_basis)
    G = 256
    d = DenseMeshBuilder(opened, resolution=G).build(opened.mean_shape)
    loops = _boundary_loops(d.faces)
    assert len(loops) == 2 and loops[1] > 50  # the outline and the mouth
    # no face covers a texel centre of the mouth hole: rasterise the fill triangles in uv
    tri, _ = rasterize_uv(m.uv.astype(np.float64), m.triangles[fill], G)
    hole = np.flatnonzero(ndimage.binary_erosion(tri >= 0).ravel())
    assert hole.size > 20
    assert not np.isin(d.grid_index, hole).any()
    i, j = np.divmod(d.grid_index[d.faces], G)
    cu = np.stack([j.mean(1), i.mean(1)], 1)  # face centroids in texel units
    inside_hole = ndimage.binary_erosion(tri >= 0)[np.round(cu[:, 1]).astype(int), np.round(cu[:, 0]).astype(int)]
    assert not inside_hole.any()


# ---- tangent-space detail normals ---------------------------------------------------------
def _grid_map(mesh, values, fill=0.0):
    G = mesh.resolution
    out = np.full((G * G,) + values.shape[1:], fill, np.float64)
    out[mesh.grid_index] = values
    return out.reshape((G, G) + values.shape[1:])


@pytest.mark.parametrize("yaw", [0.0, 35.0])
def test_detail_normal_map_matches_the_displaced_mesh(synthetic_model, builder, yaw):
    from facelift.mesh import detail_normal_map

    V = synthetic_model.mean_shape @ rot(yaw).T
    base = builder.build(V)
    G = builder.resolution
    yy, xx = np.mgrid[0:G, 0:G] / G
    rate = (1e-3 * np.sin(2 * np.pi * 6 * xx) * np.cos(2 * np.pi * 4 * yy)).astype(np.float32)
    moved = builder.build(V, rate)
    mask = _grid_map(base, np.ones(len(base.grid_index))) > 0.5
    position = _grid_map(base, base.vertices.astype(np.float64))
    got = detail_normal_map(rate, position, mask)
    # the displaced mesh's normals in the base surface's frame (x along +u, y along +v)
    N = _grid_map(base, base.normals.astype(np.float64))
    Nd = _grid_map(base, moved.normals.astype(np.float64))
    P = position
    Pu = np.roll(P, -1, 1) - np.roll(P, 1, 1)
    Pv = np.roll(P, 1, 0) - np.roll(P, -1, 0)  # rows go down, v up
    T = Pu - np.sum(Pu * N, -1, keepdims=True) * N
    T /= np.linalg.norm(T, axis=-1, keepdims=True).clip(1e-12)
    B = Pv - np.sum(Pv * N, -1, keepdims=True) * N - np.sum(Pv * T, -1, keepdims=True) * T
    B /= np.linalg.norm(B, axis=-1, keepdims=True).clip(1e-12)
    want = np.stack([np.sum(Nd * T, -1), np.sum(Nd * B, -1), np.sum(Nd * N, -1)], -1)
    inner = ndimage.binary_erosion(mask, iterations=3)
    tilt = np.degrees(np.arccos(np.clip(want[inner][:, 2], -1, 1)))
    assert np.median(tilt) > 3  # the test field tilts the surface visibly
    err = np.degrees(np.arccos(np.clip(np.sum(got[inner] * want[inner], -1), -1, 1)))
    assert np.median(err) < 1.0 and np.percentile(err, 95) < 3.0, (np.median(err), np.percentile(err, 95))
    assert np.allclose(got[~mask], (0, 0, 1))
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1, atol=1e-5)


def test_detail_normal_map_signs_and_flat_case():
    from facelift.mesh import detail_normal_map

    R = 32
    i, j = np.mgrid[0:R, 0:R]
    position = np.stack([j * 1e-3, -i * 1e-3, np.zeros((R, R))], -1)  # a plane, 1 mm texels, v up
    mask = np.ones((R, R), bool)
    flat = detail_normal_map(np.zeros((R, R)), position, mask)
    np.testing.assert_allclose(flat, np.broadcast_to((0, 0, 1), flat.shape), atol=1e-7)
    ramp_u = detail_normal_map(j * 1e-4, position, mask)  # rises along +u by 0.1 mm per mm
    np.testing.assert_allclose(ramp_u[..., 0], -0.1 / np.sqrt(1.01), rtol=1e-5)
    np.testing.assert_allclose(ramp_u[..., 1], 0, atol=1e-7)
    ramp_v = detail_normal_map(-i * 1e-4, position, mask)  # rises upwards (+v)
    np.testing.assert_allclose(ramp_v[..., 1], -0.1 / np.sqrt(1.01), rtol=1e-5)
    with pytest.raises(ValueError, match="must agree"):
        detail_normal_map(np.zeros((R, R)), position[:-1], mask)
    bad = np.zeros((R, R))
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detail_normal_map(bad, position, mask)


def test_detail_occlusion_darkens_creases_and_matches_training():
    import torch

    from facelift.mesh import DETAIL_OCCLUSION_RANGE, detail_occlusion
    from facelift.training.drn_v2 import cavity_shading

    R = 48
    mask = np.zeros((R, R), bool)
    mask[4:44, 6:40] = True
    rate = np.zeros((R, R), np.float32)
    rate[20:23, 10:36] = -0.5e-3  # a crease 0.5 mm deep
    occ = detail_occlusion(rate, mask, 0.3, 4.0)
    assert occ[21, 20] < 0.9 and occ[10, 20] == pytest.approx(1.0, abs=0.02)  # dark in the crease only
    assert (occ[~mask] == 1).all() and occ.min() >= DETAIL_OCCLUSION_RANGE[0]
    np.testing.assert_allclose(detail_occlusion(np.zeros((R, R)), mask, 0.3, 4.0), 1.0)
    rng = np.random.default_rng(1)
    noisy = rng.normal(0, 3e-4, (R, R)).astype(np.float32) * mask
    trained = cavity_shading(torch.from_numpy(noisy)[None, None], torch.from_numpy(mask.astype(np.float32))[None, None],
                             0.3, 4.0)[0, 0].numpy()
    np.testing.assert_allclose(detail_occlusion(noisy, mask, 0.3, 4.0)[mask], trained[mask], atol=1e-5)
    with pytest.raises(ValueError, match="must agree"):
        detail_occlusion(rate[:-1], mask, 0.3, 4.0)
    bad = rate.copy()
    bad[21, 20] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        detail_occlusion(bad, mask, 0.3, 4.0)
    with pytest.raises(ValueError, match="cavity"):
        detail_occlusion(rate, mask, -1, 4.0)

import io
import json
import shutil
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from facelift import export as ex
from facelift.render import Renderer


@pytest.fixture(scope="module")
def face(synthetic_model):
    m = synthetic_model
    normals = trimesh.Trimesh(m.mean_shape, m.triangles, process=False).vertex_normals
    # rows differ top to bottom and columns left to right, so a flipped u or v shows
    rows, cols = np.mgrid[0:48, 0:40]
    albedo = np.stack([rows * 5, cols * 6, 60 + (rows // 6 + cols // 5) % 2 * 120], -1).astype(np.uint8)
    return m.mean_shape, m.triangles, m.uv, normals, albedo


def read_glb(path):
    """(json, binary chunk) of a GLB, parsed by hand to check the file, not trimesh."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2 and length == len(data)
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON"
    tree = json.loads(data[20:20 + json_len])
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
    assert bin_type == b"BIN\x00"
    return tree, data[28 + json_len:28 + json_len + bin_len]


def accessor_array(tree, blob, index):
    acc = tree["accessors"][index]
    view = tree["bufferViews"][acc["bufferView"]]
    assert acc["componentType"] == 5126  # float32
    width = {"VEC2": 2, "VEC3": 3}[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(blob, np.float32, acc["count"] * width, start).reshape(-1, width)


def only_geometry(scene):
    assert len(scene.geometry) == 1
    return next(iter(scene.geometry.values()))


def test_glb_round_trip(tmp_path, face):
    v, f, uv, n, albedo = face
    path = ex.export_glb(tmp_path / "mesh.glb", v, f, uv, n, albedo)
    mesh = only_geometry(trimesh.load(path))
    assert len(mesh.vertices) == len(v) and len(mesh.faces) == len(f)
    assert np.allclose(mesh.vertices, v, atol=1e-6)
    assert np.allclose(mesh.visual.uv, uv, atol=1e-6)
    assert np.allclose(mesh.vertex_normals, n, atol=1e-5)
    material = mesh.visual.material
    assert np.array_equal(np.asarray(material.baseColorTexture.convert("RGB")), albedo)
    assert material.metallicFactor == 0.0 and material.roughnessFactor >= 0.8
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.glb"]  # no temporary file left


def test_glb_follows_the_gltf_spec(tmp_path, face):
    v, f, uv, n, albedo = face
    tree, blob = read_glb(ex.export_glb(tmp_path / "mesh.glb", v, f, uv, n, albedo))
    prim = tree["meshes"][0]["primitives"][0]
    # glTF puts the UV origin at the image's top-left: v_gltf = 1 - v
    uv_gltf = accessor_array(tree, blob, prim["attributes"]["TEXCOORD_0"])
    assert np.allclose(uv_gltf, np.stack([uv[:, 0], 1 - uv[:, 1]], 1), atol=1e-6)
    assert np.allclose(accessor_array(tree, blob, prim["attributes"]["NORMAL"]), n, atol=1e-5)
    material = tree["materials"][prim["material"]]
    assert material.get("doubleSided", False) is False
    pbr = material["pbrMetallicRoughness"]
    assert pbr["metallicFactor"] == 0.0
    image = tree["images"][tree["textures"][pbr["baseColorTexture"]["index"]]["source"]]
    view = tree["bufferViews"][image["bufferView"]]
    start = view.get("byteOffset", 0)
    png = Image.open(io.BytesIO(blob[start:start + view["byteLength"]]))
    assert image["mimeType"] == "image/png"
    assert np.array_equal(np.asarray(png.convert("RGB")), albedo)  # row 0 stays the top


def test_reloaded_glb_renders_like_the_original(tmp_path, face):
    v, f, uv, n, albedo = face
    mesh = only_geometry(trimesh.load(ex.export_glb(tmp_path / "mesh.glb", v, f, uv, n, albedo)))
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    with Renderer(128, 128) as r:
        original = r.render(v, f, uv, n, albedo, mode="albedo").astype(int)
        reloaded = r.render(mesh.vertices, mesh.faces, mesh.visual.uv, mesh.vertex_normals, texture,
                            mode="albedo").astype(int)
        flipped = r.render(v, f, np.stack([uv[:, 0], 1 - uv[:, 1]], 1), n, albedo, mode="albedo").astype(int)
    assert np.abs(reloaded - original).max() <= 2
    assert np.abs(flipped - original).mean() > 10  # the comparison would see a v flip


def test_obj_round_trip_and_relative_paths(tmp_path, face):
    v, f, uv, n, albedo = face
    out = tmp_path / "out"
    obj = ex.export_obj(out, v, f, uv, n, albedo)
    assert sorted(p.name for p in out.iterdir()) == ["albedo.png", "mesh.mtl", "mesh.obj"]
    assert obj == out / "mesh.obj"
    assert "mtllib mesh.mtl" in obj.read_text().splitlines()
    mtl = (out / "mesh.mtl").read_text().splitlines()
    assert "map_Kd albedo.png" in mtl
    moved = tmp_path / "moved"
    shutil.move(out, moved)  # relative references survive moving the folder
    mesh = trimesh.load(moved / "mesh.obj", process=False)
    assert len(mesh.vertices) == len(v) and len(mesh.faces) == len(f)
    # as many digits as they carry: positions to a micrometre, UVs to 1e-6, unit normals to 1e-4
    assert np.abs(mesh.vertices - v).max() <= 5e-7 + 1e-12
    assert np.abs(mesh.visual.uv - uv).max() <= 5e-7 + 1e-12  # OBJ keeps v up
    assert np.allclose(mesh.vertex_normals, n / np.linalg.norm(n, axis=1, keepdims=True), atol=2e-4)
    first = [line for line in (moved / "mesh.obj").read_text().splitlines() if line.startswith(("v ", "vt ", "vn "))]
    assert all(len(x.split(".")[-1]) == 6 for x in first[0].split()[1:])
    assert any(line.startswith("vn ") and all(len(x.split(".")[-1]) == 4 for x in line.split()[1:]) for line in first)
    assert np.array_equal(np.asarray(mesh.visual.material.image.convert("RGB")), albedo)
    with Renderer(96, 96) as r:
        a = r.render(v, f, uv, n, albedo, mode="albedo").astype(int)
        b = r.render(mesh.vertices, mesh.faces, mesh.visual.uv, mesh.vertex_normals,
                     np.asarray(mesh.visual.material.image.convert("RGB")), mode="albedo").astype(int)
    assert np.abs(a - b).max() <= 2


def test_obj_names(tmp_path, face):
    v, f, uv, n, albedo = face
    ex.export_obj(tmp_path, v, f, uv, n, albedo, name="head", texture_name="skin.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.mtl", "head.obj", "skin.png"]
    assert "map_Kd skin.png" in (tmp_path / "head.mtl").read_text()
    with pytest.raises(ValueError):
        ex.export_obj(tmp_path, v, f, uv, n, albedo, texture_name="../x.png")


def test_png16_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 65536, (37, 29), dtype=np.uint16)
    a[0, 0], a[0, 1] = 0, 65535
    path = ex.save_png16(tmp_path / "a.png", a)
    with Image.open(path) as im:
        assert im.mode == "I;16" and im.format == "PNG"
    back = ex.load_png16(path)
    assert back.dtype == np.uint16 and np.array_equal(back, a)
    x = rng.random((8, 9))
    ex.save_png16(tmp_path / "x.png", x)
    assert np.array_equal(ex.load_png16(tmp_path / "x.png"), np.round(x * 65535).astype(np.uint16))


def test_displacement_codec(tmp_path):
    scale = 0.002
    rng = np.random.default_rng(2)
    rate = rng.uniform(-scale, scale, (64, 64))
    rate[0, :3] = [-scale, 0.0, scale]
    enc = ex.encode_displacement(rate, scale)
    assert enc.dtype == np.uint16
    assert list(enc[0, :3]) == [0, round(65535 / 2), 65535]  # round((r/s + 1) / 2 * 65535)
    ex.save_png16(tmp_path / "d.png", enc)
    dec = ex.decode_displacement(ex.load_png16(tmp_path / "d.png"), scale)
    step = 2 * scale / 65535
    assert np.abs(dec - rate).max() <= step / 2 + 1e-9
    assert list(ex.encode_displacement(np.array([-1.0, 1.0]), scale)) == [0, 65535]  # clipped
    with pytest.raises(ValueError):
        ex.encode_displacement(rate, 0.0)


def test_save_png_and_normal_map(tmp_path):
    img = np.linspace(0, 1, 4 * 5 * 3).reshape(4, 5, 3)
    ex.save_png(tmp_path / "f.png", img)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "f.png")), (img * 255 + 0.5).astype(np.uint8))
    gray = np.array([[0.0, 0.5], [1.0, 2.0]])
    ex.save_png(tmp_path / "g.png", gray[..., None])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), [[0, 128], [255, 255]])
    normals = np.zeros((2, 2, 3))
    normals[..., 2] = 1
    normals[0, 0] = [-1, 0, 0]
    u8 = ex.normal_map_to_uint8(normals)
    assert u8.dtype == np.uint8
    assert list(u8[0, 0]) == [0, 128, 128] and list(u8[1, 1]) == [128, 128, 255]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "g.png"]


def test_glb_carries_the_detail_normal_map(tmp_path, face):
    v, f, uv, n, albedo = face
    rng = np.random.default_rng(0)
    normal_map = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tree, blob = read_glb(ex.export_glb(tmp_path / "mesh.glb", v, f, uv, n, albedo, normal_map))
    material = tree["materials"][tree["meshes"][0]["primitives"][0]["material"]]
    image = tree["images"][tree["textures"][material["normalTexture"]["index"]]["source"]]
    view = tree["bufferViews"][image["bufferView"]]
    png = Image.open(io.BytesIO(blob[view.get("byteOffset", 0):view.get("byteOffset", 0) + view["byteLength"]]))
    assert np.array_equal(np.asarray(png.convert("RGB")), normal_map)  # rows as given: +v up is +y
    mesh = only_geometry(trimesh.load(tmp_path / "mesh.glb"))
    assert np.array_equal(np.asarray(mesh.visual.material.normalTexture.convert("RGB")), normal_map)
    plain, _ = read_glb(ex.export_glb(tmp_path / "plain.glb", v, f, uv, n, albedo))
    assert "normalTexture" not in plain["materials"][0]
    with pytest.raises(ValueError, match="normal map"):
        ex.export_glb(tmp_path / "bad.glb", v, f, uv, n, albedo, normal_map[..., :2])


def test_depth_codec(tmp_path):
    depth = np.full((40, 50), np.nan, np.float32)
    depth[10:30, 10:40] = np.linspace(-0.05, 0.04, 30, dtype=np.float32)[None, :]  # metres
    encoded, offset = ex.encode_depth(depth)
    assert encoded.dtype == np.uint16 and encoded.shape == depth.shape
    assert (encoded[np.isnan(depth)] == 0).all() and encoded[10:30, 10:40].min() == 1
    assert encoded[20, 39] > encoded[20, 10]  # larger Z (closer) -> larger value
    ex.save_png16(tmp_path / "depth.png", encoded)
    back = ex.decode_depth(ex.load_png16(tmp_path / "depth.png"), ex.DEPTH_METRES_PER_UNIT, offset)
    np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
    assert np.nanmax(np.abs(back - depth)) <= ex.DEPTH_METRES_PER_UNIT / 2 + 1e-7
    empty, _ = ex.encode_depth(np.full((3, 3), np.nan))
    assert not empty.any()


def test_select_outputs():
    from facelift.errors import FaceLiftError, UnknownOutputError

    assert ex.select_outputs(None) == tuple(ex.OUTPUTS)
    assert ex.select_outputs("depth, glb,,glb") == ("glb", "depth")  # OUTPUTS order, once each
    assert ex.select_outputs(["overlay"]) == ("overlay",)
    for bad in ("glb,nope", "", [3]):
        with pytest.raises(UnknownOutputError, match="Valid: glb, obj") as err:
            ex.select_outputs(bad)
        assert isinstance(err.value, FaceLiftError) and isinstance(err.value, ValueError)

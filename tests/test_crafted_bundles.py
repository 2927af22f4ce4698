"""Crafted (hostile or broken) bundles, issue 17: every failure is a WeightsError naming the
file, raised before anything large is allocated or computed. The bundles are the small ones
of bundle_helpers.make_bundle with one file rewritten by hand in tmp_path."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file

from facelift import FaceLift
from facelift._jsonfile import MAX_JSON_BYTES, parse_json, read_json_file
from facelift.errors import WeightsError
from facelift.face_model import FaceModel
from facelift.face_model.model import MAX_TRIANGLES
from facelift.models import DRN, FAN, load_model
from facelift.pipeline import CHECKPOINTS_DIR

from bundle_helpers import make_bundle


def _refused(bundle, file, match, seconds=5.0):
    """from_pretrained(bundle) raises a WeightsError naming `file` and matching `match`, quickly."""
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=match) as info:
        FaceLift.from_pretrained(bundle).close()
    assert str(bundle / file) in str(info.value), str(info.value)
    assert time.perf_counter() - start < seconds
    return str(info.value)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ------------------------------------------------------------------ JSON configs
@pytest.mark.parametrize("file", ["config.json", "fan/config.json", "drn/config.json"])
@pytest.mark.parametrize("case", ["deep", "nan", "too_large", "not_an_object", "binary"])
def test_every_config_json_is_capped_and_checked(tmp_path, file, case):
    bundle = make_bundle(tmp_path / "b")
    path = bundle / file
    config = json.loads(path.read_text())
    if case == "deep":  # was a RecursionError
        text = json.dumps(config)[:-1] + ', "x": ' + _nested(100_000) + "}"
        match = "nests lists or objects more than"
    elif case == "nan":
        text = json.dumps({**config, "x": float("nan")})
        match = "not valid JSON"
    elif case == "too_large":  # the network configs had no cap at all (a 300 MB one was read)
        text = json.dumps({**config, "x": "a" * (MAX_JSON_BYTES + 10)})
        match = "too large for a config file"
    elif case == "not_an_object":
        text, match = "[1, 2]", "must hold a JSON object"
    else:
        path.write_bytes(b"\xff\xfe\x00{")
        text, match = None, "not UTF-8"
    if text is not None:
        path.write_text(text)
    _refused(bundle, file, match)


def test_parse_json_depth_and_strings():
    assert parse_json('{"a": [[["x"]]], "b": "[[[[[[[[[[[[[[[[[[[[[[[["}', "t")["a"] == [[["x"]]]
    with pytest.raises(WeightsError, match="17 levels|more than 16"):
        parse_json(_nested(17), "t")
    assert parse_json(_nested(16), "t") is not None


def test_load_model_reads_its_config_capped(tmp_path):
    FAN(resolution=128, ngf=2).save_pretrained(tmp_path / "fan")
    (tmp_path / "fan" / "config.json").write_text('{"_class_name": "FAN", "x": ' + _nested(50_000) + "}")
    with pytest.raises(WeightsError, match="nests lists"):
        load_model(tmp_path / "fan")


def test_read_json_file_refuses_a_fifo_without_blocking(tmp_path):
    import os

    os.mkfifo(tmp_path / "config.json")
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="not a regular file"):
        read_json_file(tmp_path / "config.json")
    assert time.perf_counter() - start < 2


# ------------------------------------------------------------------ networks
@pytest.mark.parametrize("ngf", [1024, 100_000])
def test_an_absurd_network_size_is_refused_before_allocating(tmp_path, ngf):
    """ngf=1024 used to try to allocate 52 GiB: the architecture is now built on the meta
    device and its weight count bounded before anything is allocated."""
    bundle = make_bundle(tmp_path / "b")
    config = json.loads((bundle / "drn" / "config.json").read_text())
    (bundle / "drn" / "config.json").write_text(json.dumps({**config, "ngf": ngf}))
    _refused(bundle, "drn/config.json", r"weights, more than the 100,000,000", seconds=3)


def test_weights_whose_shapes_do_not_match_are_refused_from_the_header(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    config = json.loads((bundle / "fan" / "config.json").read_text())
    (bundle / "fan" / "config.json").write_text(json.dumps({**config, "ngf": 8}))
    read = []
    import facelift.models._base as base

    real_safe_open = base.safe_open

    class Watching:
        def __init__(self, *args, **kwargs):
            self._f = real_safe_open(*args, **kwargs)

        def __enter__(self):
            inner = self._f.__enter__()

            class Proxy:
                def __getattr__(self, name):
                    return getattr(inner, name)

                def get_tensor(self, key):
                    read.append(key)
                    return inner.get_tensor(key)
            return Proxy()

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    monkeypatch.setattr(base, "safe_open", Watching)
    _refused(bundle, "fan/model.safetensors", r"has shape \(2, 3, 3, 3\), FAN needs \(8, 3, 3, 3\)")
    assert read == []  # refused from the header: no tensor was read


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_infinite_weights_are_refused(tmp_path, value):
    """Such weights used to load silently and render grey."""
    bundle = make_bundle(tmp_path / "b")
    tensors = load_file(bundle / "fan" / "model.safetensors")
    key = sorted(k for k, t in tensors.items() if t.is_floating_point())[3]
    tensors[key].view(-1)[0] = value
    save_file(tensors, bundle / "fan" / "model.safetensors")
    message = _refused(bundle, "fan/model.safetensors", "NaN or infinite")
    assert key in message


def test_a_float16_network_still_loads(tmp_path):
    pipe = FaceLift.from_pretrained(make_bundle(tmp_path / "b", fan_dtype=torch.float16))
    pipe.close()


# ------------------------------------------------------------------ the face model
@pytest.fixture(scope="module")
def shipped_arrays():
    with safe_open(str(CHECKPOINTS_DIR / "face_model.safetensors"), framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _write_face_model(bundle, shipped, metadata=None, **arrays):
    tensors, meta = shipped
    tensors = {**tensors, **{k: np.ascontiguousarray(v) for k, v in arrays.items()}}
    save_numpy(tensors, str(bundle / "face_model.safetensors"), metadata=meta if metadata is None else metadata)


@pytest.mark.parametrize("config, match", [
    ("[1, 2]", "a JSON object is needed, not list"),
    ("null", "a JSON object is needed, not NoneType"),
    ('"text"', "a JSON object is needed, not str"),
    ('{"format_version": 1, "x": ' + _nested(100_000) + "}", "nests lists or objects"),
    ('{"format_version": 1, "albedo_light_brightness": NaN}', "not valid JSON"),
    ("{not json", "not valid JSON"),
    ('{"format_version": 1, "albedo_light_brightness": true}', "albedo_light_brightness"),
])
def test_face_model_metadata_is_checked(tmp_path, shipped_arrays, config, match):
    """[1, 2] or null used to give an AttributeError, deep nesting a RecursionError."""
    bundle = make_bundle(tmp_path / "b")
    _write_face_model(bundle, shipped_arrays, metadata={"config": config})
    _refused(bundle, "face_model.safetensors", match)


def _case(name, tensors):
    n = len(tensors["mean_shape"])
    tris, mirror, uv, mean = tensors["triangles"], tensors["mirror"], tensors["uv"], tensors["mean_shape"]
    if name == "1.8M triangles":  # used to rasterise for 69 s, then a MemoryError
        return {"triangles": np.tile(tris, (2000, 1))}, f"at most {MAX_TRIANGLES:,}"
    if name == "NaN mean shape":  # used to be a LinAlgError in the fit
        bad = mean.copy()
        bad[5, 1] = np.nan
        return {"mean_shape": bad}, "mean_shape holds NaN"
    if name == "infinite albedo basis":
        bad = tensors["albedo_basis"].copy()
        bad[0, 0, 3, 3] = np.inf
        return {"albedo_basis": bad}, "albedo_basis holds NaN or infinite"
    if name == "uv x 1e6":  # used to be a ValueError (a huge meshgrid) in the rasteriser
        return {"uv": uv * 1e6}, r"uv coordinates must lie in \[0, 1\]"
    if name == "mean shape in millimetres":
        return {"mean_shape": mean * 1000}, "mean_shape is in metres"
    if name == "mirror out of range":
        bad = mirror.copy()
        bad[7] = n
        return {"mirror": bad}, "mirror index outside"
    if name == "mirror not a pairing":
        bad = mirror.copy()
        bad[bad != np.arange(n)] = 0
        return {"mirror": bad}, "mirror must pair vertices"
    if name == "triangle index wrapping around int32":
        bad = tris.astype(np.int64)
        bad[0, 0] = 2**32 + 5
        return {"triangles": bad}, "triangles index outside"
    if name == "negative triangle index":
        bad = tris.copy()
        bad[1, 2] = -1
        return {"triangles": bad}, "triangles index outside"
    if name == "float triangles":
        return {"triangles": tris.astype(np.float32)}, "triangles must hold integers"
    if name == "integer mean shape":
        return {"mean_shape": (mean * 1000).astype(np.int32)}, "mean_shape must hold floating-point"
    if name == "too many shape components":
        return {"shape_basis": np.zeros((1001, n, 3), np.float32)}, "at most 1,000 each"
    if name == "too many vertices":
        return {"mean_shape": np.zeros((10_001, 3), np.float32)}, "10,001 vertices"
    if name == "albedo too large":
        return {"albedo_mean": np.zeros((3, 1025, 1025), np.float32),
                "albedo_basis": np.zeros((0, 3, 1025, 1025), np.float32)}, "1025x1025; at most 1024"
    if name == "wrong uv shape":
        return {"uv": uv[:-1]}, r"uv must be \(N, 2\)"
    raise AssertionError(name)


@pytest.mark.parametrize("name", [
    "1.8M triangles", "NaN mean shape", "infinite albedo basis", "uv x 1e6", "mean shape in millimetres",
    "mirror out of range", "mirror not a pairing", "triangle index wrapping around int32",
    "negative triangle index", "float triangles", "integer mean shape", "too many shape components",
    "too many vertices", "albedo too large", "wrong uv shape",
])
def test_crafted_face_models_are_refused(tmp_path, shipped_arrays, name):
    bundle = make_bundle(tmp_path / "b")
    arrays, match = _case(name, shipped_arrays[0])
    _write_face_model(bundle, shipped_arrays, **arrays)
    _refused(bundle, "face_model.safetensors", match, seconds=5)


def test_a_face_model_too_large_is_refused_before_its_arrays_are_read(tmp_path, shipped_arrays, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    arrays, _ = _case("1.8M triangles", shipped_arrays[0])
    _write_face_model(bundle, shipped_arrays, **arrays)
    import safetensors

    read = []
    real = safetensors.safe_open

    class Watching:
        def __init__(self, *args, **kwargs):
            self._f = real(*args, **kwargs)

        def __enter__(self):
            inner = self._f.__enter__()

            class Proxy:
                def __getattr__(self, name):
                    return getattr(inner, name)

                def get_tensor(self, key):
                    read.append(key)
                    return inner.get_tensor(key)
            return Proxy()

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

    monkeypatch.setattr(safetensors, "safe_open", Watching)
    with pytest.raises(WeightsError, match="triangles"):
        FaceModel.load(bundle / "face_model.safetensors")
    assert read == []


def test_the_shipped_face_model_and_the_synthetic_one_pass(synthetic_model):
    model = FaceModel.load(CHECKPOINTS_DIR / "face_model.safetensors")
    assert model.n_vertices == 468
    synthetic_model.validate()


def test_extra_tensors_in_a_face_model_file_are_not_read(tmp_path, shipped_arrays):
    bundle = make_bundle(tmp_path / "b")
    _write_face_model(bundle, shipped_arrays, junk=np.zeros(10, np.float32))
    FaceLift.from_pretrained(bundle).close()


def test_a_drn_bound_still_loads_at_the_shipped_size(tmp_path):
    """The weight-count cap leaves room: the shipped-size networks (ngf 16, 256 px) load."""
    DRN(resolution=256, ngf=16).save_pretrained(tmp_path / "drn")
    assert DRN.from_pretrained(tmp_path / "drn").config["ngf"] == 16

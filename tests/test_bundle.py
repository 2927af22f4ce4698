"""Bundles on disk: round trips (every network, the face model, the pipeline), the shipped
`checkpoints/` bundle, and the errors a broken or incompatible bundle gives."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from facelift import FaceLift
from facelift.errors import WeightsError
from facelift.face_model import FaceModel
from facelift.models import DRN, FAN, BNet, PatchGAN
from facelift.pipeline import CHECKPOINTS_DIR, _bundle_files, _read_bundle_config

from bundle_helpers import CARD, folder_files, make_bundle

NETWORKS = {
    "bnet": lambda: BNet(resolution=128, n_albedo=4),
    "fan": lambda: FAN(resolution=128, ngf=2),
    "drn": lambda: DRN(resolution=128, ngf=2),
    "discriminator": lambda: PatchGAN(in_channels=4, ndf=4, n_layers=2),
}


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0)


@pytest.fixture(scope="module")
def small_pipe(tmp_path_factory):
    pipe = FaceLift.from_pretrained(make_bundle(tmp_path_factory.mktemp("small") / "bundle", seed=5))
    yield pipe
    pipe.close()


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.slow
def test_every_network_round_trips(name, tmp_path):
    torch.manual_seed(0)
    net = NETWORKS[name]().eval()
    net.save_pretrained(tmp_path / name)
    assert {p.name for p in (tmp_path / name).iterdir()} == {"config.json", "model.safetensors", "README.md"}
    assert "library_name: facelift" in (tmp_path / name / "README.md").read_text()
    loaded = type(net).from_pretrained(tmp_path / name)
    assert type(loaded) is type(net) and loaded.config == net.config and not loaded.training
    _same_state(net, loaded)


@pytest.mark.parametrize("name", ["fan", "discriminator"])
def test_a_network_stored_at_float16_loads_as_float32_on_cpu(name, tmp_path):
    torch.manual_seed(0)
    net = NETWORKS[name]().half()
    net.save_pretrained(tmp_path / name)
    loaded = type(net).from_pretrained(tmp_path / name)
    for key, tensor in loaded.state_dict().items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float32 and tensor.device.type == "cpu", key
            torch.testing.assert_close(tensor, net.state_dict()[key].float(), rtol=0, atol=0)


def test_the_face_model_round_trips(tmp_path):
    model = FaceModel.load(CHECKPOINTS_DIR / "face_model.safetensors")
    model.save(tmp_path / "fm.safetensors")
    again = FaceModel.load(tmp_path / "fm.safetensors")
    assert again.config == model.config
    for name in ("mean_shape", "shape_basis", "triangles", "uv", "mirror", "albedo_mean", "albedo_basis"):
        np.testing.assert_array_equal(getattr(again, name), getattr(model, name))


@pytest.mark.slow
def test_the_pipeline_round_trips_with_its_model_cards(small_pipe, tmp_path):
    out = small_pipe.save_pretrained(tmp_path / "saved")
    assert set(folder_files(out)) == set(_bundle_files(_read_bundle_config(out)))
    assert (out / "README.md").read_text() == CARD  # the source bundle's card is kept
    assert all("library_name: facelift" in (out / sub / "README.md").read_text() for sub in ("fan", "drn"))
    config = json.loads((out / "config.json").read_text())
    assert config["library_version"] and config["format_version"] == 1 and config["seed"] == 5
    again = FaceLift.from_pretrained(out)
    try:
        assert {k: v for k, v in again.config.items() if k != "library_version"} == \
            {k: v for k, v in small_pipe.config.items() if k != "library_version"}
        _same_state(again.fan, small_pipe.fan)
        _same_state(again.drn, small_pipe.drn)
        for name in ("mean_shape", "shape_basis", "triangles", "uv", "albedo_mean", "albedo_basis"):
            np.testing.assert_array_equal(getattr(again.face_model, name), getattr(small_pipe.face_model, name))
        # saved again: the same bytes (a bundle that loads back identically)
        again.save_pretrained(tmp_path / "saved2")
        assert folder_files(tmp_path / "saved2") == folder_files(out)
    finally:
        again.close()


def test_saving_over_the_source_bundle_keeps_its_cards(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle / "fan" / "README.md").write_text("# my FAN card\n")
    before = folder_files(bundle)
    pipe = FaceLift.from_pretrained(bundle)
    try:
        pipe.save_pretrained(bundle)
    finally:
        pipe.close()
    assert folder_files(bundle) == before


def test_a_bundle_without_a_card_gets_a_generated_one(small_pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(small_pipe, "bundle_path", None)
    out = small_pipe.save_pretrained(tmp_path / "saved")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: facelift") and "FaceLift.from_pretrained" in card
    assert "`fan/`" in card and "`drn/`" in card and "B-Net" not in card


def test_the_shipped_bundle_loads():
    config = _read_bundle_config(CHECKPOINTS_DIR)
    assert all((CHECKPOINTS_DIR / f).is_file() for f in _bundle_files(config))
    assert isinstance(config["library_version"], str)
    pipe = FaceLift.from_pretrained(CHECKPOINTS_DIR)
    try:
        assert pipe.face_model.n_vertices == 468 and pipe.fan is not None and pipe.drn is not None
        for net in (pipe.fan, pipe.drn):
            assert all(t.dtype == torch.float32 for t in net.state_dict().values() if t.is_floating_point())
    finally:
        pipe.close()


def test_a_saved_bundle_keeps_the_images_its_card_shows(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    (bundle / "figs").mkdir()
    (bundle / "figs" / "pca.png").write_bytes(b"\x89PNG fake figure")
    (tmp_path / "outside.png").write_bytes(b"not in the bundle")
    (bundle / "README.md").write_text(
        "# card\n![pca](figs/pca.png)\n![web](https://example.org/x.png)\n![up](../outside.png)\n"
        "![gone](missing.png)\n[a link, not an image](config.json)\n")
    pipe = FaceLift.from_pretrained(bundle)
    try:
        out = pipe.save_pretrained(tmp_path / "o" / "saved")
    finally:
        pipe.close()
    assert (out / "figs" / "pca.png").read_bytes() == b"\x89PNG fake figure"
    assert not (tmp_path / "o" / "outside.png").exists()  # a link out of the bundle is not followed
    assert set(folder_files(out)) == set(_bundle_files(_read_bundle_config(out))) | {"figs/pca.png"}


def test_the_shipped_model_card_shows_its_figure_from_inside_the_bundle():
    card = (CHECKPOINTS_DIR / "README.md").read_text()
    assert "![albedo PCA" in card and "](albedo_pca.png)" in card
    assert (CHECKPOINTS_DIR / "albedo_pca.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ validation
def _edit_config(bundle, **changes):
    cfg = json.loads((bundle / "config.json").read_text())
    cfg.update(changes)
    (bundle / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes, message", [
    ({"format_version": 99}, r"format_version 99.*upgrade FaceLift"),
    ({"format_version": "1"}, r"format_version '1'"),
    ({"format_version": True}, r"format_version True"),
    ({"format_version": None}, r"format_version None"),
    ({"uv_resolution": "256"}, r"'uv_resolution' must be an integer"),
    ({"uv_resolution": True}, r"'uv_resolution' must be an integer"),
    ({"mesh_resolution": 100000}, r"'mesh_resolution' must be an integer in \[1, 1024\]"),
    ({"mesh_subdivisions": 9}, r"'mesh_subdivisions'"),
    ({"library_version": 1}, r"'library_version' must be a string"),
    ({"components": ["face_model.safetensors"]}, r"must list its components"),
    ({"components": {"face_model": "../face_model.safetensors"}}, r"components.face_model"),
    ({"components": {"face_model": "face_model.npz"}}, r"components.face_model"),
    ({"components": {"face_model": "face_model.safetensors", "fan": "/etc"}}, r"components.fan"),
    ({"components": {"face_model": "face_model.safetensors", "albedo_gan": "x"}}, r"unknown components"),
])
def test_invalid_bundle_configs_are_refused(tmp_path, changes, message):
    bundle = make_bundle(tmp_path / "b")
    _edit_config(bundle, **changes)
    with pytest.raises(WeightsError, match=message) as info:
        FaceLift.from_pretrained(bundle)
    assert str(bundle / "config.json") in str(info.value)


def test_a_shape_mismatch_between_config_and_weights_names_the_file(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    cfg = json.loads((bundle / "fan" / "config.json").read_text())
    (bundle / "fan" / "config.json").write_text(json.dumps({**cfg, "ngf": 4}))
    with pytest.raises(WeightsError, match=r"fan/model\.safetensors: tensor .* has shape"):
        FaceLift.from_pretrained(bundle)


def test_a_network_that_does_not_fit_the_pipeline_is_refused(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    shutil.rmtree(bundle / "drn")
    DRN(resolution=128, ngf=2, out_channels=3).save_pretrained(bundle / "drn")
    with pytest.raises(WeightsError, match=r"drn/config\.json: the pipeline needs a drn with out_channels=1"):
        FaceLift.from_pretrained(bundle)
    shutil.rmtree(bundle / "drn")
    FAN(resolution=128, ngf=2).save_pretrained(bundle / "drn")  # a FAN where the DRN should be
    with pytest.raises(WeightsError, match=r"holds a FAN, which cannot be loaded as a DRN"):
        FaceLift.from_pretrained(bundle)


@pytest.mark.parametrize("missing", ["config.json", "face_model.safetensors", "fan/model.safetensors",
                                     "drn/config.json"])
def test_a_missing_file_is_named(tmp_path, missing):
    bundle = make_bundle(tmp_path / "b")
    (bundle / missing).unlink()
    with pytest.raises(WeightsError, match=str(bundle / missing).replace(".", r"\.")):
        FaceLift.from_pretrained(bundle)


@pytest.mark.parametrize("file", ["face_model.safetensors", "fan/model.safetensors"])
@pytest.mark.parametrize("keep", [0, 7, 1000])
def test_a_truncated_safetensors_file_is_named(tmp_path, file, keep):
    bundle = make_bundle(tmp_path / "b")
    data = (bundle / file).read_bytes()
    (bundle / file).write_bytes(data[:keep])
    with pytest.raises(WeightsError, match=str(bundle / file).replace(".", r"\.")):
        FaceLift.from_pretrained(bundle)


def test_pickle_files_are_never_read(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b", pickles=True)

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was read")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    pipe = FaceLift.from_pretrained(bundle)
    pipe.close()
    assert "pytorch_model.bin" not in _bundle_files(_read_bundle_config(bundle))


def test_a_file_is_not_a_bundle_and_device_is_checked(tmp_path):
    with pytest.raises(WeightsError, match="is a file"):
        FaceLift.from_pretrained(CHECKPOINTS_DIR / "config.json")
    with pytest.raises(ValueError, match="device"):
        FaceLift.from_pretrained(CHECKPOINTS_DIR, device="not-a-device")


def test_the_documented_signature_positional_arguments_and_device_none():
    # from_pretrained(name_or_path, revision, cache_dir, local_files_only, device)
    pipe = FaceLift.from_pretrained(CHECKPOINTS_DIR, None, None, True, None)
    try:
        assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in pipe.fan.parameters())
    finally:
        pipe.close()

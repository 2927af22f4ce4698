"""facelift.training.pack: what a GPU run carries, packed here and unpacked there, read back."""

import numpy as np
import pytest
import torch

from facelift.training.data import ROBUST_LIGHTING_FILE, UVDataset, synthetic_shards
from facelift.training.pack import pack_samples, pack_vgg, unpack_samples, unpack_vgg


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = synthetic_shards(tmp_path_factory.mktemp("pack") / "train", n=10, resolution=64, per_shard=4)
    names = UVDataset(root).names
    rng = np.random.default_rng(1)
    np.savez(root / ROBUST_LIGHTING_FILE, names=np.array(names), sh=rng.normal(size=(10, 3, 9)).astype(np.float32),
             coefficients=rng.normal(size=(10, 6)).astype(np.float32),
             outlier_sh=rng.normal(size=(10, 3, 9)).astype(np.float32),
             outlier_coefficients=rng.normal(size=(10, 6)).astype(np.float32),
             scale=rng.uniform(0.01, 0.1, 10).astype(np.float32), skin_fraction=np.ones(10, np.float32))
    return root


@pytest.mark.unit
def test_packed_samples_unpack_to_a_shard_folder_the_dataset_reads(shards, tmp_path):
    size = pack_samples(shards, tmp_path / "samples.npz", 6, seed=3, normal_resolution=32)
    assert size == (tmp_path / "samples.npz").stat().st_size
    assert unpack_samples(tmp_path / "samples.npz", tmp_path / "train", per_shard=4) == 6
    full = UVDataset(shards, with_lighting="robust")
    back = UVDataset(tmp_path / "train", with_lighting="robust")
    assert len(back) == 6 and len(set(back.names)) == 6
    for i, name in enumerate(back.names):
        j = full.names.index(name)
        a, b = full[j], back[i]
        assert torch.equal(a["visibility"], b["visibility"])
        vis = a["visibility"] > 0
        err = (a["texture"] - b["texture"]).abs()
        assert err[vis.expand_as(err)].mean() < 3 / 255  # JPEG at quality 90
        assert (b["texture"][(~vis).expand_as(err)] == 0).all()  # nothing outside the visible texels
        inside = a["mask"][0] > 0
        cos = (a["normal"] * b["normal"]).sum(0)[inside]
        assert cos.mean() > np.cos(np.radians(3))
        assert torch.equal(a["mask"], b["mask"])
        for key in ("sh_lf", "coefficients_lf", "outlier_sh_lf", "outlier_coefficients_lf", "scale_lf"):
            assert torch.equal(a[key], b[key]), key


@pytest.mark.unit
def test_packing_refuses_a_bad_count_a_stale_lighting_file_and_another_version(shards, tmp_path):
    with pytest.raises(ValueError, match="count"):
        pack_samples(shards, tmp_path / "x.npz", 11)
    stale = tmp_path / "stale"
    stale.mkdir()
    for f in shards.iterdir():
        (stale / f.name).write_bytes(f.read_bytes())
    with np.load(stale / ROBUST_LIGHTING_FILE) as z:
        d = dict(z)
    d["names"] = d["names"][::-1]
    np.savez(stale / ROBUST_LIGHTING_FILE, **d)
    with pytest.raises(ValueError, match="does not match"):
        pack_samples(stale, tmp_path / "x.npz", 10)
    pack_samples(shards, tmp_path / "ok.npz", 2)
    with np.load(tmp_path / "ok.npz") as z:
        d = dict(z)
    d["version"] = np.array(99)
    np.savez(tmp_path / "future.npz", **d)
    with pytest.raises(ValueError, match="pack version"):
        unpack_samples(tmp_path / "future.npz", tmp_path / "out")


@pytest.mark.unit
def test_vgg_packed_to_int8_loads_back_within_half_a_step(tmp_path):
    from safetensors.torch import save_file

    from facelift.models import VGG16Features

    torch.manual_seed(0)
    vgg = VGG16Features()
    weights = {f"features.{k}": v.contiguous() for k, v in vgg.features.state_dict().items()}
    save_file({**weights, "classifier.0.weight": torch.zeros(2, 2)}, str(tmp_path / "vgg.safetensors"))
    size = pack_vgg(tmp_path / "vgg.safetensors", tmp_path / "vgg_int8.safetensors")
    assert size < 0.3 * (tmp_path / "vgg.safetensors").stat().st_size
    unpack_vgg(tmp_path / "vgg_int8.safetensors", tmp_path / "back.safetensors")
    back = VGG16Features.from_safetensors(tmp_path / "back.safetensors")
    for key, w in vgg.features.state_dict().items():
        b = back.features.state_dict()[key]
        if w.ndim == 4:
            step = w.abs().flatten(1).max(1).values / 127
            assert ((b - w).abs().flatten(1).max(1).values <= step / 2 + 1e-7).all(), key
        else:
            assert torch.equal(b, w), key

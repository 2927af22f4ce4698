"""training/convert_vgg16.py: torchvision's VGG-16 .pth -> the safetensors the perceptual loss
reads, and the VGG loader's pointer to it when given a .pth."""

import convert_vgg16  # training/ is on sys.path via conftest
import pytest
import torch
from safetensors import safe_open

from facelift.errors import WeightsError
from facelift.models import VGG16Features


def _torchvision_like_state(seed=0):
    """A state dict with torchvision vgg16()'s keys and shapes: features.* plus the classifier."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in VGG16Features().state_dict().items()}
    for i, (o, n) in {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}.items():
        state[f"classifier.{i}.weight"] = torch.zeros(1, 1).expand(o, n)  # shape only; expand keeps it small
        state[f"classifier.{i}.bias"] = torch.zeros(o)
    return state


@pytest.mark.slow
def test_convert_keeps_the_feature_tensors_and_loads(tmp_path):
    state = _torchvision_like_state()
    src, dst = tmp_path / "vgg16-397923af.pth", tmp_path / "vgg16.safetensors"
    torch.save({k: v.clone() if k.startswith("features.") else v for k, v in state.items()}, src)
    convert_vgg16.main([str(src), str(dst)])
    with safe_open(str(dst), framework="pt") as f:
        keys = set(f.keys())
    assert keys == set(convert_vgg16.feature_keys()) and len(keys) == 26
    assert not any(k.startswith("classifier.") for k in keys)
    vgg = VGG16Features.from_safetensors(dst)
    for k, v in vgg.state_dict().items():
        torch.testing.assert_close(v, state[k])


@pytest.mark.slow
def test_convert_refuses_an_incomplete_or_unsafe_file(tmp_path):
    state = _torchvision_like_state()
    del state["features.28.bias"]
    torch.save(state, tmp_path / "part.pth")
    with pytest.raises(WeightsError, match=r"features\.28\.bias"):
        convert_vgg16.convert(tmp_path / "part.pth", tmp_path / "out.safetensors")
    torch.save({"net": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")  # a pickled module, not tensors
    with pytest.raises(WeightsError, match="weights_only"):
        convert_vgg16.convert(tmp_path / "module.pth", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_vgg_loader_points_a_pth_to_the_converter(tmp_path):
    torch.save({k: v for k, v in VGG16Features().state_dict().items()}, tmp_path / "vgg16.pth")
    with pytest.raises(WeightsError, match="convert_vgg16.py"):
        VGG16Features.from_safetensors(tmp_path / "vgg16.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(WeightsError, match="convert_vgg16.py"):
        VGG16Features.from_safetensors(tmp_path / "junk.safetensors")

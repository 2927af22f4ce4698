import math

import pytest
import torch

from facelift.models import BNet, BNetOutput


def resnet18_x2_params(in_channels=3, n_out=226):
    """Parameter count of ResNet-18 whose BasicBlocks widen to 2 * planes, layer by layer."""
    n = in_channels * 64 * 7 * 7 + 2 * 64  # conv1 + bn1
    inplanes = 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            out = 2 * planes
            n += inplanes * planes * 9 + 2 * planes  # conv1 + bn1
            n += planes * out * 9 + 2 * out  # conv2 + bn2
            if s != 1 or inplanes != out:
                n += inplanes * out + 2 * out  # downsample conv1x1 + bn
            inplanes = out
    assert inplanes == 1024
    return n + 1024 * n_out + n_out  # fc


@pytest.fixture(scope="module")
def bnet128():
    return BNet(resolution=128).eval()


@pytest.mark.parametrize("resolution", [128, 256])
def test_output_shapes(resolution, bnet128):
    model = bnet128 if resolution == 128 else BNet(resolution=resolution).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, resolution, resolution))
    assert isinstance(out, BNetOutput)
    albedo, sh = out
    assert albedo.shape == (2, 199) and sh.shape == (2, 3, 9)
    assert albedo.dtype == sh.dtype == torch.float32


def test_pooled_feature_is_1024(bnet128):
    with torch.no_grad():
        assert bnet128.forward_features(torch.rand(1, 3, 128, 128)).shape == (1, 1024)
    assert bnet128.avgpool.kernel_size == 4 and BNet(resolution=256).avgpool.kernel_size == 8


def test_parameter_count(bnet128):
    model = bnet128
    assert sum(p.numel() for p in model.fc.parameters()) == 1024 * (199 + 27) + 226
    assert sum(p.numel() for p in model.parameters()) == resnet18_x2_params()
    small = BNet(resolution=128, n_albedo=10, in_channels=4)
    assert sum(p.numel() for p in small.parameters()) == resnet18_x2_params(4, 37)


def test_torchvision_key_names(bnet128):
    keys = set(bnet128.state_dict())
    for key in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight",
                "layer2.0.downsample.1.weight", "layer4.1.bn2.bias", "fc.weight", "fc.bias"]:
        assert key in keys
    assert not any(k.startswith(("backbone.", "model.")) for k in keys)


def test_initial_output_is_white_ambient_light_and_mean_albedo(bnet128):
    model = bnet128
    with torch.no_grad():
        albedo, sh = model(torch.rand(4, 3, 128, 128))
    y00 = 0.5 / math.sqrt(math.pi)
    irradiance = math.pi * sh[:, :, 0] * y00  # A_0 * gamma_00 * Y_00
    torch.testing.assert_close(irradiance, torch.ones_like(irradiance), atol=0.05, rtol=0)
    assert sh[:, :, 1:].abs().max() < 0.05
    assert albedo.abs().max() < 0.05
    bias = model.fc.bias.detach()
    assert torch.allclose(bias[199::9], torch.full((3,), 1 / (math.pi * 0.2820948)))
    assert bias[:199].abs().max() == 0


@pytest.mark.slow
def test_gradients_flow(check_backward):
    check_backward(BNet(resolution=128), torch.rand(2, 3, 128, 128),
                   lambda out: out.albedo_coefficients.pow(2).mean() + out.sh.pow(2).mean())


@pytest.mark.slow
def test_save_load_roundtrip(roundtrip):
    model = BNet(resolution=128, n_albedo=50)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 128, 128))  # move the BatchNorm running statistics off their defaults
    loaded = roundtrip(model, torch.rand(1, 3, 128, 128))
    assert loaded.config == {"resolution": 128, "n_albedo": 50, "in_channels": 3}


@pytest.mark.parametrize("config", [
    {"resolution": 64}, {"resolution": 256.0}, {"resolution": "256"}, {"resolution": True},
    {"n_albedo": 0}, {"n_albedo": -3}, {"n_albedo": 1.5}, {"in_channels": 0}, {"in_channels": None},
])
def test_bad_config(config):
    with pytest.raises(ValueError, match=next(iter(config))):
        BNet(**config)


def test_bad_input(bnet128):
    model = bnet128
    with pytest.raises(ValueError, match="128, 128"):
        model(torch.rand(1, 3, 256, 256))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 1, 128, 128))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(3, 128, 128))
    with pytest.raises(TypeError):
        model(torch.zeros(1, 3, 128, 128, dtype=torch.uint8))

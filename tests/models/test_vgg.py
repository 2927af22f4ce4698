import pytest
import torch
from safetensors.torch import load_file, save_file

from facelift.errors import WeightsError
from facelift.models import LPIPS, PERCEPTUAL_LAYERS, VGG16Features, perceptual_loss

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CHANNELS = {"relu1_2": 64, "relu2_2": 128, "relu3_3": 256, "relu4_3": 512, "relu5_3": 512}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A safetensors file with torchvision's keys and random values (plus an extra key)."""
    path = tmp_path_factory.mktemp("vgg") / "random.safetensors"
    tensors = dict(VGG16Features().state_dict())
    tensors["classifier.0.bias"] = torch.zeros(4096)
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def shared_weights(shared_file):
    return shared_file("weights/vgg16_imagenet_lpips.safetensors")


def test_torchvision_layout():
    model = VGG16Features()
    assert sorted(model.state_dict()) == sorted(f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias"))
    assert len(model.features) == 31
    assert sum(p.numel() for p in model.parameters()) == 14_714_688
    assert not any(p.requires_grad for p in model.parameters())


def test_random_weights_with_the_right_keys_load(random_weights):
    model = VGG16Features.from_safetensors(random_weights)
    expected = load_file(str(random_weights))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_missing_file_raises(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match="nope.safetensors"):
        VGG16Features.from_safetensors(missing)


def test_missing_key_raises(tmp_path, random_weights):
    tensors = load_file(str(random_weights))
    del tensors["features.14.weight"]
    path = tmp_path / "missing_key.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"missing_key\.safetensors.*features\.14\.weight"):
        VGG16Features.from_safetensors(path)


def test_wrong_shape_raises(tmp_path, random_weights):
    tensors = load_file(str(random_weights))
    tensors["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    path = tmp_path / "bad_shape.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=r"bad_shape\.safetensors.*features\.0\.weight"):
        VGG16Features.from_safetensors(path)


def test_corrupted_file_raises(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="garbage.safetensors"):
        VGG16Features.from_safetensors(path)


def test_feature_shapes_and_layer_choice(random_weights):
    model = VGG16Features.from_safetensors(random_weights)
    feats = model(torch.rand(2, 3, 64, 64))
    assert list(feats) == list(PERCEPTUAL_LAYERS)
    for j, name in enumerate(PERCEPTUAL_LAYERS):
        assert feats[name].shape == (2, CHANNELS[name], 64 >> j, 64 >> j)
        assert feats[name].min() >= 0  # ReLU outputs
    two = VGG16Features(layers=["relu2_2", "relu1_2"])
    assert list(two(torch.rand(1, 3, 32, 32))) == ["relu1_2", "relu2_2"]


@pytest.mark.parametrize("config", [{"layers": []}, {"layers": ["conv1_1"]}, {"layers": "relu1_2"},
                                    {"input_norm": "none"}])
def test_bad_config(config):
    with pytest.raises(ValueError, match=next(iter(config))):
        VGG16Features(**config)


def test_save_load_roundtrip(roundtrip, random_weights):
    model = VGG16Features.from_safetensors(random_weights, layers=["relu1_2", "relu3_3"])
    loaded = roundtrip(model, torch.rand(1, 3, 32, 32))
    assert not any(p.requires_grad for p in loaded.parameters())


def test_perceptual_loss_matches_eq8():
    a = {"x": torch.rand(2, 4, 5, 6), "y": torch.rand(2, 8, 3, 3)}
    b = {"x": torch.rand(2, 4, 5, 6), "y": torch.rand(2, 8, 3, 3)}
    expected = sum(
        sum(torch.sqrt(((a[k][i] - b[k][i]) ** 2).sum()) / a[k][i].numel() for i in range(2)) / 2 for k in a
    ) / 2
    torch.testing.assert_close(perceptual_loss(a, b), expected)
    assert perceptual_loss(a, a) == 0
    torch.testing.assert_close(perceptual_loss(list(a.values()), list(b.values())), expected)


def test_perceptual_loss_bad_inputs():
    a = {"x": torch.rand(1, 4, 5, 6)}
    with pytest.raises(ValueError):
        perceptual_loss(a, {"z": torch.rand(1, 4, 5, 6)})
    with pytest.raises(ValueError):
        perceptual_loss(a, {"x": torch.rand(1, 4, 5, 5)})
    with pytest.raises(ValueError):
        perceptual_loss([], [])


def test_perceptual_loss_gradient_reaches_the_input_not_the_weights(random_weights):
    vgg = VGG16Features.from_safetensors(random_weights)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    target = vgg(torch.rand(1, 3, 32, 32))
    perceptual_loss(vgg(x), target).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())
    y = torch.rand(1, 3, 32, 32, requires_grad=True)  # identical features: zero, finite gradient
    perceptual_loss(vgg(y), vgg(y.detach())).backward()
    assert torch.isfinite(y.grad).all()


def test_shared_imagenet_weights(shared_weights):
    vgg = VGG16Features.from_safetensors(shared_weights)
    gray = torch.full((1, 3, 64, 64), 0.5)
    noise = torch.rand(1, 3, 64, 64)
    smooth = torch.nn.functional.avg_pool2d(noise, 5, stride=1, padding=2)
    with torch.no_grad():
        f_gray, f_noise, f_smooth = vgg(gray), vgg(noise), vgg(smooth)
    for feats in (f_gray, f_noise, f_smooth):
        assert all(torch.isfinite(f).all() for f in feats.values())
    assert all(f_noise[k].abs().sum() > 0 for k in f_noise)
    # a blurred image is perceptually closer to the original than a flat gray one
    assert perceptual_loss(f_noise, f_smooth) < perceptual_loss(f_noise, f_gray)


def test_shared_lpips(shared_weights):
    lpips = LPIPS.from_safetensors(shared_weights)
    a = torch.rand(2, 3, 64, 64)
    slight = (a + 0.02 * torch.randn_like(a)).clamp(0, 1)
    with torch.no_grad():
        same, near, far = lpips(a, a), lpips(a, slight), lpips(a, torch.rand(2, 3, 64, 64))
    assert same.shape == (2,)
    assert torch.all(same.abs() < 1e-6) and torch.all(near > 0) and torch.all(near < far)


def test_lpips_needs_its_heads(random_weights):
    with pytest.raises(WeightsError, match="lpips.lin0.weight"):
        LPIPS.from_safetensors(random_weights)

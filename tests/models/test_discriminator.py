import pytest
import torch

from facelift.models import PatchGAN


def patchgan_params(in_channels=3, ndf=64, n_layers=3):
    n = in_channels * ndf * 16 + ndf  # first conv (bias, no norm)
    mult = 1
    for i in range(1, n_layers + 1):
        prev, mult = mult, min(2**i, 8)
        n += ndf * prev * ndf * mult * 16 + 2 * ndf * mult  # conv (no bias) + BN
    return n + ndf * mult * 16 + 1  # last conv -> 1 logit (bias)


@pytest.mark.parametrize("resolution, patches", [(128, 14), (256, 30)])
def test_output_shapes(resolution, patches):
    model = PatchGAN().eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, resolution, resolution))
    assert logits.shape == (2, 1, patches, patches)


def test_parameter_count_and_layout():
    model = PatchGAN()
    assert sum(p.numel() for p in model.parameters()) == patchgan_params() == 2_765_633
    assert sum(p.numel() for p in PatchGAN(in_channels=6, ndf=8, n_layers=2).parameters()) == patchgan_params(6, 8, 2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 3


def test_logits_are_unbounded_and_differ_per_patch():
    model = PatchGAN(ndf=8).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 3, 64, 64))
    assert logits.std() > 0


def test_smallest_input():
    model = PatchGAN(ndf=8).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 24, 24)).shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="at least 24x24"):
        model(torch.rand(1, 3, 16, 16))


def test_gradients_flow(check_backward):
    check_backward(PatchGAN(ndf=16), torch.rand(2, 3, 64, 64))


def test_save_load_roundtrip(roundtrip):
    model = PatchGAN(in_channels=4, ndf=16)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 4, 64, 64))
    roundtrip(model, torch.rand(2, 4, 64, 64))


@pytest.mark.parametrize("config", [{"in_channels": 0}, {"ndf": -1}, {"n_layers": 0}, {"ndf": 64.0}])
def test_bad_config(config):
    with pytest.raises(ValueError, match=next(iter(config))):
        PatchGAN(**config)


def test_bad_input():
    model = PatchGAN(ndf=8)
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(TypeError):
        model([[0.0]])

import math

import pytest
import torch

from facelift.models import DRN, FAN, UNet
from facelift.models.unet import FlipConcat, UnetSkipConnectionBlock


def unet_params(resolution, in_channels=3, out_channels=3, ngf=16, flip_features=True):
    """Parameter count from the architecture: outermost k3/s1 level + log2(R) k4/s2 levels."""
    flipped = 2 * ngf if flip_features else ngf
    n = in_channels * ngf * 9 + ngf  # outermost conv (bias)
    n += (flipped + ngf) * out_channels * 9 + out_channels  # outermost transposed conv (bias)
    # (input channels, inner channels, outer channels) of each stride-2 level, outermost first
    levels = [(flipped, 2 * ngf, ngf), (2 * ngf, 4 * ngf, 2 * ngf), (4 * ngf, 8 * ngf, 4 * ngf)]
    levels += [(8 * ngf, 8 * ngf, 8 * ngf)] * (int(math.log2(resolution)) - 3)
    for i, (cin, inner, outer) in enumerate(levels):
        innermost = i == len(levels) - 1
        n += cin * inner * 16 + (0 if innermost else 2 * inner)  # down conv (no bias) + BN
        n += (inner if innermost else 2 * inner) * outer * 16 + 2 * outer  # up conv (no bias) + BN
    return n


@pytest.fixture(scope="module")
def fan128():
    return FAN(resolution=128).eval()


@pytest.mark.parametrize("cls, channels", [(FAN, 3), (DRN, 1)])
@pytest.mark.parametrize("resolution", [128, 256])
def test_output_shapes(cls, channels, resolution):
    model = cls(resolution=resolution).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, resolution, resolution))
    assert y.shape == (1, channels, resolution, resolution) and y.dtype == torch.float32


@pytest.mark.parametrize("resolution, levels", [(128, 8), (256, 9)])
def test_levels_reach_a_1x1_bottleneck(resolution, levels):
    model = FAN(resolution=resolution).eval()
    blocks = model.blocks
    assert len(blocks) == levels == model.num_levels
    assert blocks[0].outermost and blocks[-1].innermost
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == levels - 5
    seen = {}
    innermost_down = blocks[-1].model[1]
    assert isinstance(innermost_down, torch.nn.Conv2d)
    handle = innermost_down.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    with torch.no_grad():
        model(torch.rand(1, 3, resolution, resolution))
    handle.remove()
    assert seen["shape"] == (1, 128, 1, 1)


def test_first_and_last_convolutions_keep_resolution():
    outer = FAN(resolution=128).blocks[0].model
    first, last = outer[0], outer[-1]
    assert first.kernel_size == last.kernel_size == (3, 3)
    assert first.stride == last.stride == (1, 1)
    assert first.out_channels == 16 and isinstance(outer[1], FlipConcat)


@pytest.mark.parametrize("resolution", [128, 256])
@pytest.mark.parametrize("flip", [True, False])
def test_parameter_count(resolution, flip):
    fan = FAN(resolution=resolution, flip_features=flip)
    drn = DRN(resolution=resolution, flip_features=flip)
    assert sum(p.numel() for p in fan.parameters()) == unet_params(resolution, flip_features=flip)
    assert sum(p.numel() for p in drn.parameters()) == unet_params(resolution, out_channels=1, flip_features=flip)


def test_flip_features_are_mirror_symmetric(fan128):
    """cat([f, flip(f)]) mirrored equals itself with the two channel halves swapped; with a
    mirror-symmetric first kernel, a mirrored input gives exactly that mirrored map."""
    outer = fan128.blocks[0].model
    captured = []
    handle = outer[1].register_forward_hook(lambda m, i, o: captured.append(o))
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        fan128(x)
        g = captured[-1]
        half = g.shape[1] // 2
        assert half == 16
        torch.testing.assert_close(g.flip(-1), torch.cat([g[:, half:], g[:, :half]], 1), rtol=0, atol=0)

        conv = outer[0]
        saved = conv.weight.clone()
        conv.weight.copy_((saved + saved.flip(-1)) / 2)
        fan128(x)
        g = captured[-1]
        fan128(x.flip(-1))
        g_mirrored = captured[-1]
        conv.weight.copy_(saved)
    handle.remove()
    torch.testing.assert_close(g_mirrored, g.flip(-1))


def test_without_flip_features():
    model = FAN(resolution=128, flip_features=False)
    assert not any(isinstance(m, FlipConcat) for m in model.modules())
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 128, 128)).shape == (1, 3, 128, 128)


def test_output_ranges():
    x = torch.rand(2, 3, 128, 128) * 4 - 2  # out-of-range inputs push the outputs to saturation
    fan = FAN(resolution=128)
    drn = DRN(resolution=128, max_rate=0.002)
    for m in (fan, drn):  # large weights so the pre-activations are far from 0
        for p in m.parameters():
            p.data.mul_(20)
    with torch.no_grad():
        albedo = fan.eval()(x)
        rate = drn.eval()(x)
    assert albedo.min() >= 0 and albedo.max() <= 1
    assert rate.abs().max() <= 0.002
    assert rate.abs().max() > 0.0019  # saturated, so the bound is the configured one


def test_defaults():
    assert FAN().config == {"resolution": 256, "in_channels": 3, "out_channels": 3, "ngf": 16,
                            "flip_features": True, "output_activation": "sigmoid", "max_rate": 0.004}
    assert DRN().config == {"resolution": 256, "in_channels": 3, "out_channels": 1, "ngf": 16,
                            "flip_features": True, "output_activation": "tanh", "max_rate": 0.004}


@pytest.mark.parametrize("cls", [FAN, DRN])
def test_gradients_flow(cls, check_backward):
    check_backward(cls(resolution=128), torch.rand(2, 3, 128, 128))


@pytest.mark.parametrize("cls", [FAN, DRN, UNet])
def test_save_load_roundtrip(cls, roundtrip):
    model = cls(resolution=128, ngf=8)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 128, 128))
    roundtrip(model, torch.rand(1, 3, 128, 128))


def test_unet_loads_a_fan_but_drn_does_not(tmp_path):
    from facelift.errors import WeightsError

    FAN(resolution=128, ngf=4).save_pretrained(tmp_path)
    assert type(UNet.from_pretrained(tmp_path)) is UNet
    with pytest.raises(WeightsError, match="FAN"):
        DRN.from_pretrained(tmp_path)


@pytest.mark.parametrize("config, field", [
    ({"resolution": 512}, "resolution"), ({"ngf": 0}, "ngf"), ({"in_channels": 2.0}, "in_channels"),
    ({"out_channels": -1}, "out_channels"), ({"flip_features": 1}, "flip_features"),
    ({"output_activation": "relu"}, "output_activation"), ({"max_rate": 0}, "max_rate"),
    ({"max_rate": float("nan")}, "max_rate"), ({"max_rate": "0.004"}, "max_rate"),
    ({"max_rate": 1e9}, "max_rate"), ({"max_rate": 4.0}, "max_rate"),
])
def test_bad_config(config, field):
    with pytest.raises(ValueError, match=field):
        FAN(**config)


def test_max_rate_is_bounded_in_metres(tmp_path):
    """A displacement bound of more than 5 cm along the normal is a unit mistake (millimetres
    written as metres), refused with the unit named; the shipped bundle's 4 mm still loads."""
    import json
    import shutil

    from facelift.errors import WeightsError
    from facelift.models.unet import MAX_RATE_LIMIT
    from facelift.pipeline import CHECKPOINTS_DIR

    assert DRN(resolution=128, max_rate=MAX_RATE_LIMIT).max_rate == MAX_RATE_LIMIT
    with pytest.raises(ValueError, match=r"max_rate .*metres.*at most 0\.05 m"):
        DRN(resolution=128, max_rate=0.0501)
    shipped = DRN.from_pretrained(CHECKPOINTS_DIR / "drn")
    assert shipped.max_rate == 0.004
    bad = tmp_path / "drn"
    shutil.copytree(CHECKPOINTS_DIR / "drn", bad)
    config = json.loads((bad / "config.json").read_text())
    config["max_rate"] = 1e9
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"config\.json.*max_rate.*metres"):
        DRN.from_pretrained(bad)


def test_bad_input(fan128):
    with pytest.raises(ValueError, match="128, 128"):
        fan128(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="shape"):
        fan128(torch.rand(1, 4, 128, 128))
    with pytest.raises(TypeError):
        fan128(torch.zeros(1, 3, 128, 128, dtype=torch.int64))


def test_block_structure_follows_pix2pix():
    block = FAN(resolution=128).blocks[2]
    assert isinstance(block, UnetSkipConnectionBlock) and not (block.outermost or block.innermost)
    kinds = [type(m).__name__ for m in block.model]
    assert kinds == ["LeakyReLU", "Conv2d", "BatchNorm2d", "UnetSkipConnectionBlock", "ReLU", "ConvTranspose2d",
                     "BatchNorm2d"]


# ---- FAN v2 options ----------------------------------------------------------------------------
V2 = dict(in_channels=8, inputs=["delit", "visibility", "confidence", "albedo_pca"], depth=7, upsample="resize",
          output_activation="gated")


def test_v2_options_round_trip_and_leave_v1_configs_as_they_were(tmp_path):
    from facelift.models import FAN

    v1 = FAN(resolution=128)
    assert set(v1.config) == {"resolution", "in_channels", "out_channels", "ngf", "flip_features",
                              "output_activation", "max_rate"}
    net = FAN(resolution=128, **V2)
    net.save_pretrained(tmp_path / "v2")
    back = FAN.from_pretrained(tmp_path / "v2")
    assert back.config == net.config and back.inputs == tuple(V2["inputs"])
    x = torch.rand(2, 8, 128, 128)
    net.eval()
    assert torch.allclose(back(x), net(x), atol=1e-6)


def test_gated_output_passes_the_first_input_through_where_the_gate_opens():
    from facelift.models import FAN

    net = FAN(resolution=128, **V2).eval()
    head = net.model.model[-1]  # the outermost up-convolution: channels 0-2 completion, 3 the gate
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 30.0]))
    x = torch.rand(1, 8, 128, 128)
    assert torch.allclose(net(x), x[:, :3], atol=1e-6)
    assert torch.allclose(net.gate(x), torch.ones(1, 1, 128, 128))
    y, gate = net(x, return_gate=True)
    assert torch.equal(y, net(x)) and torch.equal(gate, net.gate(x))
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -30.0]))
    assert torch.allclose(net(x), torch.full((1, 3, 128, 128), 0.5), atol=1e-6)  # the completion, sigmoid(0)
    assert torch.allclose(net.completion(x), net(x), atol=1e-6)  # gate shut: the output is the completion


def test_gate_by_caps_the_gate_with_an_input_map(tmp_path):
    from facelift.models import FAN

    net = FAN(resolution=128, **V2, gate_by="confidence").eval()
    head = net.model.model[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 30.0]))  # the network's own gate wide open
    x = torch.rand(1, 8, 128, 128)
    x[:, 4] = 0.0  # confidence (channel 4: delit 0-2, visibility 3) zero on the left half ...
    x[:, 4, :, 64:] = 1.0  # ... one on the right
    y, gate = net(x, return_gate=True)
    assert torch.allclose(gate[0, 0, :, :64], torch.zeros(128, 64)) and torch.allclose(gate[0, 0, :, 64:],
                                                                                      torch.ones(128, 64))
    assert torch.allclose(y[..., 64:], x[:, :3, :, 64:], atol=1e-6)  # trusted: the de-lit texture
    assert torch.allclose(y[..., :64], torch.full((1, 3, 128, 64), 0.5), atol=1e-6)  # untrusted: the completion
    net.save_pretrained(tmp_path / "g")
    assert FAN.from_pretrained(tmp_path / "g").config["gate_by"] == "confidence"
    for bad in ("delit", "nope"):
        with pytest.raises(ValueError, match="gate_by"):
            FAN(resolution=128, **V2, gate_by=bad)
    with pytest.raises(ValueError, match="gate_by"):
        FAN(resolution=128, gate_by="visibility")  # not gated


def test_gate_power_raises_the_cap(tmp_path):
    from facelift.models import FAN

    net = FAN(resolution=128, **V2, gate_by="confidence", gate_power=2.0).eval()
    head = net.model.model[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 30.0]))  # the network's own gate wide open
    x = torch.rand(1, 8, 128, 128, requires_grad=True)
    with torch.no_grad():
        x[:, 4] = 0.5  # a half-trusted texel: the cap is 0.5 ** 2
    y, gate = net(x, return_gate=True)
    assert torch.allclose(gate, torch.full_like(gate, 0.25), atol=1e-6)
    assert torch.allclose(y, 0.25 * x[:, :3] + 0.75 * 0.5, atol=1e-6)
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, 4].abs().sum() > 0  # the cap passes gradient
    net.save_pretrained(tmp_path / "p")
    assert FAN.from_pretrained(tmp_path / "p").config["gate_power"] == 2.0
    assert "gate_power" not in FAN(resolution=128, **V2, gate_by="confidence").config  # v2.6 configs stay as they were
    with pytest.raises(ValueError, match="gate_by"):
        FAN(resolution=128, **V2, gate_power=2.0)  # nothing to raise
    with pytest.raises(ValueError, match="gate_power"):
        FAN(resolution=128, **V2, gate_by="confidence", gate_power=0.0)


def test_prefill_hides_untrusted_texels_from_the_layers_not_from_the_pass_through(tmp_path):
    from facelift.models import FAN

    stiff = {**V2, "inputs": ["delit", "visibility", "confidence", "albedo_stiff"]}
    net = FAN(resolution=128, **stiff, gate_by="confidence", prefill_from="albedo_stiff",
              prefill_power=2.0).eval()
    x = torch.rand(2, 8, 128, 128, requires_grad=True)
    with torch.no_grad():
        x[:, 4] = 0.5
    seen = net.prefilled(x)
    assert torch.allclose(seen[:, :3], 0.25 * x[:, :3] + 0.75 * x[:, 5:8], atol=1e-6)  # m ** 2 of the photo
    assert torch.equal(seen[:, 3:], x[:, 3:])
    # where the confidence is 0 the layers cannot tell what the photo showed: two different
    # occluders give the same output there (the gate is capped to 0, so no pass-through either)
    a, b = x.detach().clone(), x.detach().clone()
    a[:, 4], b[:, 4] = 0.0, 0.0
    b[:, :3] = torch.rand(2, 3, 128, 128)
    assert torch.allclose(net(a), net(b), atol=1e-6)
    # where it is 1 nothing changes against the same weights without the prefill
    plain = FAN(resolution=128, **stiff, gate_by="confidence").eval()
    plain.load_state_dict(net.state_dict())
    a[:, 4] = 1.0
    assert torch.allclose(net(a), plain(a), atol=1e-6)
    net(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, 5:8].abs().sum() > 0  # the fill is part of the graph
    y, gate = net(x, return_gate=True)  # output = g * the unfilled photo + (1 - g) * the completion
    assert torch.allclose(y, gate * x[:, :3] + (1 - gate) * net.completion(x), atol=1e-5)
    with pytest.raises(ValueError, match="completion"):
        DRN(resolution=128).completion(torch.rand(1, 3, 128, 128))
    net.save_pretrained(tmp_path / "f")
    cfg = FAN.from_pretrained(tmp_path / "f").config
    assert (cfg["prefill_from"], cfg["prefill_power"]) == ("albedo_stiff", 2.0)
    assert "prefill_from" not in plain.config  # v2.6 configs stay as they were
    with pytest.raises(ValueError, match="gate_by"):
        FAN(resolution=128, **stiff, prefill_from="albedo_stiff")
    for bad in ("delit", "confidence", "albedo_pca", "nope"):  # the first input, one channel, not an input
        with pytest.raises(ValueError, match="prefill_from"):
            FAN(resolution=128, **stiff, gate_by="confidence", prefill_from=bad)
    with pytest.raises(ValueError, match="prefill_from"):
        FAN(resolution=128, **stiff, gate_by="confidence", prefill_power=2.0)
    with pytest.raises(ValueError, match="prefill_power"):
        FAN(resolution=128, **stiff, gate_by="confidence", prefill_from="albedo_stiff", prefill_power=0)
    with pytest.raises(TypeError):
        DRN(resolution=128, prefill_from="albedo_stiff")  # fixed for the DRN


def test_only_a_gated_network_returns_a_gate():
    from facelift.models import FAN

    with pytest.raises(ValueError, match="gated"):
        FAN(resolution=128)(torch.rand(1, 3, 128, 128), return_gate=True)


def test_capped_depth_runs_the_same_weights_at_both_resolutions():
    from facelift.models import FAN

    small, large = FAN(resolution=128, **V2), FAN(resolution=256, **V2)
    large.load_state_dict(small.state_dict())
    assert large(torch.rand(1, 8, 256, 256)).shape == (1, 3, 256, 256)
    with pytest.raises(RuntimeError):
        FAN(resolution=256, in_channels=8, inputs=V2["inputs"]).load_state_dict(small.state_dict())


def test_resize_upsampling_has_no_checkerboard_on_a_flat_input():
    """Transposed stride-2 convolutions give periodic artefacts; resize-convolutions do not: on a
    constant input, the output's rows and columns differ only smoothly (no period-2 pattern)."""
    from facelift.models import FAN

    torch.manual_seed(0)
    net = FAN(resolution=128, **V2).eval()
    y = net(torch.full((1, 8, 128, 128), 0.5))[0].mean(0)[16:-16, 16:-16]
    second = (y[2:] - 2 * y[1:-1] + y[:-2]).abs().mean() + (y[:, 2:] - 2 * y[:, 1:-1] + y[:, :-2]).abs().mean()
    first = (y[1:] - y[:-1]).abs().mean() + (y[:, 1:] - y[:, :-1]).abs().mean()
    assert second <= 1.5 * first + 1e-6  # an alternating pattern would make the second difference twice the first


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=8, inputs=["delit", "nope"]), "inputs"),
    (dict(in_channels=7, inputs=V2["inputs"]), "channels"),
    (dict(in_channels=8, inputs=V2["inputs"], depth=3), "depth"),
    (dict(in_channels=8, inputs=V2["inputs"], depth=9), "depth"),
    (dict(in_channels=8, inputs=V2["inputs"], upsample="nearest"), "upsample"),
    (dict(in_channels=5, inputs=["visibility", "confidence", "albedo_pca"], output_activation="gated"), "gated"),
    (dict(in_channels=3, inputs="texture"), "inputs"),
])
def test_v2_options_are_validated(kwargs, match):
    from facelift.models import FAN

    with pytest.raises(ValueError, match=match):
        FAN(resolution=128, **kwargs)


def test_v2_gradients_reach_every_input_channel():
    from facelift.models import FAN

    net = FAN(resolution=128, **V2)
    x = torch.rand(2, 8, 128, 128, requires_grad=True)
    net(x).mean().backward()
    assert (x.grad.abs().flatten(2).sum(-1) > 0).all()


def test_drn_output_pyramid_smooths_the_pre_activation_and_round_trips(tmp_path):
    from facelift.models import DRN
    from facelift.models.unet import PyramidSum

    impulse = torch.zeros(1, 1, 33, 33)
    impulse[..., 16, 16] = 1.0
    summed = PyramidSum([0, 2])(impulse)
    assert summed.sum() == pytest.approx(2.0, abs=1e-4)  # identity + a normalised blur
    assert summed[0, 0, 16, 16] > 1.0 and summed[0, 0, 16, 20] > 0.0
    drn = DRN(resolution=128, ngf=4, output_pyramid=[0, 1, 2, 4])
    assert drn.config["output_pyramid"] == [0.0, 1.0, 2.0, 4.0]
    x = torch.rand(1, 3, 128, 128, requires_grad=True)
    y = drn(x)
    assert y.abs().max() <= drn.max_rate
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    drn.save_pretrained(tmp_path / "drn")
    again = DRN.from_pretrained(tmp_path / "drn")
    assert set(again.state_dict()) == set(drn.state_dict())  # the kernels are not weights
    drn.eval(), again.eval()
    assert torch.allclose(again(x.detach()), drn(x.detach()))
    assert "output_pyramid" not in DRN(resolution=128, ngf=4).config  # the paper's DRN's config is unchanged


@pytest.mark.parametrize("bad", ["1,2", [], [0, 1, 2, 3, 4, 5, 6], [-1], [17], [True]])
def test_drn_output_pyramid_rejects_bad_sigmas(bad):
    from facelift.models import DRN

    with pytest.raises(ValueError, match="output_pyramid"):
        DRN(resolution=128, ngf=4, output_pyramid=bad)


def test_drn_detail_gate_round_trips_and_is_validated(tmp_path):
    from facelift.models import DRN

    assert "detail_gate" not in DRN(resolution=128, ngf=4).config and DRN(resolution=128, ngf=4).detail_gate is None
    drn = DRN(resolution=128, ngf=4, detail_gate=0.5)
    drn.save_pretrained(tmp_path / "drn")
    again = DRN.from_pretrained(tmp_path / "drn")
    assert again.config == drn.config and again.detail_gate == 0.5
    for bad in (0, -0.2, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="detail_gate"):
            DRN(resolution=128, ngf=4, detail_gate=bad)


def test_with_config_keeps_the_weights_and_checks_the_change():
    import torch

    from facelift.models import DRN

    drn = DRN(resolution=128, ngf=4, cavity=0.25).eval()
    gated = drn.with_config(detail_gate=0.3)
    assert not gated.training and drn.with_config().training is False and DRN(resolution=128, ngf=4).with_config().training
    assert gated.config == {**drn.config, "detail_gate": 0.3} and gated is not drn and drn.detail_gate is None
    for a, b in zip(drn.state_dict().values(), gated.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(drn(x), gated(x))  # the gate is the pipeline's, not the network's
    with pytest.raises(ValueError, match="detail_gate"):
        drn.with_config(detail_gate=2.0)


def test_output_pyramid_needs_a_displacement():
    with pytest.raises(ValueError, match="output_pyramid"):
        UNet(resolution=128, ngf=4, output_activation="sigmoid", output_pyramid=[0, 1])


def test_drn_cavity_round_trips_and_is_validated(tmp_path):
    from facelift.models import DRN

    assert "cavity" not in DRN(resolution=128, ngf=4).config  # the paper's DRN's config is unchanged
    drn = DRN(resolution=128, ngf=4, cavity=0.25, cavity_sigma=4)
    assert drn.config["cavity"] == 0.25 and drn.config["cavity_sigma"] == 4.0
    drn.save_pretrained(tmp_path / "drn")
    again = DRN.from_pretrained(tmp_path / "drn")
    assert again.config == drn.config and again.cavity == 0.25
    for bad in (-0.1, 2.5, float("nan"), True, "0.2"):
        with pytest.raises(ValueError, match="cavity"):
            DRN(resolution=128, ngf=4, cavity=bad)
    for bad in (0, -1, 17, float("inf")):
        with pytest.raises(ValueError, match="cavity_sigma"):
            DRN(resolution=128, ngf=4, cavity=0.2, cavity_sigma=bad)


@pytest.mark.parametrize("kwargs", [
    {},  # the paper's: transposed convolutions, sigmoid
    {"in_channels": 5, "inputs": ["delit", "visibility", "confidence"], "output_activation": "gated",
     "gate_by": "confidence", "upsample": "resize", "depth": 5},
])
def test_fold_batchnorm_keeps_the_outputs_and_the_original(kwargs):
    from facelift.models import fold_batchnorm

    torch.manual_seed(0)
    net = FAN(resolution=128, ngf=4, **kwargs)
    for m in net.modules():  # statistics and affine terms away from their initial values
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert net.training and not folded.training
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = torch.rand(2, net.in_channels, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net.eval()(x), atol=1e-5, rtol=1e-4)
    # the folded copy still has gradients for its input
    x.requires_grad_(True)
    folded(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

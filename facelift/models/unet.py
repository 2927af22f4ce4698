"""FAN and DRN (paper sections 3.3, 3.4): the pix2pix U-Net with the paper's changes.

Changes to pix2pix's ``UnetGenerator``: ``ngf`` 16; the outermost convolution and
transposed convolution use kernel 3, stride 1 (so the output keeps every input pixel);
enough levels that the innermost map is 1x1 (log2(R) stride-2 levels below the
outermost one: 9 levels in all for R = 256, 8 for R = 128); and "flip features": the
outermost convolution's output ``f`` is forwarded as ``cat([f, f.flip(-1)])``, so every
deeper layer sees each texel together with its mirror texel (UV maps are left-right
symmetric, docs/ARCHITECTURE.md).

FAN v2 options (all off by default, so the paper's network is the default): ``inputs``
names the UV maps the pipeline stacks as the input (``UV_INPUTS``; the paper feeds the
texture alone), ``depth`` caps the number of stride-2 levels (the same weights then run at
128 and 256), ``upsample="resize"`` replaces the stride-2 transposed convolutions by
bilinear upsampling + a 3x3 convolution (no checkerboard), and ``output_activation="gated"``
predicts a completion c and a gate g and returns ``g * x[:, :3] + (1 - g) * c``: the first
input maps (the de-lit texture) pass through where the photo can be trusted; ``gate_by``
names a one-channel input (the skin confidence) m that caps the gate, g * m ** ``gate_power``;
``prefill_from`` names a three-channel input f (the stiff PCA albedo) that the network sees in place
of the first input where m is low: x0 * m ** ``prefill_power`` + f * (1 - m ** ``prefill_power``), so
the completion cannot copy what the confidence flags (the pass-through keeps the unfilled x0).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facelift.models._base import FaceLiftModel, check_input, init_pix2pix_weights
from facelift.models._config import (
    Arg,
    check_bool,
    check_positive_float,
    check_positive_int,
    choice,
    derive_args,
    optional,
)
from facelift.models._registry import register_model

RESOLUTIONS = (128, 256)
MAX_CAVITY = 2.0  # DRN cavity, per mm
ACTIVATIONS = ("sigmoid", "tanh", "gated")
UPSAMPLING = ("transpose", "resize")
#: The UV maps a U-Net can be fed, with their channel counts (stacked in the order named).
UV_INPUTS = {"texture": 3, "delit": 3, "visibility": 1, "confidence": 1, "albedo_pca": 3,
             "shading": 3, "albedo_fan": 3, "albedo_stiff": 3}
# shading: the low-frequency SH irradiance; albedo_fan: the FAN's output; albedo_stiff: the robust
# stage's stiff (few-component, strongly regularised) PCA albedo, which occluders move least


def check_pyramid(name: str, sigmas) -> tuple:
    if sigmas is None:
        return ()
    if (isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, (list, tuple)) or not 1 <= len(sigmas) <= 6
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 16 for v in sigmas)):
        raise ValueError(f"{name} must be a list of 1 to 6 Gaussian sigmas in [0, 16] texels, got {sigmas!r}")
    return tuple(float(v) for v in sigmas)


class PyramidSum(nn.Module):
    """y -> sum over sigmas of y blurred by a Gaussian of that sigma (0: y itself), before the
    tanh of a displacement: a fixed preconditioner. E_grad reaches r_d through a high-pass chain
    (displacement -> normals -> shading -> image gradient), so a network predicting r_d directly
    gets almost no gradient for anything wider than a texel or two; predicting the pyramid's
    input, it does."""

    def __init__(self, sigmas):
        super().__init__()
        self.sigmas = tuple(sigmas)
        for k, s in enumerate(self.sigmas):
            if s > 0:
                r = max(1, int(3 * s + 0.5))
                t = torch.arange(-r, r + 1, dtype=torch.float32)
                g = torch.exp(-0.5 * (t / s) ** 2)
                self.register_buffer(f"kernel{k}", g / g.sum(), persistent=False)

    def forward(self, y: Tensor) -> Tensor:
        out = torch.zeros_like(y)
        c = y.shape[1]
        for k, s in enumerate(self.sigmas):
            if s == 0:
                out = out + y
                continue
            g = getattr(self, f"kernel{k}").to(y.dtype)
            r = (len(g) - 1) // 2
            z = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
            out = out + F.conv2d(F.pad(z, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                                 groups=c)
        return out


def check_inputs(name: str, inputs) -> tuple:
    """Distinct UV map names (None: the paper's texture alone); their channels are checked
    against in_channels by the U-Net."""
    if inputs is None:
        return ("texture",)
    if isinstance(inputs, str) or not isinstance(inputs, (list, tuple)) or not inputs:
        raise ValueError(f"{name} must be a non-empty list of UV map names from {sorted(UV_INPUTS)}, got {inputs!r}")
    unknown = [n for n in inputs if n not in UV_INPUTS]
    if unknown or len(set(inputs)) != len(inputs):
        raise ValueError(f"{name} must be distinct names from {sorted(UV_INPUTS)}, got {list(inputs)!r}")
    return tuple(inputs)


def stack_inputs(inputs, maps: dict) -> Tensor:
    """Concatenate the (B, C, R, R) tensors ``maps[name]`` for ``name in inputs`` along channels."""
    missing = [n for n in inputs if n not in maps]
    if missing:
        raise KeyError(f"U-Net inputs {missing} not provided")
    return torch.cat([maps[n] for n in inputs], 1)
#: Largest accepted ``max_rate``, metres. Skin detail (wrinkles, pores) is millimetres deep
#: (the shipped DRN uses 0.004 = 4 mm); 5 cm along the normal would be a different face, so
#: a larger value in a config is a mistake (e.g. millimetres written as metres), not a setting.
MAX_RATE_LIMIT = 0.05


def check_max_rate(name: str, value) -> float:
    value = check_positive_float(name, value)
    if value > MAX_RATE_LIMIT:
        raise ValueError(f"{name} is the largest displacement along the normal in metres (0.004 = 4 mm); "
                         f"it must be at most {MAX_RATE_LIMIT} m ({MAX_RATE_LIMIT * 100:g} cm); got {value!r}")
    return value


def check_cavity(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_CAVITY:
        raise ValueError(f"{name} is the darkening per mm of depth below the surroundings, from 0 to "
                         f"{MAX_CAVITY}; got {value!r}")
    return float(value)


def check_detail_gate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name} is the FAN gate above which the details are kept whole, in (0, 1]; got {value!r}")
    return float(value)


def check_cavity_sigma(name: str, value) -> float:
    value = check_positive_float(name, value)
    if value > 16:
        raise ValueError(f"{name} must be at most 16 texels, got {value}")
    return value


class FlipConcat(nn.Module):
    """(B, C, H, W) -> (B, 2C, H, W): the features followed by their horizontal mirror."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, x.flip(-1)], dim=1)


def _up(in_nc: int, out_nc: int, mode: str) -> list[nn.Module]:
    """x2 upsampling: pix2pix's transposed convolution, or bilinear resize + 3x3 convolution."""
    if mode == "transpose":
        return [nn.ConvTranspose2d(in_nc, out_nc, kernel_size=4, stride=2, padding=1, bias=False)]
    return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_nc, out_nc, kernel_size=3, padding=1, bias=False)]


class UnetSkipConnectionBlock(nn.Module):
    """pix2pix's block: ``cat([x, up(sub(down(x)))])``, or ``up(sub(down(x)))`` outermost.

    The outermost block here uses kernel 3 / stride 1 and may insert :class:`FlipConcat`
    after its convolution; it has no output activation (the U-Net applies it).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 use_dropout: bool = False, flip_features: bool = False, upsample: str = "transpose"):
        super().__init__()
        self.outermost = outermost
        self.innermost = innermost
        input_nc = outer_nc if input_nc is None else input_nc
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=3, stride=1, padding=1)
            sub_out = 2 * inner_nc if flip_features else inner_nc
            # the submodule returns cat([its input, its output]); its own output has inner_nc channels
            upconv = nn.ConvTranspose2d(sub_out + inner_nc, outer_nc, kernel_size=3, stride=1, padding=1)
            down = [downconv, FlipConcat()] if flip_features else [downconv]
            layers = [*down, submodule, uprelu, upconv]
        elif innermost:
            downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, uprelu, *_up(inner_nc, outer_nc, upsample), nn.BatchNorm2d(outer_nc)]
        else:
            downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, nn.BatchNorm2d(inner_nc), submodule, uprelu,
                      *_up(inner_nc * 2, outer_nc, upsample), nn.BatchNorm2d(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        # as in pix2pix, the leading LeakyReLU is in place, so the skip carries LeakyReLU(x)
        return torch.cat([x, self.model(x)], 1)


class UNet(FaceLiftModel):
    """Image-to-image U-Net on UV maps: (B, in_channels, R, R) in [0, 1] ->
    (B, out_channels, R, R).

    Inputs are mapped to [-1, 1] inside. ``output_activation``: ``"sigmoid"`` gives values
    in [0, 1] (FAN's albedo); ``"tanh"`` gives ``max_rate * tanh(x)`` in
    [-max_rate, max_rate] (DRN's displacement rate, metres; ``max_rate`` at most
    ``MAX_RATE_LIMIT`` = 0.05). Dropout (p = 0.5) sits in
    the ngf*8 -> ngf*8 blocks other than the innermost one, as in pix2pix; weights are
    initialised N(0, 0.02) (BatchNorm scales N(1, 0.02)) as in pix2pix.
    """

    config_args: ClassVar[tuple[Arg, ...]] = (
        Arg("resolution", 256, choice(RESOLUTIONS)),
        Arg("in_channels", 3, check_positive_int),
        Arg("out_channels", 3, check_positive_int),
        Arg("ngf", 16, check_positive_int),
        Arg("flip_features", True, check_bool),
        Arg("output_activation", "sigmoid", choice(ACTIVATIONS)),
        Arg("max_rate", 0.004, check_max_rate),
        # FAN v2 options, written only when not the paper's, so the configs of v1 networks stay as they were
        Arg("inputs", None, check_inputs, saved="changed"),
        Arg("depth", None, optional(check_positive_int), saved="changed"),
        Arg("upsample", "transpose", choice(UPSAMPLING), saved="changed"),
        Arg("output_pyramid", None, check_pyramid, saved="changed"),
        Arg("gate_by", None, saved="changed"),
        Arg("gate_power", 1.0, check_positive_float, saved="changed"),
        Arg("prefill_from", None, saved="changed"),
        Arg("prefill_power", 1.0, check_positive_float, saved="changed"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__()
        self._register_config(*args, **kwargs)
        resolution, in_channels, out_channels = self.resolution, self.in_channels, self.out_channels
        output_activation, inputs, depth = self.output_activation, self.inputs, self.depth
        channels = sum(UV_INPUTS[n] for n in inputs)
        if channels != in_channels:
            raise ValueError(f"inputs {list(inputs)} hold {channels} channels but in_channels is {in_channels}")
        full_depth = int(math.log2(resolution))
        if depth is not None and not 4 <= depth <= full_depth:
            raise ValueError(f"depth must be from 4 to log2(resolution) = {full_depth}, got {depth}")
        if output_activation == "gated" and (in_channels < out_channels or UV_INPUTS[inputs[0]] != out_channels):
            raise ValueError(f"a gated output passes the first input map through: it needs "
                             f"{out_channels} channels, but {inputs[0]!r} has {UV_INPUTS[inputs[0]]}")
        if self.output_pyramid and output_activation != "tanh":
            raise ValueError("output_pyramid applies to a displacement (output_activation='tanh')")
        gate_by = self.gate_by
        self.gate_channel = None  # the input channel (e.g. the skin confidence) that caps the gate
        if gate_by is not None:
            if output_activation != "gated" or gate_by not in inputs or UV_INPUTS[gate_by] != 1:
                raise ValueError(f"gate_by names a one-channel input of a gated network, got {gate_by!r}")
            self.gate_channel = sum(UV_INPUTS[n] for n in inputs[:inputs.index(gate_by)])
        elif self.gate_power != 1.0:
            raise ValueError("gate_power raises the gate_by map that caps the gate: it needs gate_by")
        prefill_from = self.prefill_from
        self.prefill_channel = None  # the input channel of the map shown in place of untrusted texels
        if prefill_from is not None:
            if gate_by is None:
                raise ValueError("prefill_from fills in the first input where the gate_by map is low: it needs gate_by")
            if prefill_from not in inputs[1:] or UV_INPUTS[prefill_from] != out_channels:
                raise ValueError(f"prefill_from names a {out_channels}-channel input other than the first, "
                                 f"got {prefill_from!r}")
            self.prefill_channel = sum(UV_INPUTS[n] for n in inputs[:inputs.index(prefill_from)])
        elif self.prefill_power != 1.0:
            raise ValueError("prefill_power raises the gate_by map that weighs the prefill: it needs prefill_from")
        self.num_levels = (full_depth if depth is None else depth) + 1

        # Innermost first. Below the outermost level there are `depth` (default log2(R)) stride-2
        # levels: ngf -> 2ngf -> 4ngf -> 8ngf, then 8ngf -> 8ngf (down to 1x1 by default).
        ngf, flip_features = self.ngf, self.flip_features
        up: dict[str, Any] = dict(upsample=self.upsample)
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **up)
        for _ in range(self.num_levels - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=True, **up)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, **up)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, **up)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, input_nc=ngf * 2 if flip_features else ngf, submodule=block,
                                        **up)
        head = out_channels + 1 if output_activation == "gated" else out_channels
        self.model = UnetSkipConnectionBlock(head, ngf, input_nc=in_channels, submodule=block,
                                             outermost=True, flip_features=flip_features)
        init_pix2pix_weights(self)
        self.pyramid = PyramidSum(self.output_pyramid) if self.output_pyramid else None

    @property
    def blocks(self) -> list[UnetSkipConnectionBlock]:
        """The skip-connection blocks, outermost first (``blocks[-1]`` is the innermost)."""
        return [m for m in self.modules() if isinstance(m, UnetSkipConnectionBlock)]

    def forward(self, x: Tensor, return_gate: bool = False):
        """The output; with `return_gate` (gated networks only), (output, gate g (B, 1, R, R))."""
        check_input(x, self.in_channels, self.resolution, f"{type(self).__name__} input")
        if return_gate and self.output_activation != "gated":
            raise ValueError("only a network with output_activation='gated' has a gate")
        if self.output_activation == "gated":
            completion, gate = self._gated(x)
            out = gate * x[:, :self.out_channels] + (1 - gate) * completion
            return (out, gate) if return_gate else out
        y = self.model(x * 2 - 1)  # prefill_from needs gate_by, which only a gated network has
        if self.output_activation == "sigmoid":
            return torch.sigmoid(y)
        if self.pyramid is not None:
            y = self.pyramid(y)
        return self.max_rate * torch.tanh(y)

    def _trust(self, x: Tensor) -> Tensor:
        """The `gate_by` map (B, 1, R, R), clamped to [0, 1]."""
        return x[:, self.gate_channel:self.gate_channel + 1].clamp(0, 1)

    def _gated(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """A gated network's completion c and gate g (capped by `gate_by` ** `gate_power`)."""
        y = self.model(self.prefilled(x) * 2 - 1)
        gate = torch.sigmoid(y[:, self.out_channels:])
        if self.gate_channel is not None:
            gate = gate * self._trust(x) ** self.gate_power
        return torch.sigmoid(y[:, :self.out_channels]), gate

    def prefilled(self, x: Tensor) -> Tensor:
        """The input the layers see: `x`, with the first map faded into `prefill_from`'s where the
        `gate_by` map is below 1 (unchanged without `prefill_from`)."""
        if self.prefill_channel is None:
            return x
        c, f = self.out_channels, self.prefill_channel
        m = self._trust(x) ** self.prefill_power
        return torch.cat([x[:, :c] * m + x[:, f:f + c] * (1 - m), x[:, c:]], 1)

    def completion(self, x: Tensor) -> Tensor:
        """The completion c (B, out_channels, R, R) of a gated network: what it returns where the
        gate is shut (the output is g * x[:, :out_channels] + (1 - g) * c)."""
        if self.output_activation != "gated":
            raise ValueError("only a network with output_activation='gated' has a completion")
        check_input(x, self.in_channels, self.resolution, f"{type(self).__name__} input")
        return self._gated(x)[0]

    def gate(self, x: Tensor) -> Tensor:
        """The gate g (B, 1, R, R) of a gated network: 1 where the first input passes through."""
        if self.output_activation != "gated":
            raise ValueError("only a network with output_activation='gated' has a gate")
        return self.forward(x, return_gate=True)[1]


@register_model("fan")
class FAN(UNet):
    """Facial Albedo Network: texture map (B, 3, R, R) in [0, 1] -> albedo (B, 3, R, R) in [0, 1]."""

    config_args = derive_args(UNet.config_args, fixed=("output_pyramid",))


@register_model("drn")
class DRN(UNet):
    """Detail Recovering Network: texture map (B, 3, R, R) in [0, 1] -> displacement rate
    r_d (B, 1, R, R) in metres, within [-max_rate, max_rate]; displacement = r_d * normal.

    ``cavity`` (per mm; 0, the paper, by default) is part of the shading model the network was
    trained with: a texel d mm below its surroundings (a Gaussian of ``cavity_sigma`` texels)
    receives 1 - cavity x d of the light, as in a crease (`facelift.mesh.detail_occlusion`).

    ``detail_gate`` (None, the paper, by default) couples the details to a gated FAN: where its gate
    g (the share of the photo it passes through) is below ``detail_gate`` the pipeline keeps
    g / detail_gate of the displacement, so over what the FAN completes instead of copying (glasses,
    a hand, hair) the relief is not carved into the surface either."""

    config_args = derive_args(
        UNet.config_args, out_channels=1, output_activation="tanh",
        fixed=("gate_by", "gate_power", "prefill_from", "prefill_power"),
        add=(Arg("cavity", 0.0, check_cavity, saved="changed"),  # the details' shading model, written only when
             Arg("cavity_sigma", 4.0, check_cavity_sigma, saved="cavity"),  # used: v1 configs stay as they were
             Arg("detail_gate", None, optional(check_detail_gate), saved="changed")))

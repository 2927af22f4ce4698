"""FAN and DRN (paper sections 3.3, 3.4): the pix2pix U-Net with the paper's changes.

Changes to pix2pix's ``UnetGenerator``: ``ngf`` 16; the outermost convolution and
transposed convolution use kernel 3, stride 1 (so the output keeps every input pixel);
enough levels that the innermost map is 1x1 (log2(R) stride-2 levels below the
outermost one: 9 levels in all for R = 256, 8 for R = 128); and "flip features": the
outermost convolution's output ``f`` is forwarded as ``cat([f, f.flip(-1)])``, so every
deeper layer sees each texel together with its mirror texel (UV maps are left-right
symmetric, docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from facelift.models._base import (
    FaceLiftModel,
    check_bool,
    check_choice,
    check_input,
    check_positive_float,
    check_positive_int,
    init_pix2pix_weights,
)
from facelift.models._registry import register_model

RESOLUTIONS = (128, 256)
ACTIVATIONS = ("sigmoid", "tanh")
#: Largest accepted ``max_rate``, metres. Skin detail (wrinkles, pores) is millimetres deep
#: (the shipped DRN uses 0.004 = 4 mm); 5 cm along the normal would be a different face, so
#: a larger value in a config is a mistake (e.g. millimetres written as metres), not a setting.
MAX_RATE_LIMIT = 0.05


def check_max_rate(value) -> float:
    value = check_positive_float("max_rate", value)
    if value > MAX_RATE_LIMIT:
        raise ValueError(f"max_rate is the largest displacement along the normal in metres (0.004 = 4 mm); "
                         f"it must be at most {MAX_RATE_LIMIT} m ({MAX_RATE_LIMIT * 100:g} cm); got {value!r}")
    return value


class FlipConcat(nn.Module):
    """(B, C, H, W) -> (B, 2C, H, W): the features followed by their horizontal mirror."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, x.flip(-1)], dim=1)


class UnetSkipConnectionBlock(nn.Module):
    """pix2pix's block: ``cat([x, up(sub(down(x)))])``, or ``up(sub(down(x)))`` outermost.

    The outermost block here uses kernel 3 / stride 1 and may insert :class:`FlipConcat`
    after its convolution; it has no output activation (the U-Net applies it).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 use_dropout: bool = False, flip_features: bool = False):
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
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, uprelu, upconv, nn.BatchNorm2d(outer_nc)]
        else:
            downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, nn.BatchNorm2d(inner_nc), submodule, uprelu, upconv,
                      nn.BatchNorm2d(outer_nc)]
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

    def __init__(self, resolution: int = 256, in_channels: int = 3, out_channels: int = 3, ngf: int = 16,
                 flip_features: bool = True, output_activation: str = "sigmoid", max_rate: float = 0.004):
        super().__init__()
        resolution = check_choice("resolution", resolution, RESOLUTIONS)
        in_channels = check_positive_int("in_channels", in_channels)
        out_channels = check_positive_int("out_channels", out_channels)
        ngf = check_positive_int("ngf", ngf)
        flip_features = check_bool("flip_features", flip_features)
        output_activation = check_choice("output_activation", output_activation, ACTIVATIONS)
        max_rate = check_max_rate(max_rate)
        self._register_config(resolution=resolution, in_channels=in_channels, out_channels=out_channels, ngf=ngf,
                              flip_features=flip_features, output_activation=output_activation,
                              max_rate=max_rate)
        self.resolution = resolution
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.output_activation = output_activation
        self.max_rate = max_rate
        self.num_levels = int(math.log2(resolution)) + 1

        # Innermost first. Below the outermost level there are log2(R) stride-2 levels:
        # ngf -> 2ngf -> 4ngf -> 8ngf, then 8ngf -> 8ngf down to 1x1.
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(self.num_levels - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=True)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, input_nc=ngf * 2 if flip_features else ngf, submodule=block)
        self.model = UnetSkipConnectionBlock(out_channels, ngf, input_nc=in_channels, submodule=block,
                                             outermost=True, flip_features=flip_features)
        init_pix2pix_weights(self)

    @property
    def blocks(self) -> list[UnetSkipConnectionBlock]:
        """The skip-connection blocks, outermost first (``blocks[-1]`` is the innermost)."""
        return [m for m in self.modules() if isinstance(m, UnetSkipConnectionBlock)]

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, self.resolution, f"{type(self).__name__} input")
        y = self.model(x * 2 - 1)
        if self.output_activation == "sigmoid":
            return torch.sigmoid(y)
        return self.max_rate * torch.tanh(y)


@register_model("fan")
class FAN(UNet):
    """Facial Albedo Network: texture map (B, 3, R, R) in [0, 1] -> albedo (B, 3, R, R) in [0, 1]."""

    def __init__(self, resolution: int = 256, in_channels: int = 3, out_channels: int = 3, ngf: int = 16,
                 flip_features: bool = True, output_activation: str = "sigmoid", max_rate: float = 0.004):
        super().__init__(resolution, in_channels, out_channels, ngf, flip_features, output_activation, max_rate)


@register_model("drn")
class DRN(UNet):
    """Detail Recovering Network: texture map (B, 3, R, R) in [0, 1] -> displacement rate
    r_d (B, 1, R, R) in metres, within [-max_rate, max_rate]; displacement = r_d * normal."""

    def __init__(self, resolution: int = 256, in_channels: int = 3, out_channels: int = 1, ngf: int = 16,
                 flip_features: bool = True, output_activation: str = "tanh", max_rate: float = 0.004):
        super().__init__(resolution, in_channels, out_channels, ngf, flip_features, output_activation, max_rate)

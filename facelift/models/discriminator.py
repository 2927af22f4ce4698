"""PatchGAN discriminator for FAN's adversarial loss (paper eq. 5-6): pix2pix's NLayerDiscriminator."""

from __future__ import annotations

from torch import Tensor, nn

from facelift.models._base import FaceLiftModel, check_input, init_pix2pix_weights
from facelift.models._config import Arg, check_positive_int
from facelift.models._registry import register_model


@register_model("patchgan")
class PatchGAN(FaceLiftModel):
    """(B, in_channels, H, W) albedo maps in [0, 1] (mapped to [-1, 1] inside) -> real/fake
    logits (B, 1, H', W'), one per overlapping patch (70x70 receptive field for
    n_layers = 3): H' = H / 2**n_layers - 2, e.g. 30 for 256, 14 for 128.
    Kernel 4, BatchNorm, LeakyReLU(0.2); weights initialised N(0, 0.02) as in pix2pix.
    """

    config_args = (
        Arg("in_channels", 3, check_positive_int),
        Arg("ndf", 64, check_positive_int),
        Arg("n_layers", 3, check_positive_int),
    )

    def __init__(self, *args, **kwargs):
        super().__init__()
        self._register_config(*args, **kwargs)
        in_channels, ndf, n_layers = self.in_channels, self.ndf, self.n_layers

        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_pix2pix_weights(self)

    @property
    def min_input_size(self) -> int:
        """The smallest H, W that still gives a 1x1 logit map."""
        return 3 * 2**self.n_layers

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.in_channels, None, "PatchGAN input")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f"PatchGAN input must be at least {self.min_input_size}x{self.min_input_size} "
                             f"for n_layers={self.n_layers}; got {tuple(x.shape[-2:])}")
        return self.model(x * 2 - 1)

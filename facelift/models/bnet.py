"""B-Net (paper section 3.2): texture map -> PCA albedo coefficients + SH lighting."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from facelift.models._base import FaceLiftModel, check_input
from facelift.models._config import Arg, check_positive_int, choice
from facelift.models._registry import register_model
from facelift.models.resnet import ResNet

N_SH = 9
RESOLUTIONS = (128, 256)
# gamma_00 for which the irradiance A_0 * gamma_00 * Y_00 = pi * gamma_00 / (2 sqrt(pi)) is 1.
AMBIENT_WHITE_GAMMA0 = 2.0 / math.sqrt(math.pi)


class BNetOutput(NamedTuple):
    albedo_coefficients: Tensor  # (B, n_albedo)
    sh: Tensor  # (B, 3, 9): RGB x band, ordered as docs/ARCHITECTURE.md


@register_model("bnet")
class BNet(ResNet, FaceLiftModel):
    """ResNet-18 (BasicBlock expansion 2, 1024-d pooled feature) + Linear(1024, n_albedo + 27).

    Input: texture maps (B, in_channels, R, R) in [0, 1], R = ``resolution``; mapped to
    [-1, 1] inside. Output: :class:`BNetOutput` ``(albedo_coefficients, sh)``. At
    initialisation the SH output is close to white ambient light of irradiance 1 and the
    albedo coefficients close to 0 (the PCA mean albedo).
    State-dict keys are torchvision's (conv1, bn1, layer1.0.conv1, ..., fc).
    """

    config_args = (
        Arg("resolution", 256, choice(RESOLUTIONS)),
        Arg("n_albedo", 199, check_positive_int),
        Arg("in_channels", 3, check_positive_int),
    )

    def __init__(self, *args, **kwargs):
        # checked before the ResNet is built from them (plain attributes may be set before nn.Module's init)
        config = self._register_config(*args, **kwargs)
        resolution, n_albedo = config["resolution"], config["n_albedo"]
        super().__init__((2, 2, 2, 2), in_channels=config["in_channels"], expansion=2,
                         pool_size=resolution // 32, num_outputs=n_albedo + 3 * N_SH)
        nn.init.normal_(self.fc.weight, std=1e-4)
        with torch.no_grad():
            bias = torch.zeros(n_albedo + 3 * N_SH)
            bias[n_albedo::N_SH] = AMBIENT_WHITE_GAMMA0  # gamma[c, 0] for c = R, G, B
            self.fc.bias.copy_(bias)

    def forward(self, texture: Tensor) -> BNetOutput:
        check_input(texture, self.in_channels, self.resolution, "B-Net input")
        out = super().forward(texture * 2 - 1)
        return BNetOutput(out[:, : self.n_albedo], out[:, self.n_albedo:].unflatten(1, (3, N_SH)))

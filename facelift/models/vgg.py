"""Frozen ImageNet VGG-16 features for the perceptual loss (paper eq. 8), and LPIPS.

Module layout and state-dict keys are torchvision's ``vgg16().features``
(``features.{i}.weight/bias`` for i = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), so
torchvision's own weights load as they are once converted to safetensors
(``python training/convert_vgg16.py vgg16-397923af.pth vgg16.safetensors``; only safetensors
are read here). Networks built directly have random weights: use ``from_safetensors`` (or
``from_pretrained``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from facelift.errors import WeightsError
from facelift.models._base import FaceLiftModel, check_input, load_safetensors
from facelift.models._config import Arg, choice

_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# ReLU name -> index in `features`
RELU_LAYERS = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}
PERCEPTUAL_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
# x_normalised = (x - mean) / std for inputs x in [0, 1]
_INPUT_NORMS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # LPIPS: x in [-1, 1], then (x - shift) / scale; rewritten for x in [0, 1]
    "lpips": ((0.5 - 0.030 / 2, 0.5 - 0.088 / 2, 0.5 - 0.188 / 2), (0.458 / 2, 0.448 / 2, 0.450 / 2)),
}
LPIPS_CHANNELS = (64, 128, 256, 512, 512)

V = TypeVar("V", bound="_FrozenVGG")
CONVERTER = "python training/convert_vgg16.py IN.pth OUT.safetensors"


def _is_safetensors(path: str) -> bool:
    """Whether the file starts like safetensors: an 8-byte little-endian header length, then
    a JSON header ('{') that fits in the file. (A torch.save file starts with 'PK' or a pickle.)"""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for v in _CFG:
        if isinstance(v, str):  # "M"
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU()]
            channels = v
    return nn.Sequential(*layers)


class _FrozenVGG(FaceLiftModel):
    """VGG-16 ``features`` with a fixed input normalisation; parameters do not require grad
    (gradients still flow to the input)."""

    def _build(self, input_norm: str) -> None:
        self.features = _vgg16_features()
        mean, std = _INPUT_NORMS[input_norm]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def _extract(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        check_input(x, 3, None, f"{type(self).__name__} input")
        taps = {RELU_LAYERS[name]: name for name in layers}
        out: dict[str, Tensor] = {}
        h = (x - self.mean) / self.std
        for i, module in enumerate(self.features[: max(taps) + 1]):
            h = module(h)
            if i in taps:
                out[taps[i]] = h
        return out

    @classmethod
    def from_safetensors(cls: type[V], path: str | os.PathLike, **config: Any) -> V:
        """Build with ``config`` and load the weights from a safetensors file holding
        torchvision's ``features.*`` keys (other keys in the file are ignored). A missing
        file, a file that is not safetensors (e.g. torchvision's .pth: convert it with
        training/convert_vgg16.py) or missing or wrongly shaped tensors raise WeightsError."""
        path = os.fspath(path)
        if os.path.isfile(path) and not _is_safetensors(path):
            kind = " (a PyTorch .pth/pickle?)" if path.endswith((".pth", ".pt", ".bin", ".tar")) else ""
            raise WeightsError(f"{path} is not a safetensors file{kind}; VGG-16 weights are read from "
                               f"safetensors only. Convert torchvision's checkpoint with: {CONVERTER}")
        model = cls(**config)
        load_safetensors(model, path, allow_unexpected=True)
        model._freeze()
        return model


def _check_layers(name: str, layers: Any) -> list[str]:
    """Known ReLU layer names, returned once each in network order."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"{name} must be a non-empty list of names from {', '.join(RELU_LAYERS)}; got {layers!r}")
    unknown = [n for n in layers if n not in RELU_LAYERS]
    if unknown:
        raise ValueError(f"{name}: unknown VGG-16 layer(s) {unknown}; choose from {', '.join(RELU_LAYERS)}")
    return sorted(set(layers), key=RELU_LAYERS.__getitem__)


class VGG16Features(_FrozenVGG):
    """Images (B, 3, H, W) RGB in [0, 1] -> {layer name: ReLU output (B, C_j, H_j, W_j)}
    for ``layers`` (any of ``RELU_LAYERS``, returned in network order).

    ``input_norm``: ``"imagenet"`` (mean/std normalisation, the perceptual loss) or
    ``"lpips"`` (LPIPS's shift/scale).
    """

    config_args = (
        Arg("layers", PERCEPTUAL_LAYERS, _check_layers),
        Arg("input_norm", "imagenet", choice(tuple(_INPUT_NORMS))),
    )

    def __init__(self, *args, **kwargs):
        super().__init__()
        self._register_config(*args, **kwargs)
        self._build(self.input_norm)
        self._freeze()

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self._extract(images, self.layers)


class LPIPS(_FrozenVGG):
    """LPIPS v0.1 (VGG) distance between images (B, 3, H, W) RGB in [0, 1] -> (B,).

    Weights: ``features.*`` plus the linear heads ``lpips.lin{0..4}.weight`` (1, C, 1, 1).
    """

    config_args = ()

    def __init__(self):
        super().__init__()
        self._register_config()
        self._build("lpips")
        self.lpips = nn.ModuleDict(
            {f"lin{i}": nn.Conv2d(c, 1, kernel_size=1, bias=False) for i, c in enumerate(LPIPS_CHANNELS)}
        )
        self._freeze()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape:
            raise ValueError(f"LPIPS inputs must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
        fa = self._extract(a, PERCEPTUAL_LAYERS)
        fb = self._extract(b, PERCEPTUAL_LAYERS)
        total = a.new_zeros(a.shape[0])
        for lin, name in zip(self.lpips.values(), PERCEPTUAL_LAYERS):
            diff = (_unit_normalise(fa[name]) - _unit_normalise(fb[name])) ** 2
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total


def _unit_normalise(f: Tensor, eps: float = 1e-10) -> Tensor:
    return f / (torch.sqrt((f**2).sum(dim=1, keepdim=True)) + eps)


def perceptual_loss(feats_a: Mapping[str, Tensor] | Sequence[Tensor],
                    feats_b: Mapping[str, Tensor] | Sequence[Tensor], squared: bool = False) -> Tensor:
    """Paper eq. 8: mean over layers j of ||F_j(a) - F_j(b)||_2 / (H_j W_j C_j).

    The L2 norm is taken per sample over the whole feature map; the result is also
    averaged over the batch (a scalar). ``squared=True`` squares the norm (the perceptual
    loss of Johnson et al. that eq. 8 cites: the mean squared feature difference), whose
    gradient does not vanish with the feature count the way the unsquared one does.
    """
    if isinstance(feats_a, Mapping) and isinstance(feats_b, Mapping):
        if list(feats_a) != list(feats_b):
            raise ValueError(f"feature sets differ: {list(feats_a)} vs {list(feats_b)}")
    a = list(feats_a.values()) if isinstance(feats_a, Mapping) else list(feats_a)
    b = list(feats_b.values()) if isinstance(feats_b, Mapping) else list(feats_b)
    if not a or len(a) != len(b):
        raise ValueError(f"need the same, non-zero number of feature maps; got {len(a)} and {len(b)}")
    terms = []
    for fa, fb in zip(a, b):
        if fa.ndim != 4 or fa.shape != fb.shape:
            raise ValueError(f"feature maps must be (B, C, H, W) of equal shape; got {tuple(fa.shape)} "
                             f"and {tuple(fb.shape)}")
        if squared:
            terms.append((fa - fb).pow(2).flatten(1).mean(1))
        else:
            terms.append(torch.linalg.vector_norm((fa - fb).flatten(1), dim=1) / fa[0].numel())
    return torch.stack(terms).mean()

"""The training losses of paper eqs. 4-9, on batched CHW tensors.

Conventions: ``texture`` (B, 3, R, R) in [0, 1], ``visibility``/``mask`` (B, 1, R, R) in
{0, 1}, ``normal`` (B, 3, R, R) unit camera-space normals, ``sh`` (B, 3, 9).

E_pixel (eq. 4/7) is the L1 difference *summed* over visible texels (mean over RGB) per
image and averaged over the batch, with the sum expressed on the paper's 256x256 grid
(multiplied by (256 / R)^2) so the paper's loss weights keep their balance at any
resolution: with a per-texel mean, w_pixel = 0.005 would make the pixel term vanish
against the adversarial term, and w_a = 1 would swamp the B-Net's data term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..geometry.sh import irradiance

PAPER_GRID = 256


def shading_map(normal: Tensor, sh: Tensor) -> Tensor:
    """SH irradiance (eq. 3) as a map: normals (B, 3, R, R), sh (B, 3, 9) -> (B, 3, R, R)."""
    n = normal.permute(0, 2, 3, 1)
    return irradiance(n, sh).permute(0, 3, 1, 2)


def render_texture(albedo: Tensor, normal: Tensor, sh: Tensor) -> Tensor:
    """I_syn(UV) = albedo * shading (eq. 3)."""
    return albedo * shading_map(normal, sh)


def pixel_loss(texture: Tensor, synth: Tensor, visibility: Tensor) -> Tensor:
    """E_pixel = |I_t - I_syn| summed over visible texels (256-grid units), mean over batch."""
    scale = (PAPER_GRID / texture.shape[-1]) ** 2
    diff = (texture - synth).abs().mean(1, keepdim=True) * visibility
    return diff.flatten(1).sum(1).mean() * scale


def masked_l1(texture: Tensor, synth: Tensor, visibility: Tensor) -> Tensor:
    """Mean |I_t - I_syn| per visible texel and channel (the validation metric), per image (B,)."""
    diff = (texture - synth).abs().mean(1, keepdim=True) * visibility
    return diff.flatten(1).sum(1) / visibility.flatten(1).sum(1).clamp_min(1)


class PCAAlbedo(torch.nn.Module):
    """Differentiable eq. 2: coefficients (B, K) -> albedo maps (B, 3, R, R) at ``resolution``."""

    def __init__(self, mean, basis, resolution: int):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32)[None])
        self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float32))
        self.resolution = int(resolution)

    @property
    def n_components(self) -> int:
        return self.basis.shape[0]

    def forward(self, coefficients: Tensor) -> Tensor:
        k = coefficients.shape[1]
        a = self.mean + torch.einsum("bk,kchw->bchw", coefficients, self.basis[:k])
        if a.shape[-1] != self.resolution:
            a = F.interpolate(a, size=(self.resolution,) * 2, mode="bilinear", align_corners=False)
        return a.clamp(0.0, 1.0)


def bnet_loss(texture, visibility, normal, coefficients, sh, pca: PCAAlbedo, w_a: float = 1.0,
              w_light: float = 0.0, brightness: float | None = None):
    """Eq. 4: E_pixel + w_a ||p_a||^2, plus ``w_light`` times the white-light prior
    (``geometry.sh.light_prior``; not in the paper, 0 disables it). Returns (total, parts, albedo)."""
    from ..geometry.sh import light_prior

    albedo = pca(coefficients)
    synth = render_texture(albedo, normal, sh)
    e_pixel = pixel_loss(texture, synth, visibility)
    e_a = coefficients.pow(2).sum(1).mean()
    total = e_pixel + w_a * e_a
    parts = {"pixel": e_pixel.detach(), "prior": e_a.detach()}
    if w_light > 0:
        e_light = light_prior(sh, brightness, normal.flatten(2).transpose(1, 2),
                              visibility.flatten(2)[:, 0].clamp_min(1e-6)).mean()
        total = total + w_light * e_light
        parts["light"] = e_light.detach()
    return total, parts, albedo


def gan_loss(logits: Tensor, real: bool) -> Tensor:
    """Eq. 6 with logits: -log D(x) for real targets, -log(1 - D(x)) for fake ones."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def perceptual(vgg, texture: Tensor, synth: Tensor, resolution: int | None = None) -> Tensor:
    """Eq. 8 with frozen VGG-16 features (facelift.models.perceptual_loss)."""
    from ..models import perceptual_loss

    if resolution and resolution != texture.shape[-1]:
        size = (resolution, resolution)
        texture = F.interpolate(texture, size=size, mode="bilinear", align_corners=False, antialias=True)
        synth = F.interpolate(synth, size=size, mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        ft = vgg(texture)
    return perceptual_loss(ft, vgg(synth))


def load_vgg(path: str):
    """Frozen VGG-16 with ImageNet weights. Fails loudly (no random fallback)."""
    from pathlib import Path

    from ..errors import WeightsError
    from ..models import VGG16Features

    if not Path(path).is_file():
        raise WeightsError(f"VGG-16 weights for the perceptual loss not found at {path}; refusing to train "
                           "with random VGG features. Pass --set vgg=PATH (torchvision layout safetensors; "
                           "convert torchvision's vgg16-*.pth with training/convert_vgg16.py).")
    vgg = VGG16Features.from_safetensors(path)
    w = vgg.features[0].weight
    if not torch.isfinite(w).all() or float(w.std()) < 1e-3:
        raise WeightsError(f"{path} does not hold trained VGG-16 weights")
    return vgg


# ---- DRN (eq. 9) ------------------------------------------------------------------------
def finite_difference_normals(position: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Normals of a UV-grid surface (B, 3, R, R) by central differences, and where defined.

    Columns go with +u (model +X), rows with -v: n = d/du x d/dv faces +Z for the layout.
    """
    p = position
    du = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    dv = p[..., :-2, 1:-1] - p[..., 2:, 1:-1]
    n = torch.cross(du, dv, dim=1)
    n = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = F.pad(n, (1, 1, 1, 1))
    m = mask
    ok = m[..., 1:-1, 2:] * m[..., 1:-1, :-2] * m[..., :-2, 1:-1] * m[..., 2:, 1:-1] * m[..., 1:-1, 1:-1]
    return n, F.pad(ok, (1, 1, 1, 1))


def displaced_normals(normal: Tensor, position: Tensor, rate: Tensor, mask: Tensor) -> Tensor:
    """Normals after displacing by Delta d = r_d n: the base normal plus the change the
    displacement makes to the finite-difference normal of the position map (so the
    faceting of the coarse mesh cancels out)."""
    base, ok = finite_difference_normals(position, mask)
    moved, _ = finite_difference_normals(position + rate * normal, mask)
    n = normal + (moved - base) * ok
    return n / n.norm(dim=1, keepdim=True).clamp_min(1e-12) * mask


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def gradient_loss(texture: Tensor, synth: Tensor, visibility: Tensor) -> Tensor:
    """E_grad = |grad I_t - grad I_syn| over texel pairs that are both visible (mean)."""
    gx_t, gy_t = image_gradients(texture)
    gx_s, gy_s = image_gradients(synth)
    vx = visibility[..., :, 1:] * visibility[..., :, :-1]
    vy = visibility[..., 1:, :] * visibility[..., :-1, :]
    num = ((gx_t - gx_s).abs().mean(1, keepdim=True) * vx).sum() + ((gy_t - gy_s).abs().mean(1, keepdim=True)
                                                                      * vy).sum()
    return num / (vx.sum() + vy.sum()).clamp_min(1)


def smooth_loss(disp: Tensor, mask: Tensor) -> Tensor:
    """E_smooth: squared differences of Delta d between UV-grid 4-neighbours (our stand-in
    for the mesh's 1-ring), summed over neighbours, mean over texels."""
    dx = (disp[..., :, 1:] - disp[..., :, :-1]).pow(2).sum(1, keepdim=True) * mask[..., :, 1:] * mask[..., :, :-1]
    dy = (disp[..., 1:, :] - disp[..., :-1, :]).pow(2).sum(1, keepdim=True) * mask[..., 1:, :] * mask[..., :-1, :]
    # each pair counts for both of its texels
    return 2 * (dx.sum() + dy.sum()) / mask.sum().clamp_min(1)


def drn_loss(texture, visibility, normal, position, mask, rate, albedo, sh, w_grad=0.5, w_const=1.0,
             w_smooth=20.0, unit_scale=100.0, detail_loss: str = "grad"):
    """Eq. 9. ``rate`` (B, 1, R, R) r_d in metres; Delta d = r_d n. ``detail_loss="pixel"``
    replaces E_grad by the mean |I_t - I_syn| over visible texels (the paper's ablation)."""
    if detail_loss not in ("grad", "pixel"):
        raise ValueError(f"detail_loss must be 'grad' or 'pixel', got {detail_loss!r}")
    n2 = displaced_normals(normal, position, rate, mask)
    synth = render_texture(albedo, n2, sh)
    if detail_loss == "grad":
        e_grad = gradient_loss(texture, synth, visibility)
    else:
        e_grad = masked_l1(texture, synth, visibility).mean()
    disp = rate * normal * unit_scale
    e_const = (disp.norm(dim=1, keepdim=True) * mask).sum() / mask.sum().clamp_min(1)
    e_smooth = smooth_loss(disp, mask)
    total = w_grad * e_grad + w_const * e_const + w_smooth * e_smooth
    return total, {"grad": e_grad.detach(), "const": e_const.detach(), "smooth": e_smooth.detach()}, synth

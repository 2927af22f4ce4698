"""DRN v2: geometric details you can see (`--config training/configs/drn_v2.json`, `recipe="v2"`;
the paper's recipe stays the default of facelift.training.loop.train_drn).

What it changes against the paper's recipe:
- units: r_d enters E_const, E_smooth and E_flat in millimetres (`displacement_unit_scale`
  1000), so the weights read as "cost per mm of displacement" (the paper does not state its unit);
- input: the robust stage's maps (de-lit texture, its SH shading, texture, skin confidence,
  visibility) and the FAN's albedo, as the pipeline feeds them: with the de-lit texture and the
  albedo side by side, the shading the albedo does not explain is a local computation;
- E_grad only on texel pairs the photo shows as skin (visibility x the robust stage's skin
  confidence): hair, beards, glasses and occluders are not asked to become bumps; E_flat asks
  for r_d = 0 where the input is not skin;
- E_const on a blurred copy of r_d (`const_sigma` texels), and E_const and E_flat squared
  (`squared_regularisers`) in the shipped setting: they then hold the displacement's drift, not
  the details. As an L1 pull on r_d itself, E_const shrinks every detail to ~0.01 mm even at
  1/100 of the paper's weight, and so does an L1 E_flat (the model card's table);
- synthetic occluders in the input (facelift.training.occlusion), excluded from E_grad and kept
  flat by E_flat, so the DRN learns not to turn an occluder into geometry;
- the albedo of the DRN's render is blur(FAN) + albedo_detail x (FAN - blur(FAN)) from the
  frozen FAN v2 on the clean input: with albedo_detail < 1 part of the fine-scale shading the
  FAN keeps in its albedo must be explained by geometry;
- a fixed Gaussian-pyramid sum before the output's tanh (`output_pyramid`,
  facelift.models.unet.PyramidSum): E_grad's gradient reaches r_d through a high-pass chain, and
  without it the network only learns texel-scale noise, then unlearns it;
- a cavity term in the render (`cavity`, per mm below the surroundings, `cavity_sigma`
  texels; `cavity_shading`): a crease is darker than its surroundings because less light reaches
  it, which the SH shading of the normals does not model;
- a warm start (`prior_steps`): the DRN first regresses to `crease_prior`; trained on E_grad
  from the start, it shrinks its initial output and stays at ~0.01 mm (the model card's table);
- faces old enough to have wrinkles (UTKFace ages, `min_age` / `keep_younger`);
- each term's loss and gradient share on r_d, and the displacement's fine-scale standard
  deviation and 99th percentile in mm, are logged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import DRNConfig
from .fan_v2 import confidence_map, delit
from .losses import displaced_normals, image_gradients, shading_map, smooth_loss
from .occlusion import random_occluders

V2_INPUTS = ["delit", "albedo_fan", "shading", "texture", "confidence", "visibility"]
MM = 1000.0  # r_d is in metres


def gaussian_blur(x: Tensor, sigma: float, mask: Tensor | None = None) -> Tensor:
    """Separable Gaussian blur of (B, C, R, R) maps; with `mask`, normalised by the blurred
    mask, so texels outside it neither leak in nor darken the edge."""
    if sigma <= 0:
        return x
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]

    def blur(y):
        c = y.shape[1]
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    if mask is None:
        return blur(x)
    out = blur(torch.cat([x * mask, mask], 1))
    return out[:, :C] / out[:, C:].clamp_min(1e-6) * mask


def weighted_gradient_loss(texture: Tensor, synth: Tensor, weight: Tensor, eps: float = 0.0) -> Tensor:
    """E_grad on texel pairs weighted by the product of their weights (mean per weighted pair).
    `eps` > 0 replaces |x| by the Charbonnier sqrt(x^2 + eps^2) - eps: no kink at 0, so a residual
    the albedo already explains does not make every small displacement cost its full size."""
    def penalty(d):
        return (d.pow(2) + eps * eps).sqrt() - eps if eps > 0 else d.abs()

    gx_t, gy_t = image_gradients(texture)
    gx_s, gy_s = image_gradients(synth)
    wx = weight[..., :, 1:] * weight[..., :, :-1]
    wy = weight[..., 1:, :] * weight[..., :-1, :]
    num = (penalty(gx_t - gx_s).mean(1, keepdim=True) * wx).sum() + (penalty(gy_t - gy_s).mean(1, keepdim=True)
                                                                     * wy).sum()
    return num / (wx.sum() + wy.sum()).clamp_min(1e-6)


def detail_statistics(rate: Tensor, weight: Tensor, sigma: float = 3.0) -> dict[str, float]:
    """The displacement on weighted texels, in mm: fine-scale standard deviation (after removing
    a Gaussian-blurred copy, `sigma` texels) and the 99th percentile of |r_d|."""
    fine = rate - gaussian_blur(rate, sigma, (weight > 0.5).float())
    on = weight > 0.5
    if not bool(on.any()):
        return {"fine_std_mm": 0.0, "p99_mm": 0.0}
    return {"fine_std_mm": float(fine[on].std() * MM), "p99_mm": float(torch.quantile(rate[on].abs().float()
                                                                                    [:100_000], 0.99) * MM)}


def crease_prior(texture: Tensor, trust: Tensor, mm: float, sigma: float, fine_sigma: float = 0.0) -> Tensor:
    """A crease-from-darkness guess in mm ("dark is deep", as in Beeler et al. 2010's mesoscopic
    detail): `mm` x the high pass (Gaussian, `sigma` texels) of the log luminance on trusted
    skin, 0 elsewhere: darker than the surroundings = deeper. `fine_sigma` > 0 makes it a band
    pass (the log luminance blurred by that much first), so texel noise and JPEG blocks do not
    become bumps. The v3 recipe keeps the DRN near it throughout; v2 used it as a warm start."""
    on = (trust > 0.5).float()
    lum = torch.log(texture.mean(1, keepdim=True) + 0.02)
    fine = gaussian_blur(lum, fine_sigma, on) if fine_sigma > 0 else lum
    return mm * (fine - gaussian_blur(lum, sigma, on)) * on


def feature_mask(face_model_path: str, resolution: int) -> Tensor:
    """(1, 1, R, R) float: 1 on the eyes, brows and mouth (the evaluation's landmark regions,
    dilated as there). Their darkness is colour (brows, lashes, lips) or a hole (the open
    mouth), not depth: the v3 recipe's crease prior is 0 there and E_flat keeps them flat."""
    from ..evaluation.masks import DILATE, REGIONS, region_mask
    from ..face_model import FaceModel

    uv = FaceModel.load(face_model_path).uv
    out = np.zeros((resolution, resolution), bool)
    for name, idx in REGIONS.items():
        out |= region_mask(uv, idx, resolution, DILATE[name])
    return torch.from_numpy(out.astype(np.float32))[None, None]


def erode(mask: Tensor, texels: int) -> Tensor:
    """A (B, 1, R, R) 0/1 mask shrunk by `texels` (a square min-pool): the halo a thin
    occluder (a glasses frame, a strand) leaves in the skin confidence goes with it."""
    if texels <= 0:
        return mask
    return -F.max_pool2d(-mask, 2 * texels + 1, stride=1, padding=texels)


def cavity_shading(rate: Tensor, mask: Tensor, strength: float, sigma: float) -> Tensor:
    """1 + strength x (r_d - blur(r_d)) in mm, clamped to [0.5, 1.5]: texels below their
    surroundings (a crease) get less light, as ambient occlusion gives them. The SH shading of
    the normals alone has no such term, and under the mostly frontal light of portraits it
    explains a crease's dark line poorly: there E_grad's optimum for a network is r_d ~ 0."""
    relative = (rate - gaussian_blur(rate, sigma, mask)) * MM
    return (1 + strength * relative).clamp(0.5, 1.5)


def _run_at_own_resolution(net, x: Tensor) -> Tensor:
    """`net` on `x` resized to the resolution it was built for, and back (as the pipeline runs it)."""
    R, size = x.shape[-1], int(net.config["resolution"])
    if R == size:
        return net(x)
    y = net(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return F.interpolate(y, size=(R, R), mode="bilinear", align_corners=False)


def _penalty(x: Tensor, squared: bool) -> Tensor:
    return x.pow(2) if squared else x.abs()


def build_drn(cfg: DRNConfig):
    from ..models import DRN, UV_INPUTS

    inputs = cfg.inputs or V2_INPUTS
    drn = DRN(resolution=cfg.resolution, ngf=cfg.ngf, flip_features=cfg.flip_features,
              in_channels=sum(UV_INPUTS[n] for n in inputs), inputs=inputs, max_rate=cfg.max_rate, depth=cfg.depth,
              upsample=cfg.upsample, output_pyramid=cfg.output_pyramid, cavity=cfg.cavity, cavity_sigma=cfg.cavity_sigma)
    if cfg.init_from:
        drn.load_state_dict(DRN.from_pretrained(cfg.init_from).state_dict())
    elif cfg.output_init_scale != 1.0:
        # start near r_d = 0: with the default init the first steps only undo ~0.6 mm of noise
        last = [m for m in drn.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
        with torch.no_grad():
            last.weight.mul_(cfg.output_init_scale)
            if last.bias is not None:
                last.bias.zero_()
    return drn


def train_drn_v2(cfg: DRNConfig, resume: bool = True) -> Path:
    if cfg.detail_loss not in ("grad", "pixel"):
        raise ValueError(f"detail_loss must be 'grad' or 'pixel', got {cfg.detail_loss!r}")
    from ..models import FAN, stack_inputs
    from .data import age_selection
    from .run import Run, _optimizer, load_frozen, load_pca

    select = age_selection(cfg.min_age, cfg.keep_younger) if cfg.min_age else None
    run = Run(cfg, with_position=True, with_lighting="robust", select=select)
    dev = run.device
    fan = load_frozen(FAN, cfg.fan, dev)
    pca = load_pca(cfg.face_model, cfg.resolution).to(dev)
    features = feature_mask(cfg.face_model, cfg.resolution).to(dev) if cfg.prior_features_flat else 0.0
    drn = build_drn(cfg)
    opt = _optimizer(drn.parameters(), cfg.lr, cfg.betas)
    drn, opt = run.prepare(drn, opt)
    if resume:
        run.resume()
    drn_plain = run.acc.unwrap_model(drn)
    rng = np.random.default_rng(cfg.seed + 7919 * run.step + run.acc.process_index)
    drn.train()
    shares: dict[str, float] = {}
    stats: dict[str, float] = {}
    for batch in run.batches():
        if run.should_stop():
            break
        tex, vis, nrm, mask, pos = (batch[k] for k in ("texture", "visibility", "normal", "mask", "position"))
        with torch.no_grad():
            albedo_pca = pca(batch["coefficients_lf"]) * mask
            shading = shading_map(nrm, batch["sh_lf"])
            outlier_albedo = pca(batch["outlier_coefficients_lf"])
            outlier_shading = shading_map(nrm, batch["outlier_sh_lf"])
            clean = confidence_map(tex, outlier_albedo, outlier_shading, vis, batch["scale_lf"])
            alpha, colour = random_occluders(tex, vis, rng, cfg.occlusion_prob)
            tex_in = tex * (1 - alpha) + colour * alpha
            conf_in = confidence_map(tex_in, outlier_albedo, outlier_shading, vis, batch["scale_lf"])
            maps_in = {"texture": tex_in, "delit": delit(tex_in, shading, vis), "visibility": vis,
                       "confidence": conf_in, "albedo_pca": albedo_pca, "shading": shading,
                       "albedo_stiff": outlier_albedo * mask}
            # one FAN pass, on the input as the pipeline sees it; the render below only uses the
            # texels no synthetic occluder covers, where it matches the FAN on the clean texture
            maps_in["albedo_fan"] = albedo_fan = _run_at_own_resolution(fan, stack_inputs(fan.inputs, maps_in)) * mask
            albedo = albedo_fan
            if cfg.albedo_detail != 1.0:
                smooth = gaussian_blur(albedo_fan, cfg.albedo_blur, mask)
                albedo = smooth + cfg.albedo_detail * (albedo_fan - smooth)
            x = stack_inputs(drn_plain.inputs, maps_in)
            trust = vis * clean * (alpha < 0.05).float()  # skin the photo shows and no synthetic occluder covers
            untrusted = mask * (1 - vis * conf_in)
            prior_trust = vis * conf_in
            if cfg.prior_features_flat or cfg.prior_erode:
                prior_trust = erode((prior_trust > 0.5).float(), cfg.prior_erode) * (1 - features)
                untrusted = mask * (1 - prior_trust)
        rate = drn(x)
        n2 = displaced_normals(nrm, pos, rate, mask)
        synth = albedo * shading_map(n2, batch["sh_lf"])
        if cfg.cavity > 0:
            synth = synth * cavity_shading(rate, mask, cfg.cavity, cfg.cavity_sigma)
        d_mm = rate * cfg.displacement_unit_scale  # mm in the v2 config (1000)
        terms = {
            "grad": (weighted_gradient_loss(tex, synth, trust, cfg.grad_eps) if cfg.detail_loss == "grad" else  # "pixel": the ablation
                     ((tex - synth).abs().mean(1, keepdim=True) * trust).sum() / trust.sum().clamp_min(1e-6)),
            "const": (_penalty(gaussian_blur(d_mm, cfg.const_sigma, mask) if cfg.const_sigma > 0 else d_mm,
                               cfg.squared_regularisers) * mask).sum() / mask.sum().clamp_min(1),
            "smooth": smooth_loss(d_mm * nrm, mask),
            "flat": (_penalty(d_mm, cfg.squared_regularisers) * untrusted).sum() / untrusted.sum().clamp_min(1),
        }
        with torch.no_grad():
            target = crease_prior(tex_in, prior_trust, cfg.prior_mm, cfg.prior_sigma, cfg.prior_fine_sigma)
        terms["prior"] = (((d_mm - target) * mask).pow(2)).sum() / mask.sum().clamp_min(1)
        weights = {"grad": cfg.w_grad, "const": cfg.w_const, "smooth": cfg.w_smooth, "flat": cfg.w_flat,
                   "prior": cfg.w_prior if run.step < cfg.prior_steps else 0.0}
        weighted = {k: weights[k] * v for k, v in terms.items()}  # every key, every step: one CSV layout
        loss = sum(weighted.values())
        if cfg.grad_share_every and run.step % cfg.grad_share_every == 0:
            norms = {}
            for k, v in weighted.items():
                g = torch.autograd.grad(v, rate, retain_graph=True, allow_unused=True)[0] if weights[k] > 0 else None
                norms[k] = 0.0 if g is None else float(g.norm())
            total_norm = sum(norms.values()) or 1.0
            total = float(loss.detach()) or 1.0
            shares = {**{f"share_{k}": float(v.detach()) / total for k, v in weighted.items()},
                      **{f"gshare_{k}": n / total_norm for k, n in norms.items()}}
            stats = detail_statistics(rate.detach(), trust)
        opt.zero_grad(set_to_none=True)
        run.acc.backward(loss)
        opt.step()
        run.step += 1
        run.log({"loss": loss, **terms, "rate_abs_mm": (rate.detach().abs() * mask).sum() / mask.sum() * MM,
                 **stats, **shares})
        if run.step % cfg.checkpoint_every == 0:
            run.checkpoint()
    return run.finish(drn, {"recipe": "v2", "last_shares": shares, "last_detail_statistics": stats})

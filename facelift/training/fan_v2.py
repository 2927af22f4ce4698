"""FAN v2: the FAN trained to ignore occluders and lighting while keeping the photo's detail
(`--config training/configs/fan_v2.json`, `recipe="v2"`; the paper's recipe stays the default).

What it changes against the paper's recipe (facelift.training.loop.train_fan):
- input: the robust low-frequency stage's de-lit texture (texture / SH shading), the
  visibility, the skin confidence and the PCA albedo (`facelift.albedo.fit_low_frequency`,
  precomputed per sample by `training/fit_lighting.py --method robust`); a gated output
  (`output_activation="gated"`) passes the de-lit texture through where it is trusted;
- synthetic occluders pasted into the input (facelift.training.occlusion, a generator apart
  from the evaluation's); E_pixel and E_percep compare with the *clean* texture on the texels
  the original photo shows as skin (visibility x confidence), so under a synthetic occluder the
  network is asked for what the photo showed before it;
- low-frequency guidance elsewhere: the PatchGAN's real samples are the robust PCA albedos
  (at `disc_resolution`), plus an L1 term between the 8x8-pooled albedo and the PCA albedo
  on the texels the photo cannot be trusted for;
- relighting: half of each batch is run a second time with the texture relit by a random SH light
  (texture x S_new / S_est, in UV space) and the light re-estimated from the relit texture by
  weighted least squares, as the pipeline would; a consistency term asks for the same albedo;
- `refit`: the robust stage rerun per sample on the occluded and the relit input, so the
  confidence, stiff albedo and light the network is fed move with an occluder as at inference
  (a dark lens scores about 0.05 confidence against the clean photo's fit, 0.4 against a refit);
  `w_occluded`: E_pixel averaged over the occluded texels alone;
- every term is a per-texel mean; each term's share of the generator loss and of the gradient
  on the albedo is logged (`share_*`, `gshare_*`) every `grad_share_every` steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..albedo import fit_low_frequency, tukey_weight
from ..geometry.sh import estimate_sh
from .config import FANConfig
from .losses import gan_loss, load_vgg, shading_map
from .occlusion import eye_centres, feature_anchors, random_occluders, random_sh

V2_INPUTS = ["delit", "visibility", "confidence", "albedo_pca"]
SHADING_FLOOR = 0.05


def confidence_map(texture: Tensor, albedo: Tensor, shading: Tensor, visibility: Tensor, scale: Tensor) -> Tensor:
    """facelift.albedo.skin_confidence on (B, C, R, R) maps: (B, 1, R, R)."""
    r = (texture - albedo * shading).pow(2).mean(1, keepdim=True).sqrt()
    return tukey_weight(r, scale.view(-1, 1, 1, 1)) * visibility


def delit(texture: Tensor, shading: Tensor, visibility: Tensor) -> Tensor:
    """facelift.albedo.delit_texture on (B, 3, R, R) maps."""
    ok = (shading > SHADING_FLOOR).all(1, keepdim=True) & (visibility > 0.5)
    return (texture / shading.clamp_min(SHADING_FLOOR)).clamp(0, 1) * ok


def relit_texture(texture: Tensor, shading: Tensor, new_shading: Tensor, visibility: Tensor) -> Tensor:
    """texture x S_new / S on the visible, lit texels; S_new scaled to S's mean brightness there
    (as facelift.evaluation.runner.relight)."""
    ok = ((shading > SHADING_FLOOR).all(1, keepdim=True) & (visibility > 0.5)).float()
    n = ok.sum((2, 3), keepdim=True).clamp_min(1)
    gain = (shading * ok).sum((2, 3), keepdim=True) / (new_shading * ok).sum((2, 3), keepdim=True).clamp_min(1e-6)
    gain = torch.where(n > 1, gain, torch.ones_like(gain))
    ratio = torch.where(ok > 0, new_shading * gain / shading.clamp_min(SHADING_FLOOR), torch.ones_like(shading))
    return (texture * ratio).clamp(0, 1)


def reestimate_sh(texture: Tensor, albedo: Tensor, normal: Tensor, weight: Tensor, prior: dict,
                  stride: int = 4) -> Tensor:
    """Weighted least-squares SH (B, 3, 9) of `texture` given `albedo` (the pipeline's final light
    step), from every `stride`-th texel."""
    B = texture.shape[0]
    flat = lambda x: x.flatten(2).transpose(1, 2)[:, ::stride].double()  # noqa: E731
    w = weight.flatten(2)[:, 0, ::stride].double() + 1e-8
    return estimate_sh(flat(texture), flat(albedo), flat(normal), weights=w, **prior).float().view(B, 3, 9)


_FIT_FIELDS = ("coefficients", "sh", "outlier_coefficients", "outlier_sh", "confidence")
_worker_model = None


def _init_refit_worker(face_model_path: str) -> None:
    global _worker_model
    from ..face_model import FaceModel

    _worker_model = FaceModel.load(face_model_path)


def _fit_arrays(face_model, texture: np.ndarray, normal: np.ndarray, visible: np.ndarray, fit_args=None) -> dict | None:
    try:
        fit = fit_low_frequency(face_model, texture, normal, visible, **(fit_args or {}))
    except ValueError:
        return None
    return {k: np.asarray(getattr(fit, k)) for k in _FIT_FIELDS}


def _fit_in_worker(texture: np.ndarray, normal: np.ndarray, visible: np.ndarray, fit_args=None) -> dict | None:
    return _fit_arrays(_worker_model, texture, normal, visible, fit_args)


def refit_pool(face_model_path: str, workers: int):
    """Processes that run the robust stage for `refit_low_frequency` (`refit_workers`), each with
    one BLAS thread; spawned, so that they hold no CUDA state."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"  # read by the spawned workers; this process's libraries are loaded already
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_refit_worker, initargs=(face_model_path,))


def refit_low_frequency(face_model, texture: Tensor, normal: Tensor, visibility: Tensor, fallback: dict,
                        pool=None, fit_args: dict | None = None) -> dict:
    """`facelift.albedo.fit_low_frequency` on every sample of a batch, as the pipeline runs it on a
    photo: {"coefficients" (B, K), "sh" (B, 3, 9), "outlier_coefficients", "outlier_sh",
    "confidence" (B, 1, R, R)}. A sample the fit refuses (too little visible) keeps `fallback`'s
    entries (the same keys, e.g. the clean photo's precomputed fit). `pool` (`refit_pool`) runs
    the samples in parallel; `fit_args`: keyword arguments of the fit (e.g. robust_prior_weight)."""
    to_np = lambda t: t.detach().permute(0, 2, 3, 1).float().cpu().numpy()  # noqa: E731
    tex, nrm, vis = to_np(texture), to_np(normal), to_np(visibility)[..., 0] > 0.5
    out = {k: v.detach().clone() for k, v in fallback.items()}
    if pool is None:
        fits = [_fit_arrays(face_model, tex[b], nrm[b], vis[b], fit_args) for b in range(tex.shape[0])]
    else:
        fits = list(pool.map(_fit_in_worker, tex, nrm, vis, [fit_args] * tex.shape[0]))
    for b, fit in enumerate(fits):
        if fit is None:
            continue
        for key in _FIT_FIELDS:
            out[key][b] = torch.as_tensor(fit[key], dtype=out[key].dtype).view_as(out[key][b])
    return out


def _downsize(x: Tensor, size: int | None) -> Tensor:
    if not size or size == x.shape[-1]:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def build_fan(cfg: FANConfig):
    from ..models import FAN, UV_INPUTS

    inputs = cfg.inputs or V2_INPUTS
    fan = FAN(resolution=cfg.resolution, ngf=cfg.ngf, flip_features=cfg.flip_features,
              in_channels=sum(UV_INPUTS[n] for n in inputs), inputs=inputs, output_activation=cfg.output_activation or "gated",
              depth=cfg.depth, upsample=cfg.upsample, gate_by=cfg.gate_by,
              gate_power=cfg.gate_power, prefill_from=cfg.prefill_from, prefill_power=cfg.prefill_power)
    if cfg.init_from:
        src = FAN.from_pretrained(cfg.init_from)
        fan.load_state_dict(src.state_dict())
    return fan


def train_fan_v2(cfg: FANConfig, resume: bool = True) -> Path:
    from ..face_model import FaceModel
    from ..models import PatchGAN, perceptual_loss, stack_inputs
    from .run import Run, load_pca, prepare_gan

    if cfg.refit and not cfg.robust_confidence:
        raise ValueError("refit reruns the robust stage for its confidence: it needs robust_confidence=true")
    vgg = load_vgg(cfg.vgg)
    run = Run(cfg, with_lighting="robust")
    dev = run.device
    vgg = vgg.to(dev)
    face_model = FaceModel.load(cfg.face_model)
    prior = {}
    if face_model.light_brightness is not None:
        prior = {"colour_prior": 1.0, "brightness": face_model.light_brightness, "brightness_prior": 1.0}
    pca = load_pca(cfg.face_model, cfg.resolution).to(dev)
    fan, disc, opt_g, opt_d, disc_plain = prepare_gan(run, build_fan(cfg),
                                                      PatchGAN(ndf=cfg.ndf, n_layers=cfg.n_layers_d), cfg, resume)
    fan_plain = run.acc.unwrap_model(fan)
    pool = refit_pool(cfg.face_model, cfg.refit_workers) if cfg.refit and cfg.refit_workers > 0 else None
    rng = np.random.default_rng(cfg.seed + 7919 * run.step + run.acc.process_index)
    fit_args = {} if cfg.robust_prior_weight is None else {"robust_prior_weight": cfg.robust_prior_weight}
    anchors = feature_anchors(face_model, cfg.resolution) if cfg.occluder_anchor_prob > 0 else None
    eyes = eye_centres(face_model, cfg.resolution) if cfg.occluder_frames_prob > 0 else None

    def refitted_maps(texture, normal, visibility, inside, clean) -> dict:
        """The network's input maps from the robust stage rerun on `texture` (cfg.refit)."""
        fallback = {"coefficients": clean["coefficients_lf"], "sh": clean["sh_lf"],
                    "outlier_coefficients": clean["outlier_coefficients_lf"], "outlier_sh": clean["outlier_sh_lf"],
                    "confidence": confidence_map(texture, pca(clean["outlier_coefficients_lf"]),
                                                 shading_map(normal, clean["outlier_sh_lf"]), visibility,
                                                 clean["scale_lf"])}
        fit = refit_low_frequency(face_model, texture, normal, visibility, fallback, pool, fit_args)
        return {"delit": delit(texture, shading_map(normal, fit["sh"].to(dev)), visibility), "visibility": visibility,
                "confidence": fit["confidence"].to(dev), "albedo_pca": pca(fit["coefficients"].to(dev)) * inside,
                "albedo_stiff": pca(fit["outlier_coefficients"].to(dev)) * inside, "texture": texture}

    fan.train()
    disc.train()
    shares: dict[str, float] = {}
    for batch in run.batches():
        if run.should_stop():
            break
        tex, vis, nrm, mask = batch["texture"], batch["visibility"], batch["normal"], batch["mask"]
        B = tex.shape[0]
        with torch.no_grad():
            albedo_pca = pca(batch["coefficients_lf"]) * mask
            outlier_albedo = pca(batch["outlier_coefficients_lf"])
            shading = shading_map(nrm, batch["sh_lf"])
            outlier_shading = shading_map(nrm, batch["outlier_sh_lf"])
            scale = batch["scale_lf"]
            clean = confidence_map(tex, outlier_albedo, outlier_shading, vis, scale)
            if not cfg.robust_confidence:
                clean, outlier_albedo = torch.ones_like(clean), albedo_pca
            alpha, colour = random_occluders(tex, vis, rng, cfg.occlusion_prob, anchors=anchors,
                                             anchor_prob=cfg.occluder_anchor_prob,
                                             lock_prob=cfg.occluder_lock_prob,
                                             extra_lock_prob=cfg.occluder_extra_lock_prob,
                                             frames_prob=cfg.occluder_frames_prob, eyes=eyes)
            tex_in = tex * (1 - alpha) + colour * alpha
            # the low-frequency guide of the losses: the clean photo's stiff albedo when the network
            # takes that one
            guide = outlier_albedo * mask if "albedo_stiff" in fan_plain.inputs else albedo_pca
            if cfg.refit:
                maps = refitted_maps(tex_in, nrm, vis, mask, batch)
            else:
                conf_in = (confidence_map(tex_in, outlier_albedo, outlier_shading, vis, scale) if cfg.robust_confidence
                           else vis)
                maps = {"delit": delit(tex_in, shading, vis), "visibility": vis, "confidence": conf_in,
                        "albedo_pca": albedo_pca, "albedo_stiff": outlier_albedo * mask, "texture": tex_in}
            x = stack_inputs(fan_plain.inputs, maps)
            H = max(1, B // 2)  # the first half of the batch is run a second time, relit
            if cfg.relight:
                new_shading = shading_map(nrm[:H], random_sh(H, rng, dev))
                tex_relit = relit_texture(tex_in[:H], shading[:H], new_shading, vis[:H])
                if cfg.refit:
                    maps_r = refitted_maps(tex_relit, nrm[:H], vis[:H], mask[:H], {k: v[:H] for k, v in batch.items()})
                else:
                    half = {k: v[:H] for k, v in maps.items()}
                    sh_re = reestimate_sh(tex_relit, albedo_pca[:H], nrm[:H], (maps["confidence"] * vis)[:H], prior)
                    maps_r = dict(half, delit=delit(tex_relit, shading_map(nrm[:H], sh_re), vis[:H]),
                                  texture=tex_relit)
                x = torch.cat([x, stack_inputs(fan_plain.inputs, maps_r)])
        y, gate = fan(x, return_gate=True)
        fake = y[:B]
        real = _downsize(albedo_pca, cfg.disc_resolution)
        # discriminator: robust PCA albedos are real
        disc_plain.requires_grad_(True)
        loss_d = 0.5 * (gan_loss(disc(real), True) + gan_loss(disc(_downsize(fake.detach() * mask, cfg.disc_resolution)),
                                                             False))
        opt_d.zero_grad(set_to_none=True)
        run.acc.backward(loss_d)
        opt_d.step()
        disc_plain.requires_grad_(False)

        weight = vis * clean  # texels the photo shows as skin: the clean texture is the target there
        synth = fake * shading
        terms = {"pixel": ((synth - tex).abs().mean(1, keepdim=True) * weight).sum() / weight.sum().clamp_min(1)}
        if cfg.w_occluded > 0:
            hidden = weight * (alpha > 0.5).float()
            terms["inpaint"] = ((synth - tex).abs().mean(1, keepdim=True) * hidden).sum() / hidden.sum().clamp_min(1)
        composite = synth * weight + tex * (1 - weight)
        with torch.no_grad():
            ft = vgg(_downsize(tex, cfg.percep_resolution))
        terms["percep"] = perceptual_loss(ft, vgg(_downsize(composite, cfg.percep_resolution)), squared=True)
        terms["adv"] = gan_loss(disc_plain(_downsize(fake * mask, cfg.disc_resolution)), True)
        if cfg.w_lowfreq > 0:
            w_lf = F.avg_pool2d(mask * (1 - weight), 8)
            diff = (F.avg_pool2d(fake * mask, 8) - F.avg_pool2d(guide, 8)).abs().mean(1, keepdim=True)
            terms["lowfreq"] = (diff * w_lf).sum() / w_lf.sum().clamp_min(1e-6)
        if cfg.relight:
            cons = (y[B:] - fake[:H].detach()).abs().mean(1, keepdim=True) * vis[:H]
            terms["consistency"] = cons.sum() / vis[:H].sum().clamp_min(1)
        if cfg.w_gate > 0:
            occluded = (alpha > 0.5).float()
            trusted = (weight > 0.5).float() * (alpha < 0.05).float()
            bce = F.binary_cross_entropy(gate[:B].clamp(1e-4, 1 - 1e-4), trusted, reduction="none")
            # occluded and clean texels weigh the same, however few the occluded ones are
            n_occ, n_ok = occluded.sum().clamp_min(1), trusted.sum().clamp_min(1)
            terms["gate"] = 0.5 * ((bce * occluded).sum() / n_occ + (bce * trusted).sum() / n_ok)
        weights = {"pixel": cfg.w_pixel, "percep": cfg.w_percep, "adv": cfg.w_gan, "lowfreq": cfg.w_lowfreq,
                   "consistency": cfg.w_consistency,
                   "gate": cfg.w_gate, "inpaint": cfg.w_occluded}
        weighted = {k: weights[k] * v for k, v in terms.items()}
        loss_g = sum(weighted.values())
        if cfg.grad_share_every and (run.step % cfg.grad_share_every == 0):
            norms = {}
            for k, v in weighted.items():
                # on the albedo, except the gate term: on the gate (the albedo does not carry it)
                g = torch.autograd.grad(v, (gate if k == "gate" else y), retain_graph=True, allow_unused=True)[0]
                norms[k] = 0.0 if g is None else float(g.norm())
            total_norm = sum(norms.values()) or 1.0
            total = float(loss_g.detach())
            shares = {**{f"share_{k}": float(v.detach()) / total for k, v in weighted.items()},
                      **{f"gshare_{k}": n / total_norm for k, n in norms.items()}}
        opt_g.zero_grad(set_to_none=True)
        run.acc.backward(loss_g)
        opt_g.step()
        run.step += 1
        run.log({"loss_g": loss_g, **terms, "loss_d": loss_d,
                 "occluded": (alpha > 0.5).float().sum() / vis.sum().clamp_min(1), **shares})
        if run.step % cfg.checkpoint_every == 0:
            run.checkpoint()
    if pool is not None:
        pool.shutdown()
    return run.finish(fan, {"recipe": "v2", "last_shares": shares})

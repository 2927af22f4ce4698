"""Training loops for B-Net (eq. 4), FAN (eqs. 5-8) and DRN (eq. 9) with Hugging Face
Accelerate: the same code runs on one CPU, on GPUs and in several processes
(``accelerate launch``); ``training/train_{bnet,fan,drn}.py`` are the scripts:

    python training/train_fan.py --data /work/data/uv128/train --out /work/data/runs/fan \
        --resolution 128 --batch-size 8 --max-minutes 30 [--set key=value ...]
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no training/train_fan.py ...

With no GPU visible, ``--multi_gpu`` starts torch.distributed (gloo) CPU processes; on GPUs
the same command uses one GPU per process. (``--cpu`` with accelerate 1.15 starts only ONE
process, whatever --num_processes says.) tests/training/test_training.py runs the 2-process
CPU form. Paper settings are the config defaults (``facelift.training.config``); re-running
with the same ``--out`` resumes from OUT/state (``--no-resume`` starts afresh).

Run folder layout (``cfg.out``):

    train_config.json   the resolved config
    losses.csv          one row per step (main process): step, epoch, seconds, loss terms
    loss_curve.png      the loss curves (rewritten at every checkpoint and at the end)
    state/              Accelerate state (models, optimizers, RNG) for --resume
    progress.json       step / epoch / wall time of the last checkpoint
    final/              the trained network: save_pretrained (config.json + model.safetensors)
                        plus train_config.json and summary.json
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from .config import BNetConfig, DRNConfig, FANConfig, config_dict
from .losses import bnet_loss, drn_loss, gan_loss, load_vgg, perceptual, pixel_loss, render_texture
from .run import Run, _optimizer, load_frozen, load_pca, plot_losses, prepare_gan  # noqa: F401 (also imported from here)


# ---- B-Net ---------------------------------------------------------------------------------
def train_bnet(cfg: BNetConfig, resume: bool = True) -> Path:
    from ..face_model import FaceModel
    from ..models import BNet

    run = Run(cfg)
    pca = load_pca(cfg.face_model, cfg.resolution, cfg.n_albedo).to(run.device)
    brightness = (cfg.light_brightness if cfg.light_brightness is not None
                  else FaceModel.load(cfg.face_model).light_brightness)
    net = BNet(resolution=cfg.resolution, n_albedo=pca.n_components)
    opt = _optimizer(net.parameters(), cfg.lr, cfg.betas)
    net, opt = run.prepare(net, opt)
    if resume:
        run.resume()
    net.train()
    for batch in run.batches():
        if run.should_stop():
            break
        coeffs, sh = net(batch["texture"])
        loss, parts, _ = bnet_loss(batch["texture"], batch["visibility"], batch["normal"], coeffs, sh, pca, cfg.w_a,
                                   cfg.w_light, brightness)
        opt.zero_grad(set_to_none=True)
        run.acc.backward(loss)
        opt.step()
        run.step += 1
        run.log({"loss": loss, **parts})
        if run.step % cfg.checkpoint_every == 0:
            run.checkpoint()
    return run.finish(net, {"n_albedo": pca.n_components, "light_brightness": brightness})


# ---- FAN -----------------------------------------------------------------------------------
def train_fan(cfg: FANConfig, resume: bool = True) -> Path:
    from ..models import FAN, BNet, PatchGAN

    if cfg.recipe == "v2":
        from .fan_v2 import train_fan_v2

        return train_fan_v2(cfg, resume=resume)

    vgg = load_vgg(cfg.vgg)  # fails loudly before any work
    run = Run(cfg)
    vgg = vgg.to(run.device)
    bnet = load_frozen(BNet, cfg.bnet, run.device)
    pca = load_pca(cfg.face_model, cfg.resolution, bnet.n_albedo).to(run.device)
    fan, disc, opt_g, opt_d, disc_plain = prepare_gan(
        run, FAN(resolution=cfg.resolution, ngf=cfg.ngf, flip_features=cfg.flip_features), PatchGAN(ndf=cfg.ndf),
        cfg, resume)
    fan.train()
    disc.train()
    for batch in run.batches():
        if run.should_stop():
            break
        tex, vis, nrm, mask = batch["texture"], batch["visibility"], batch["normal"], batch["mask"]
        with torch.no_grad():
            coeffs, sh = bnet(tex)
            real = pca(coeffs) * mask  # x of eq. 6: albedos from the trained B-Net
            if cfg.real_samples == "least_squares":
                real = pca(batch["coefficients_ls"][:, :pca.n_components]) * mask
        if cfg.lighting == "least_squares":
            sh = batch["sh_ls"]
        fake = fan(tex)
        # discriminator step: max_D E_GAN
        disc_plain.requires_grad_(True)
        loss_d = 0.5 * (gan_loss(disc(real), True) + gan_loss(disc(fake.detach() * mask), False))
        opt_d.zero_grad(set_to_none=True)
        run.acc.backward(loss_d)
        opt_d.step()
        # generator step: E_GAN (non-saturating) + E_G (eq. 7)
        disc_plain.requires_grad_(False)
        loss_adv = gan_loss(disc_plain(fake * mask), True)
        synth = render_texture(fake, nrm, sh)
        e_pixel = pixel_loss(tex, synth, vis)
        e_percep = perceptual(vgg, tex, synth * vis, cfg.percep_resolution)
        loss_g = cfg.w_gan * loss_adv + cfg.w_pixel * e_pixel + cfg.w_percep * e_percep
        opt_g.zero_grad(set_to_none=True)
        run.acc.backward(loss_g)
        opt_g.step()
        run.step += 1
        run.log({"loss_g": loss_g, "adv": loss_adv, "pixel": e_pixel, "percep": e_percep, "loss_d": loss_d})
        if run.step % cfg.checkpoint_every == 0:
            run.checkpoint()
    return run.finish(fan)


# ---- DRN -----------------------------------------------------------------------------------
def train_drn(cfg: DRNConfig, resume: bool = True) -> Path:
    from ..models import DRN, FAN, BNet

    if cfg.recipe == "v2":
        from .drn_v2 import train_drn_v2

        return train_drn_v2(cfg, resume=resume)

    run = Run(cfg, with_position=True)
    bnet = load_frozen(BNet, cfg.bnet, run.device)
    fan = load_frozen(FAN, cfg.fan, run.device)
    drn = DRN(resolution=cfg.resolution, ngf=cfg.ngf, max_rate=cfg.max_rate, flip_features=cfg.flip_features)
    opt = _optimizer(drn.parameters(), cfg.lr, cfg.betas)
    drn, opt = run.prepare(drn, opt)
    if resume:
        run.resume()
    drn.train()
    for batch in run.batches():
        if run.should_stop():
            break
        tex, vis, nrm, mask = batch["texture"], batch["visibility"], batch["normal"], batch["mask"]
        with torch.no_grad():
            sh = batch["sh_ls"] if cfg.lighting == "least_squares" else bnet(tex)[1]
            albedo = fan(tex)
        rate = drn(tex)
        loss, parts, _ = drn_loss(tex, vis, nrm, batch["position"], mask, rate, albedo, sh, cfg.w_grad,
                                  cfg.w_const, cfg.w_smooth, cfg.displacement_unit_scale, cfg.detail_loss)
        opt.zero_grad(set_to_none=True)
        run.acc.backward(loss)
        opt.step()
        run.step += 1
        run.log({"loss": loss, **parts, "rate_abs_mm": (rate.detach().abs() * mask).sum() / mask.sum() * 1e3})
        if run.step % cfg.checkpoint_every == 0:
            run.checkpoint()
    return run.finish(drn)


TRAINERS: dict[str, tuple[type, Callable[..., Path]]] = {"bnet": (BNetConfig, train_bnet), "fan": (FANConfig, train_fan), "drn": (DRNConfig, train_drn)}


def main(kind: str, argv=None) -> Path:
    """Command line shared by training/train_{bnet,fan,drn}.py."""
    import argparse

    from .config import load_config

    cls, fn = TRAINERS[kind]
    ap = argparse.ArgumentParser(
        description=f"Train the {kind.upper()} (FaceLift, paper sections 3.2-3.4).",
        epilog=f"Several processes or GPUs: accelerate launch --multi_gpu --num_processes 2 --num_machines 1 "
               f"--mixed_precision no --dynamo_backend no training/train_{kind}.py ARGS. Running again with the "
               f"same --out resumes from OUT/state.")
    ap.add_argument("--config", help="JSON or YAML file with config values")
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--batch-size", type=int, dest="batch_size")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--max-steps", type=int, dest="max_steps")
    ap.add_argument("--max-minutes", type=float, dest="max_minutes")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other config value")
    ap.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/state exists")
    args = ap.parse_args(argv)
    kw = {k: getattr(args, k) for k in ("data", "out", "resolution", "batch_size", "lr", "max_steps",
                                         "max_minutes", "threads")}
    cfg = load_config(cls, args.config, args.set, **kw)
    final = fn(cfg, resume=not args.no_resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"saved {final}")
    return final


__all__ = ["Run", "train_bnet", "train_fan", "train_drn", "plot_losses", "main", "config_dict"]

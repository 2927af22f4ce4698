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

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import IO, Callable

import torch

from .config import BNetConfig, DRNConfig, FANConfig, config_dict, save_config
from .data import UVDataset
from .losses import PCAAlbedo, bnet_loss, drn_loss, gan_loss, load_vgg, perceptual, pixel_loss, render_texture


# ---- shared machinery ----------------------------------------------------------------------
class Run:
    """Accelerator, data, logging, checkpoints and the wall-clock budget of one training run."""

    def __init__(self, cfg, with_position: bool = False, with_lighting: bool | str | None = None, select=None):
        if with_lighting is None:
            with_lighting = "least_squares" in (getattr(cfg, "lighting", "bnet"), getattr(cfg, "real_samples", "bnet"))
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        if not cfg.data:
            raise ValueError("no training data: pass --data, a shard folder made by training/prepare_data.py")
        self.cfg = cfg
        # cpu=True without CUDA so that several launched processes form a MULTI_CPU (gloo) group
        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        set_seed(cfg.seed)
        self.out = Path(cfg.out)
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "train_config.json")
        self.dataset = UVDataset(cfg.data, resolution=cfg.resolution, limit=cfg.limit, with_position=with_position,
                                 with_lighting=with_lighting, select=select)
        bs = min(cfg.batch_size, len(self.dataset))
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_size=bs, shuffle=True,
                                                  drop_last=len(self.dataset) >= bs * self.acc.num_processes,
                                                  num_workers=cfg.num_workers)
        self.step = 0
        self.epoch = 0
        self.wall_before = 0.0
        self.start = time.time()
        self._csv: IO[str] | None = None  # losses.csv, opened on the first logged step
        self._fields: list[str] = []  # its columns

    @property
    def device(self):
        return self.acc.device

    def prepare(self, *objs):
        out = self.acc.prepare(*objs, self.loader)
        *objs, self.loader = out
        return objs

    def resume(self) -> None:
        state = self.out / "state"
        prog = self.out / "progress.json"
        if state.is_dir() and prog.is_file():
            self.acc.load_state(str(state))
            p = json.loads(prog.read_text())
            self.step, self.epoch, self.wall_before = int(p["step"]), int(p["epoch"]), float(p["wall_seconds"])
            self.acc.print(f"resumed from {state} at step {self.step}")

    def batches(self):
        """Endless batches (tensors on the right device), reshuffled every epoch."""
        while True:
            if hasattr(self.loader, "set_epoch"):
                self.loader.set_epoch(self.epoch)
            for batch in self.loader:
                yield {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            self.epoch += 1

    def wall_seconds(self) -> float:
        return self.wall_before + time.time() - self.start

    def should_stop(self) -> bool:
        stop = self.step >= self.cfg.max_steps
        if self.cfg.max_minutes is not None:
            stop = stop or (time.time() - self.start) / 60.0 >= self.cfg.max_minutes
        if self.acc.num_processes > 1:  # every process must agree
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            stop = bool(self.acc.reduce(flag, reduction="sum").item() > 0)
        return stop

    def log(self, losses: dict) -> None:
        vals = {k: float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
                for k, v in losses.items()}
        if self.acc.num_processes > 1:
            t = torch.tensor(list(vals.values()), device=self.device)
            t = self.acc.reduce(t, reduction="mean")
            vals = dict(zip(vals, t.tolist()))
        for k, v in vals.items():
            if not math.isfinite(v):
                raise FloatingPointError(f"step {self.step}: loss {k} is {v}")
        self.last = vals
        if not self.acc.is_main_process or self.step % self.cfg.log_every:
            return
        path = self.out / "losses.csv"
        if self._csv is None:
            new = not path.is_file() or path.stat().st_size == 0
            self._fields = ["step", "epoch", "seconds", *vals]
            if not new:  # a resumed run keeps the file's columns (a term logged only every N steps may be missing now)
                with open(path, newline="") as f:
                    self._fields = next(csv.reader(f), []) or self._fields
            self._csv = open(path, "a", newline="")
            if new:
                csv.writer(self._csv).writerow(self._fields)
        csv.writer(self._csv).writerow([self.step, self.epoch, round(self.wall_seconds(), 2),
                                        *(f"{vals[k]:.6g}" if k in vals else "" for k in self._fields[3:])])
        self._csv.flush()
        if self.step % 25 == 0:
            self.acc.print(f"step {self.step} epoch {self.epoch} {self.wall_seconds():.0f}s "
                           + " ".join(f"{k}={v:.4g}" for k, v in vals.items()), flush=True)

    def checkpoint(self) -> None:
        self.acc.wait_for_everyone()
        self.acc.save_state(str(self.out / "state"))
        if self.acc.is_main_process:
            (self.out / "progress.json").write_text(json.dumps(
                {"step": self.step, "epoch": self.epoch, "wall_seconds": round(self.wall_seconds(), 1)}) + "\n")
            plot_losses(self.out / "losses.csv", self.out / "loss_curve.png")

    def finish(self, net, extra: dict | None = None) -> Path:
        self.checkpoint()
        final = self.out / "final"
        if self.acc.is_main_process:
            model = self.acc.unwrap_model(net)
            model.save_pretrained(str(final))
            save_config(self.cfg, final / "train_config.json")
            summary = {"steps": self.step, "epochs_completed": self.epoch,
                       "samples_seen": self.step * self.cfg.batch_size * self.acc.num_processes,
                       "dataset_size": len(self.dataset), "wall_seconds": round(self.wall_seconds(), 1),
                       "processes": self.acc.num_processes, "device": str(self.device),
                       "torch_threads": torch.get_num_threads(), "final_losses": getattr(self, "last", {}),
                       **(extra or {})}
            (final / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self._csv is not None:
            self._csv.close()
        self.acc.wait_for_everyone()
        return final


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):  # an empty cell: the term was not measured at that step
        return float("nan")


def plot_losses(csv_path, png_path, smooth: int = 25) -> None:
    import numpy as np

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is a convenience
        return
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        return
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k not in ("step", "epoch", "seconds")]
    steps = np.array([float(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        y = np.array([_number(r.get(k)) for r in rows])
        ok = np.isfinite(y)
        x, y = steps[ok], y[ok]
        ax.plot(x, y, lw=0.5, alpha=0.4)
        if len(y) > smooth:
            ys = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            ax.plot(x[smooth - 1:], ys, lw=1.5)
        ax.set_title(k)
        ax.set_xlabel("step")
        if (y > 0).all() and y.max() / max(y.min(), 1e-12) > 20:
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def _optimizer(params, lr, betas):
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


def prepare_gan(run: Run, generator, disc, cfg, resume: bool):
    """Adam for a generator and its discriminator, both prepared by Accelerate, the run resumed
    when asked: (generator, disc, opt_g, opt_d, the unwrapped disc)."""
    opt_g = _optimizer(generator.parameters(), cfg.lr, cfg.betas)
    opt_d = _optimizer(disc.parameters(), cfg.lr_d or cfg.lr, cfg.betas)
    generator, disc, opt_g, opt_d = run.prepare(generator, disc, opt_g, opt_d)
    if resume:
        run.resume()
    return generator, disc, opt_g, opt_d, run.acc.unwrap_model(disc)


def load_pca(face_model_path: str, resolution: int, n_albedo: int | None = None) -> PCAAlbedo:
    from ..face_model import FaceModel

    fm = FaceModel.load(face_model_path)
    if fm.n_albedo == 0:
        raise ValueError(f"{face_model_path} has no albedo PCA components; run training/build_albedo_model.py")
    k = fm.n_albedo if n_albedo is None else min(n_albedo, fm.n_albedo)
    return PCAAlbedo(fm.albedo_mean, fm.albedo_basis[:k], resolution)


def load_frozen(cls, path: str, device):
    net = cls.from_pretrained(path).float().to(device).eval()
    net.requires_grad_(False)
    return net


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

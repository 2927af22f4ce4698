"""What every training loop shares: the run folder (:class:`Run`: config, losses, checkpoints,
Accelerate state), the loss-curve plot and the loaders of frozen networks and the PCA albedo.
``loop`` (B-Net, FAN, DRN) and the v2 recipes (``fan_v2``, ``drn_v2``) import it; it imports
neither, so the dispatch from ``loop`` to a recipe is no circle. Run folder layout: see ``loop``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import IO

import torch

from .._malloc import keep_freed_memory
from .config import save_config
from .data import UVDataset
from .losses import PCAAlbedo


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
        if cfg.lr_decay_steps < 0 or not 0 <= cfg.lr_final_ratio <= 1:
            raise ValueError(f"lr_decay_steps must be >= 0 and lr_final_ratio in [0, 1], got "
                             f"{cfg.lr_decay_steps} and {cfg.lr_final_ratio}")
        self.cfg = cfg
        # cpu=True without CUDA so that several launched processes form a MULTI_CPU (gloo) group
        self.acc = Accelerator(cpu=not torch.cuda.is_available())
        if self.acc.device.type == "cpu":
            keep_freed_memory()  # the step's activations and gradients stay mapped between steps
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
        self._schedules: list[tuple] = []  # (optimiser, its param groups' base lrs) for lr_decay_steps

    @property
    def device(self):
        return self.acc.device

    def prepare(self, *objs):
        out = self.acc.prepare(*objs, self.loader)
        *objs, self.loader = out
        for o in objs:
            if isinstance(o, torch.optim.Optimizer):  # Accelerate's wrapper is one too
                self._schedules.append((o, [float(g["lr"]) for g in o.param_groups]))
        return objs

    def lr_factor(self) -> float:
        """The learning-rate multiplier at the current step under lr_decay_steps."""
        n = int(self.cfg.lr_decay_steps)
        if n <= 0:
            return 1.0
        t = min(max(self.step, 0), n) / n
        final = float(self.cfg.lr_final_ratio)
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))

    def _apply_lr_schedule(self) -> None:
        f = self.lr_factor()
        for opt, base in self._schedules:
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * f

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
                self._apply_lr_schedule()
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

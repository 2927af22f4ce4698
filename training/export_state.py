"""Save the network of a training run's latest checkpoint (RUN/state) as a network folder
(config.json + model.safetensors), e.g. to evaluate a run that is still going:

    python training/export_state.py --run /work/data/runs/fan_v2_128 --out /tmp/fan_step
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> Path:
    from safetensors.torch import load_file

    from facelift.training.config import DRNConfig, FANConfig, load_config
    from facelift.training.drn_v2 import build_drn
    from facelift.training.fan_v2 import build_fan

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a v2 FAN or DRN run folder (train_config.json, state/)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    values = json.loads((args.run / "train_config.json").read_text())
    kind = values.pop("_class", "FANConfig")
    cls, build = (DRNConfig, build_drn) if kind == "DRNConfig" else (FANConfig, build_fan)
    cfg = load_config(cls, None, None)
    known = {f for f in vars(cfg)}
    for k, v in values.items():
        if k in known:  # a key an older version wrote and this one dropped is left out
            setattr(cfg, k, tuple(v) if k == "betas" else v)
    if cfg.recipe != "v2":
        raise SystemExit(f"{args.run} is a {cfg.recipe!r} run; only v2 runs are exported by this script")
    cfg.init_from = None
    net = build(cfg)
    net.load_state_dict(load_file(str(args.run / "state" / "model.safetensors")))
    net.save_pretrained(str(args.out))
    progress = json.loads((args.run / "progress.json").read_text())
    (args.out / "train_config.json").write_text(json.dumps(values, indent=2) + "\n")
    (args.out / "summary.json").write_text(json.dumps({**progress, "recipe": "v2", "exported_from": str(args.run)},
                                                      indent=2) + "\n")
    print(f"step {progress['step']} -> {args.out}")
    return args.out


if __name__ == "__main__":
    main()

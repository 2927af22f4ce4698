"""Train the FAN (FaceLift; paper sections 3.2-3.4). Thin over facelift.training.loop.

    python training/train_fan.py --data /work/data/uv128/train --out /work/data/runs/fan \
        --resolution 128 --batch-size 8 --max-minutes 20 [--set key=value ...]
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no training/train_fan.py ...

With no GPU visible, `--multi_gpu` starts torch.distributed (gloo) CPU processes; on GPUs
the same command uses one GPU per process. (`--cpu` with accelerate 1.15 starts only ONE
process, whatever --num_processes says.) tests/training/test_training.py runs the 2-process
CPU form.

Paper settings are the config defaults (facelift/training/config.py); the resolved config
is written to OUT/train_config.json and OUT/final/train_config.json. Re-running with the
same --out resumes from OUT/state (pass --no-resume to start afresh).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facelift.training.loop import main  # noqa: E402

if __name__ == "__main__":
    main("fan")

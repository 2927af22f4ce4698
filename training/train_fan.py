"""Train the FAN (FaceLift; paper sections 3.2-3.4). Thin over facelift.training.loop.

    python training/train_fan.py --data /work/data/uv128/train --out /work/data/runs/fan \
        --resolution 128 --batch-size 8 --max-minutes 20 [--set key=value ...]
    accelerate launch --num_processes 2 --cpu training/train_fan.py ...

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

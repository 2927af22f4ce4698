"""Train the DRN (eq. 9: displacement along the normal, on the frozen FAN). Thin over facelift.training.loop, whose docstring
gives the Accelerate (multi-process / GPU) command, the run folder and resuming.

    python training/train_drn.py --data /work/data/uv128/train --out /work/data/runs/drn \
        --resolution 128 --batch-size 8 [--max-minutes M] [--set key=value ...]
"""


from facelift.training.loop import main

if __name__ == "__main__":
    main("drn")

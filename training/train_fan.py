"""Train the FAN (eqs. 5-8: albedo, GAN guided by low-frequency albedos). Thin over facelift.training.loop, whose docstring
gives the Accelerate (multi-process / GPU) command, the run folder and resuming.

    python training/train_fan.py --data /work/data/uv128/train --out /work/data/runs/fan \
        --resolution 128 --batch-size 8 [--max-minutes M] [--set key=value ...]
"""


from facelift.training.loop import main

if __name__ == "__main__":
    main("fan")

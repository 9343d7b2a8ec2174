"""``python -m ausm.train [CONFIG.json] [key=value ...] [--resume]`` — the torchrun entry point:

    torchrun --nproc_per_node=2 -m ausm.train davis_root=../shared/data/davis2016 steps=20 out=runs/ddp
"""
import sys

from ..cli import main

sys.exit(main(["train", *sys.argv[1:]]))

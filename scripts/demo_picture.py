"""The README's demo picture: frames of `ausm segment --demo`'s prompted result (overlays), side by side.

    python scripts/demo_picture.py out/demo --frames 0,2,14,30 --out docs/img/demo_prompted.png
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ausm.io.overlay import overlay


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("demo", help="the --out folder of `ausm segment --demo`")
    ap.add_argument("--frames", default="0,2,14,30")
    ap.add_argument("--run", default="prompted", help="prompted or unprompted")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    d = Path(a.demo)
    tiles = []
    for k in (int(v) for v in a.frames.split(",")):
        frame = np.asarray(Image.open(d / "input" / f"{k:05d}.png").convert("RGB"))
        ids = np.asarray(Image.open(d / a.run / f"{k:05d}.png")).astype(np.int64)
        tiles.append(overlay(frame, ids))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], 1)
    Image.fromarray(row).save(a.out)
    print(a.out)


if __name__ == "__main__":
    main()

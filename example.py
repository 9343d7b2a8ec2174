"""A runnable tour of the Python API (`python example.py`): segment a video prompted by a mask, a box
and points; then unprompted; print per-frame results and the constant state size.

Uses the shipped ausm-tiny and DAVIS blackswan from ../shared/data when present, else a synthetic clip.
"""
from pathlib import Path

import numpy as np

import ausm
from ausm.io import OverlayWriter, load_prompt_mask, read_frames

DATA = Path(__file__).resolve().parent.parent / "shared" / "data"
VIDEO = DATA / "blackswan_mp4__Segment-and-Track-Anything" / "assets" / "blackswan.mp4"
MASK = DATA / "davis2016" / "Annotations" / "480p" / "blackswan" / "00000.png"


def synthetic_clip(n=20, h=240, w=320):
    frames = []
    for t in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        f[60 + t * 3:140 + t * 3, 40 + t * 6:120 + t * 6] = (230, 200, 40)
        frames.append(f)
    m = np.zeros((h, w), bool)
    m[60:140, 40:120] = True
    return frames, m


def main():
    model = ausm.AUSM.from_pretrained()  # CUDA > MPS > CPU, bf16 on capable GPUs
    print(model)
    if VIDEO.exists() and MASK.exists():
        frames = list(read_frames(VIDEO))
        mask = load_prompt_mask(MASK) == 1
    else:
        frames, mask = synthetic_clip()
    ys, xs = np.nonzero(mask)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    # 1. prompted by a mask (object 1), a box (object 2) and points (object 3, on frame 5)
    session = model.session()
    session.add_prompt(0, obj_id=1, mask=mask)
    session.add_prompt(0, obj_id=2, box=box)
    session.add_prompt(5, obj_id=3, points=[[xs.mean(), ys.mean()]], labels=[1])
    out = Path("out/example")
    out.mkdir(parents=True, exist_ok=True)
    with OverlayWriter(out / "prompted.mp4", fps=24) as video:
        for frame in frames:
            r = session.step(frame)
            video.write(frame, np.minimum(r.index_mask, 255).astype(np.uint8))
            if r.frame_idx % 10 == 0:
                areas = [int(m.sum()) for m in r.masks]
                print(f"frame {r.frame_idx}: objects {r.obj_ids} areas {areas} scores {np.round(r.scores, 2)} "
                      f"state {session.state_nbytes() / 2**20:.1f} MiB")
    print("box prompt resolved by:", session.prompt_sources)

    # 2. unprompted: detect and track whatever the model finds
    found = set()
    for r in model.propagate(frames, prompts=None):
        found.update(r.obj_ids)
    print(f"unprompted: {len(found)} tracks; overlay written to {out / 'prompted.mp4'}")


if __name__ == "__main__":
    main()

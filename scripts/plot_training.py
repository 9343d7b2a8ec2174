"""Plot a run's training loss and its validation score against steps.

    python scripts/plot_training.py runs/tiny-v1 --out docs/img/tiny_training.png
(reads RUN/history.json and, when present, RUN/heldout_curve.json from scripts/eval_checkpoints.py:
held-out training data; or a legacy RUN/val_curve.json). Several runs (stages) are drawn end to end:

    python scripts/plot_training.py runs/lite-stage1 runs/lite-stage2 --out docs/img/lite_training.png
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


HELDOUT_KEYS = {"davis_J&F-Mean": "DAVIS train held-out J&F", "duts_mask_iou": "DUTS held-out mask→frame 2 IoU",
                "duts_box_iou": "DUTS held-out box IoU", "duts_point_iou": "DUTS held-out point IoU",
                "multi_J&F-Mean": "multi-object held-out J&F"}


def _load_run(run: Path, offset: int):
    hist = json.loads((run / "history.json").read_text())
    steps = [offset + h["step"] for h in hist]
    curves = {}
    for name in ("heldout_curve.json", "val_curve.json"):
        if (run / name).exists():
            c = json.loads((run / name).read_text())
            curves = {offset + int(k): v for k, v in c.items()}
            break
    return steps, [h["loss"] for h in hist], curves


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="one run folder, or the stages of a recipe in order")
    ap.add_argument("--out", required=True)
    ap.add_argument("--baseline", type=float, default=None, help="horizontal line, e.g. the copy-first-frame score")
    ap.add_argument("--ylabel", default="held-out score, %")
    a = ap.parse_args()
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    k, offset, curve = 10, 0, {}
    for run in map(Path, a.runs):
        steps, loss, c = _load_run(run, offset)
        smooth = [sum(loss[max(0, i - k + 1): i + 1]) / len(loss[max(0, i - k + 1): i + 1]) for i in range(len(loss))]
        ax[0].plot(steps, loss, alpha=0.3)
        ax[0].plot(steps, smooth, label=f"{run.name} (mean of {k} logs)")
        if len(a.runs) > 1:
            for x in ax:
                x.axvline(offset, color="gray", linewidth=0.5)
        curve.update(c)
        offset = steps[-1] if steps else offset
    ax[0].set_xlabel("step (stages end to end)")
    ax[0].set_ylabel("training loss")
    ax[0].set_yscale("log")
    ax[0].legend()
    if curve:
        xs = sorted(curve)
        keys = [key for key in (*HELDOUT_KEYS, "J&F-Mean", "J-Mean", "F-Mean") if any(key in curve[x] for x in xs)]
        for key in keys:  # each score over the checkpoints that have it
            kx = [x for x in xs if key in curve[x]]
            ys = [curve[x][key] for x in kx]
            ax[1].plot(kx, [100 * y if y <= 1 else y for y in ys], marker="o", label=HELDOUT_KEYS.get(key, key))
        if a.baseline is not None:
            ax[1].axhline(a.baseline, color="gray", linestyle="--", label="copy first frame")
        ax[1].set_xlabel("step")
        ax[1].set_ylabel(a.ylabel)
        ax[1].legend(fontsize=8)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()

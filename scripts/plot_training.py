"""Plot a run's training loss and its validation score against steps.

    python scripts/plot_training.py runs/tiny-v1 --out docs/img/tiny_training.png
(reads RUN/history.json and, when present, RUN/val_curve.json from scripts/eval_checkpoints.py)
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--baseline", type=float, default=None, help="horizontal line, e.g. the copy-first-frame score")
    ap.add_argument("--ylabel", default="DAVIS-2016 val (semi-supervised), %")
    a = ap.parse_args()
    hist = json.loads(Path(a.run, "history.json").read_text())
    steps = [h["step"] for h in hist]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    k = 10
    loss = [h["loss"] for h in hist]
    smooth = [sum(loss[max(0, i - k + 1): i + 1]) / len(loss[max(0, i - k + 1): i + 1]) for i in range(len(loss))]
    ax[0].plot(steps, loss, alpha=0.3, label="loss")
    ax[0].plot(steps, smooth, label=f"loss (mean of {k} logs)")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("training loss")
    ax[0].legend()
    curve_file = Path(a.run, "val_curve.json")
    if curve_file.exists():
        curve = json.loads(curve_file.read_text())
        xs = sorted(int(s) for s in curve)
        for key in ("J&F-Mean", "J-Mean", "F-Mean"):
            ys = [curve[str(x)].get(key) for x in xs]
            if all(y is not None for y in ys):
                ax[1].plot(xs, [100 * y if y <= 1 else y for y in ys], marker="o", label=key)
        if a.baseline is not None:
            ax[1].axhline(a.baseline, color="gray", linestyle="--", label="copy first frame")
        ax[1].set_xlabel("step")
        ax[1].set_ylabel(a.ylabel)
        ax[1].legend()
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()

"""Plots of the benchmark JSON lines for docs/PERFORMANCE.md.

    ausm bench train-speed ... > train_speed.jsonl
    ausm bench stream ...      > stream.jsonl
    python scripts/plot_bench.py --train-speed train_speed.jsonl --stream stream.jsonl --out docs/img
    ausm bench stream --frames 100000 ... > soak.jsonl;  ausm bench objects ... > objects.jsonl
    python scripts/plot_bench.py --soak soak.jsonl --objects objects.jsonl --out docs/img
writes OUT/train_speed.png (seconds per iteration against T, both modes, log-log),
OUT/stream_memory.png (RSS and session state against the number of streamed frames),
OUT/soak.png (RSS, state and p50 / p99 latency against frames of a long soak) and
OUT/objects.png (p50 ms per frame against the number of tracked objects, ausm and SAM2).
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def records(path):
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def plot_train_speed(recs, out):
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for mode, style in (("parallel", "o-"), ("iterative", "s--")):
        pts = sorted((r["T"], r["sec_per_iter"]) for r in recs if r.get("mode") == mode)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=mode)
    r0 = recs[0]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("frames per clip T")
    ax.set_ylabel("seconds per training iteration")
    ax.set_title(f"{r0['preset']} {r0['resolution']}, batch {r0['batch']}, {r0.get('threads', '?')} thread(s), "
                 f"{r0.get('cpu', r0.get('device'))}", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_stream(recs, out):
    fig, ax = plt.subplots(figsize=(5.5, 4))
    groups = {}
    for r in recs:
        groups.setdefault((r["input"], r["internal"]), []).append(r)
    for (inp, internal), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["frames"])
        n = [r["frames"] for r in rs]
        ax.plot(n, [r["rss_mb"] for r in rs], "o-", label=f"process RSS ({inp} → {internal})")
        ax.plot(n, [r["state_nbytes"] / 2**20 for r in rs], "s--", label=f"session state ({internal})")
    ax.set_xscale("log")
    ax.set_xlabel("frames streamed")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("memory against stream length (ausm-tiny)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_soak(recs, out):
    rs = sorted(recs, key=lambda r: r["frames"])
    n = [r["frames"] for r in rs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.plot(n, [r["rss_mb"] for r in rs], "o-", label="process RSS")
    a.plot(n, [r["state_nbytes"] / 2**20 for r in rs], "s--", label="session state")
    a.set_ylabel("MiB")
    a.set_ylim(bottom=0)
    b.plot(n, [r["p50_ms"] for r in rs], "o-", label="p50 (frames 5..N)")
    b.plot(n, [r["p99_ms"] for r in rs], "s--", label="p99")
    b.set_ylabel("ms per frame")
    b.set_ylim(bottom=0)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("frames streamed")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    r0 = rs[0]
    fig.suptitle(f"{r0['model']} soak, {r0['input']} → {r0['internal']}, {r0.get('threads', '?')} thread(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_objects(recs, out):
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, style in (("ausm", "o-"), ("sam2", "s--")):
        pts = sorted((r["objects"], r["p50_ms"]) for r in recs if r.get("model") == model)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=model)
    r0 = recs[0]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tracked objects")
    ax.set_ylabel("p50 ms per frame")
    ax.set_title(f"{r0['input']} frames (ausm {r0['ausm_internal']}, SAM2 {r0.get('sam2_internal')}), "
                 f"{r0.get('threads', '?')} thread(s)", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-speed", default=None)
    ap.add_argument("--stream", default=None)
    ap.add_argument("--soak", default=None)
    ap.add_argument("--objects", default=None)
    ap.add_argument("--out", default="docs/img")
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.train_speed:
        plot_train_speed(records(a.train_speed), Path(a.out) / "train_speed.png")
    if a.stream:
        plot_stream(records(a.stream), Path(a.out) / "stream_memory.png")
    if a.soak:
        plot_soak(records(a.soak), Path(a.out) / "soak.png")
    if a.objects:
        plot_objects(records(a.objects), Path(a.out) / "objects.png")


if __name__ == "__main__":
    main()

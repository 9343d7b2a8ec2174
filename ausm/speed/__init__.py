"""Speed and memory benchmarks (``ausm bench ...``): every measurement is one JSON object naming the
machine, thread count, dtype, torch version and resolution; each subcommand ends with a markdown table.

Numbers are measured side by side in one process (interleaved where two modes are compared); they
are never asserted in tests.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time

import torch


def machine_info() -> dict:
    """What every measurement records about where it ran."""
    info = {"machine": platform.machine(), "cpu": _cpu_name(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss``)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def current_rss_mb() -> float:
    """Current resident set size, MiB (Linux ``/proc/self/statm``; falls back to the peak)."""
    try:
        pages = int(open("/proc/self/statm").read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return peak_rss_mb()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def emit(record: dict, stream=None) -> dict:
    print(json.dumps(record), file=stream or sys.stdout, flush=True)
    return record


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)
    return head + body


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` (matmuls, convolutions and attention, including the fused CPU attention
    kernel that ``torch.utils.flop_counter`` does not count by itself)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def sdpa_cpu(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = sdpa_cpu
    with FlopCounterMode(display=False, custom_mapping=mapping) as fc:
        fn()
    return fc.get_total_flops()

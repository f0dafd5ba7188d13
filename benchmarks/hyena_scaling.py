"""Hyena against attention as the sequence grows: one block each, width 256, batch 1, on this CPU.

    python benchmarks/hyena_scaling.py [--max-len 65536] [--repeats 3] [--budget 120] [--default-malloc] [--hyena-only]

A Hyena block (order 2, FFT long convolution) and a causal attention block (SDPA, 4 heads), both
pre-LN with the same GELU MLP, run forward + backward at L = 1K, 2K, 4K, ... Each measurement is the
median of ``repeats`` runs; peak memory is the resident-set growth during one step (sampled every
millisecond) in a fresh process. One untimed step at each length comes first.
Attention stops once a step would exceed ``budget`` seconds or runs out of memory (recorded).
Both run with ``polyformer.runtime.retain_freed_memory()`` (as the trainer does; ``--default-malloc``
measures glibc's defaults instead, under which every large activation is page-faulted in afresh).
Reports the time ratio per doubling, a least-squares exponent (time ~ L^k), the crossover length,
and draws docs/img/hyena_scaling.png. Results: benchmarks/results/hyena_scaling.json (the variants:
hyena_scaling_default_malloc*.json, *_hyena_only.json; no plot).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer.layers.attention import MultiHeadAttention  # noqa: E402
from polyformer.layers.hyena import HyenaOperator  # noqa: E402
from polyformer.layers.mlp import MLP  # noqa: E402
from polyformer.runtime import retain_freed_memory  # noqa: E402

D = 256


class Block(nn.Module):
    def __init__(self, kind: str, length: int):
        super().__init__()
        self.kind = kind
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.mixer = HyenaOperator(D, length, emb_dim=5) if kind == "hyena" else MultiHeadAttention(D, 4, bias=False)
        self.mlp = MLP(D, 4 * D, "gelu")

    def forward(self, x):
        h = self.norm1(x)
        x = x + (self.mixer(h) if self.kind == "hyena" else self.mixer(h, is_causal=True))
        return x + self.mlp(self.norm2(x))


def step(block: Block, length: int) -> float:
    x = torch.randn(1, length, D, requires_grad=True)
    t0 = time.perf_counter()
    block(x).square().mean().backward()
    return time.perf_counter() - t0


def child(kind: str, length: int, retain: bool) -> None:
    from peak_rss import peak_growth_mib

    if retain:
        retain_freed_memory()
    torch.manual_seed(0)
    block = Block(kind, length)
    step(block, 64)
    print(json.dumps({"peak_mib": peak_growth_mib(lambda: step(block, length))}))


def peak_memory(kind: str, length: int, retain: bool) -> float | None:
    cmd = [sys.executable, __file__, "--child", kind, "--length", str(length)]
    out = subprocess.run(cmd + ([] if retain else ["--default-malloc"]), capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def exponent(lengths, times) -> float:
    xs, ys = [math.log(n) for n in lengths], [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--max-len", type=int, default=65536)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=120.0, help="skip attention beyond this many seconds per step")
    p.add_argument("--default-malloc", action="store_true", help="keep glibc's default allocation thresholds")
    p.add_argument("--hyena-only", action="store_true", help="skip the attention block")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.length, not args.default_malloc)
        return 0
    retain = not args.default_malloc and retain_freed_memory()
    lengths = []
    n = 1024
    while n <= args.max_len:
        lengths.append(n)
        n *= 2
    rows, attention_alive = [], True
    for length in lengths:
        row: dict = {"length": length}
        for kind in ("hyena",) if args.hyena_only else ("hyena", "attention"):
            if kind == "attention" and not attention_alive:
                row[kind] = None
                continue
            torch.manual_seed(0)
            try:
                block = Block(kind, length)
                step(block, length)  # warm-up at the full length: the allocator's heap grows to its steady size
                t = statistics.median(step(block, length) for _ in range(args.repeats))
                row[kind] = {"seconds": t, "peak_mib": peak_memory(kind, length, retain)}
            except (RuntimeError, MemoryError) as e:  # out of memory
                row[kind] = {"error": str(e).splitlines()[0][:200]}
                attention_alive = kind != "attention"
                continue
            if kind == "attention" and 4 * t > args.budget:  # the next doubling would cost ~4x per step
                attention_alive = False
        rows.append(row)
        print(json.dumps(row), flush=True)

    def series(kind):
        pts = [(r["length"], r[kind]["seconds"]) for r in rows if r.get(kind) and "seconds" in r[kind]]
        return [a for a, _ in pts], [b for _, b in pts]

    hl, ht = series("hyena")
    al, at = series("attention")
    summary = {
        "hyena_exponent": exponent(hl, ht),
        "attention_exponent": exponent(al, at) if len(al) > 1 else None,
        "hyena_ratio_per_doubling": [ht[i + 1] / ht[i] for i in range(len(ht) - 1)],
        "attention_ratio_per_doubling": [at[i + 1] / at[i] for i in range(len(at) - 1)],
        "speedup_at": {
            r["length"]: r["attention"]["seconds"] / r["hyena"]["seconds"]
            for r in rows
            if r.get("attention") and "seconds" in r["attention"]
        },
    }
    faster = [n for n, s in summary["speedup_at"].items() if s > 1]
    summary["crossover_length"] = min(faster) if faster else None
    meta = {"threads": torch.get_num_threads(), "torch": torch.__version__, "d_model": D, "repeats": args.repeats}
    meta["allocator"] = "retain_freed_memory" if retain else "glibc default"
    name = (
        "hyena_scaling"
        + ("_default_malloc" if args.default_malloc else "")
        + ("_hyena_only" if args.hyena_only else "")
    )
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    if name != "hyena_scaling":  # the plot in the docs is the default comparison's
        return 0
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return 0
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(hl, ht, "o-", label=f"Hyena block (slope {summary['hyena_exponent']:.2f})")
    if al:
        slope = summary["attention_exponent"]
        ax.loglog(al, at, "s-", label="attention block" + (f" (slope {slope:.2f})" if slope else ""))
    ax.set_xlabel("sequence length L")
    ax.set_ylabel("forward + backward, seconds")
    ax.set_title(f"One block, width {D}, batch 1, {torch.get_num_threads()} CPU threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    img = ROOT / "docs" / "img" / "hyena_scaling.png"
    img.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(img, dpi=120)
    print(f"wrote {img}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

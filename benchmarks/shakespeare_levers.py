"""The throughput levers measured for the tiny-shakespeare LM (docs/benchmarks.md), in one run.

    python benchmarks/shakespeare_levers.py

For the lm-tiny shape (4 layers, width 128, context 64, vocabulary 65): median milliseconds per
training step (forward, backward, clipping, AdamW) for batch 12/32/64 in float32 and bf16 autocast,
fused vs unfused AdamW at batch 16 (interleaved), and the share of matrix multiplies in a profiled step
with their achieved GFLOP/s. Results go to benchmarks/results/shakespeare_levers.json.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer import create_model  # noqa: E402
from polyformer.train import build_optimizer  # noqa: E402


def make_step(batch: int, bf16: bool = False, fused: bool | None = None):
    torch.manual_seed(0)
    model = create_model("lm-tiny", vocab_size=65)
    opt = build_optimizer(model, 1e-3, 0.1, (0.9, 0.99), fused=fused)
    x = torch.randint(0, 65, (batch, 64))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step():
        with ctx():
            loss = model(x, labels=x, shift_labels=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, model


def median_ms(step, n: int = 20) -> float:
    for _ in range(5):
        step()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def main() -> int:
    results: dict = {"batch_dtype": {}}
    for batch in (12, 32, 64):
        for bf16 in (False, True):
            ms = median_ms(make_step(batch, bf16)[0])
            key = f"batch{batch}_{'bf16' if bf16 else 'fp32'}"
            results["batch_dtype"][key] = {"ms_per_step": ms, "tokens_per_s": batch * 64 / (ms / 1e3)}
            print(f"{key:16s} {ms:7.1f} ms/step  {batch * 64 / (ms / 1e3):8.0f} tokens/s", flush=True)

    steps = {f: make_step(16, fused=f)[0] for f in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    for f in (False, True):
        for _ in range(5):
            steps[f]()
    for _ in range(12):  # interleaved, so machine noise hits both alike
        for f in (False, True):
            t = time.perf_counter()
            for _ in range(5):
                steps[f]()
            times[f].append((time.perf_counter() - t) / 5 * 1e3)
    results["fused_adamw_batch16_ms"] = {
        "unfused": statistics.median(times[False]),
        "fused": statistics.median(times[True]),
    }
    print("AdamW at batch 16:", {k: f"{v:.1f} ms" for k, v in results["fused_adamw_batch16_ms"].items()})

    step, model = make_step(12)
    for _ in range(5):
        step()
    n = 20
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    # matmul FLOPs of one step: forward 2*N*T, backward 4*N*T over the Linear weights
    n_mm = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    flops = 6 * n_mm * 12 * 64 * n
    results["profile_batch12"] = {"matmul_share": mm / total, "matmul_gflops": flops / (mm / 1e6) / 1e9}
    print(
        f"profile, batch 12: matmuls {100 * mm / total:.0f}% of the step, "
        f"{results['profile_batch12']['matmul_gflops']:.0f} GFLOP/s",
        flush=True,
    )
    results["machine"] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    out = ROOT / "benchmarks" / "results" / "shakespeare_levers.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Jamba on CPU against transformers.JambaForCausalLM holding the same weights, measured in one run.

    python benchmarks/jamba_speed.py [--repeats 5] [--skip-hf-default] [--only forward ...] [--profile]

Model: the `jamba-small` preset (vocab 256, width 256, 8 layers with attention at layer 4, 4 experts
top-2 in every 2nd layer, d_state 16, expand 2), batch 1. Ours twice: as it runs by default (the
compiled CPU scan and conv kernels, where they build) and in pure PyTorch (`scan_impl="chunked"`).
Peers: transformers' PyTorch path (the sequential scan; `use_mambapy=False`) and its `mambapy` path
(a parallel scan, `use_mambapy=True` with the `mambapy` package installed), both loaded from our
`to_hf` export and checked to give the same logits. Reported (medians): a training step (forward +
backward) at 1,024 tokens, a forward at 4,096 tokens (the models taking turns), peak memory of that
forward (resident-set growth sampled during the forward, each model in a fresh process), and decoding
speed after prompts of 512 and 4,096 tokens. Results: benchmarks/results/jamba_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer import create_model  # noqa: E402
from polyformer.interop import to_hf  # noqa: E402

MODEL = "jamba-small"
SCAN_EVENTS = ("_ChunkedScan", "_KernelScan")  # the autograd Functions of the two fast scans


def build(kind: str, tmp: str):
    """'ours' (default: the compiled CPU scan kernel where it builds), 'ours-torch' (pure PyTorch:
    the chunked scan), 'hf' (sequential scan) or 'hf-mambapy', all with the weights of seed 0."""
    torch.manual_seed(0)
    ours = create_model(MODEL, scan_impl="chunked" if kind == "ours-torch" else "auto")
    if kind in ("ours", "ours-torch"):
        return ours
    import transformers

    to_hf(ours, tmp)
    return transformers.JambaForCausalLM.from_pretrained(tmp, use_mambapy=kind == "hf-mambapy")


def ids(length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (1, length), generator=torch.Generator().manual_seed(seed))


def train_step(model, x) -> float:
    model.train()
    t0 = time.perf_counter()
    out = model(x, labels=x)
    out.loss.backward()
    dt = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return dt


def forward(model, x) -> float:
    model.eval()
    with torch.inference_mode():
        t0 = time.perf_counter()
        model(x)
        return time.perf_counter() - t0


def child_peak_memory(kind: str, length: int) -> None:
    """Run in a fresh process: peak resident-set growth (MiB) during one forward at ``length`` tokens."""
    from peak_rss import peak_growth_mib

    with tempfile.TemporaryDirectory() as tmp:
        model = build(kind, tmp).eval()
    x = ids(length)
    with torch.inference_mode():
        model(ids(16))  # warm up: allocator and thread pool
        mib = peak_growth_mib(lambda: model(x))
    print(json.dumps({"peak_mib": mib}))


def peak_memory(kind: str, length: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child-memory", kind, "--length", str(length)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def decode_speed(model, prompt_len: int, new_tokens: int = 64) -> float:
    """Tokens per second of greedy decoding with the hybrid cache, after a prompt."""
    model.eval()
    with torch.inference_mode():
        cache = model.new_cache()
        logits = model(ids(prompt_len), cache=cache).logits[:, -1]
        t0 = time.perf_counter()
        for _ in range(new_tokens):
            tok = logits.argmax(-1, keepdim=True)
            logits = model(tok, cache=cache).logits[:, -1]
        return new_tokens / (time.perf_counter() - t0)


def profile_forward(length: int = 4096) -> int:
    """torch.profiler on one forward of ours: total, matrix products, selective scans, the attention
    layer (SDPA) and the convolutions."""
    from torch.profiler import ProfilerActivity, profile

    model = build("ours", "").eval()
    x = ids(length)
    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    events = {e.key: e for e in prof.key_averages()}
    ms = {
        "total_ms": sum(e.self_cpu_time_total for e in events.values()) / 1e3,
        "matmul_ms": sum(events[k].self_cpu_time_total for k in ("aten::mm", "aten::addmm", "aten::bmm") if k in events)
        / 1e3,
        "selective_scan_ms": sum(events[k].cpu_time_total for k in SCAN_EVENTS if k in events) / 1e3,
        "attention_ms": sum(e.cpu_time_total for k, e in events.items() if k.startswith("aten::_scaled_dot_product"))
        / 1e3,
        "conv_ms": events["_KernelConv"].cpu_time_total / 1e3 if "_KernelConv" in events else None,
    }
    print(f"forward at {length:,} tokens, profiled:", json.dumps({k: round(v, 1) for k, v in ms.items() if v}))
    out = ROOT / "benchmarks" / "results" / "jamba_speed.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["forward_4096_profile"] = ms
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def measure_train(models: dict, repeats: int, with_default: bool) -> dict:
    ours, ours_torch, hf, hf_py = (models[k] for k in ("ours", "ours-torch", "hf", "hf-mambapy"))
    x = ids(1024)
    train_step(ours, x)  # warm up
    train_step(ours_torch, x)
    t_ours = statistics.median(train_step(ours, x) for _ in range(repeats))
    t_torch = statistics.median(train_step(ours_torch, x) for _ in range(repeats))
    t_py = statistics.median(train_step(hf_py, x) for _ in range(max(1, repeats - 1)))
    row = {"ours_s": t_ours, "ours_pure_torch_s": t_torch, "hf_mambapy_s": t_py, "speedup_vs_mambapy": t_py / t_ours}
    row["pure_torch_speedup_vs_mambapy"] = t_py / t_torch
    if with_default:
        t_hf = train_step(hf, x)
        row |= {"hf_default_s": t_hf, "speedup_vs_default": t_hf / t_ours}
    print("training step at 1,024 tokens:", json.dumps({k: round(v, 3) for k, v in row.items()}))
    return row


def alternate(a, b, x, repeats: int) -> tuple[list[float], list[float]]:
    """Forward times of two models taking turns (a slow spell of this shared machine hits both)."""
    for m in (a, b):
        forward(m, ids(64))
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(forward(a, x))
        tb.append(forward(b, x))
    return ta, tb


def measure_forward(models: dict, repeats: int, with_default: bool) -> dict:
    """Forward at 4,096 tokens, in pairs: ours against transformers' default path, then ours against
    ours in pure PyTorch. (A third model in the rotation changes the others' allocator state: its
    scratch memory leaves ours page-faulting fresh allocations; each pair is measured alone.)"""
    x = ids(4096)
    row, runs = {}, {}
    if with_default:
        runs["ours"], runs["hf_default"] = alternate(models["ours"], models["hf"], x, repeats)
        row["ours_s"], row["hf_default_s"] = statistics.median(runs["ours"]), statistics.median(runs["hf_default"])
        row["speedup_vs_default"] = row["hf_default_s"] / row["ours_s"]
    ours_again, runs["ours_pure_torch"] = alternate(models["ours"], models["ours-torch"], x, repeats)
    runs["ours"] = runs.get("ours", []) + ours_again
    row["ours_pure_torch_s"] = statistics.median(runs["ours_pure_torch"])
    row["pure_torch_slowdown_vs_ours"] = row["ours_pure_torch_s"] / statistics.median(ours_again)
    row.setdefault("ours_s", statistics.median(ours_again))
    if with_default:
        row["pure_torch_speedup_vs_default"] = row["hf_default_s"] / row["ours_pure_torch_s"]
    print("forward at 4,096 tokens:", json.dumps({k: round(v, 3) for k, v in row.items()}))
    return row | {"all_runs_s": runs}


def measure_memory() -> dict:
    mem = {kind: peak_memory(kind, 4096) for kind in ("ours", "ours-torch", "hf", "hf-mambapy")}
    print("peak memory of a forward at 4,096 tokens (MiB):", json.dumps({k: round(v, 1) for k, v in mem.items()}))
    return mem


def measure_decode(ours) -> dict:
    dec = {f"after_{n}": decode_speed(ours, n) for n in (512, 4096)}
    torch.manual_seed(0)
    mamba = create_model("mamba-small")  # no attention layer: the cost per token cannot depend on the prompt
    dec |= {f"mamba_small_after_{n}": decode_speed(mamba, n) for n in (512, 4096)}
    print("decoding (tokens/s):", json.dumps({k: round(v, 1) for k, v in dec.items()}))
    return dec


PARTS = ("train", "forward", "memory", "decode")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-hf-default", action="store_true", help="skip the slow sequential-scan peer (~4 min)")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these (default: all)")
    p.add_argument(
        "--retain-memory",
        action="store_true",
        help="keep freed memory mapped (polyformer.runtime.retain_freed_memory, for both models); "
        "results go to *_retained_memory keys",
    )
    p.add_argument(
        "--profile", action="store_true", help="only profile our forward at 4,096 tokens (where the time goes)"
    )
    p.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, default=4096, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_memory:
        child_peak_memory(args.child_memory, args.length)
        return 0
    if args.profile:
        return profile_forward()
    try:
        import mambapy  # noqa: F401
        import transformers
    except ImportError as e:
        print(f"skipping: {e.name} is not installed (pip install -e '.[dev,bench]')")
        return 0
    from polyformer.layers import scan_kernel
    from polyformer.runtime import retain_freed_memory

    if args.retain_memory and not retain_freed_memory():
        print("--retain-memory: not available here (glibc only)")
        return 2
    out = ROOT / "benchmarks" / "results" / "jamba_speed.json"
    results: dict = json.loads(out.read_text()) if out.exists() else {}  # parts not measured now are kept
    results |= {"model": MODEL, "threads": torch.get_num_threads(), "torch": torch.__version__}
    results["transformers"] = transformers.__version__
    results["scan"] = "compiled CPU kernel" if scan_kernel.available() else f"chunked ({scan_kernel.error()})"
    print("our selective scan:", results["scan"])
    with tempfile.TemporaryDirectory() as tmp:
        models = {kind: build(kind, tmp) for kind in ("ours", "ours-torch", "hf", "hf-mambapy")}
    x = ids(256)
    with torch.inference_mode():
        ref = models["hf"].eval()(x).logits
        diff = max((models[k].eval()(x).logits - ref).abs().max().item() for k in ("ours", "ours-torch", "hf-mambapy"))
    assert diff < 1e-3, f"logits differ by {diff}"
    results["max_logit_diff_vs_hf"] = diff
    print(f"same weights, logits agree to {diff:.1e}")

    suffix = "_retained_memory" if args.retain_memory else ""
    if "train" in args.only:
        results["train_step_1024" + suffix] = measure_train(models, args.repeats, not args.skip_hf_default)
    if "forward" in args.only:
        results["forward_4096" + suffix] = measure_forward(models, args.repeats, not args.skip_hf_default)
    if "memory" in args.only and not args.retain_memory:  # resident memory is what retention changes
        results["peak_memory_forward_4096_mib"] = measure_memory()
    if "decode" in args.only:
        results["decode_tokens_per_s" + suffix] = measure_decode(models["ours"])

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

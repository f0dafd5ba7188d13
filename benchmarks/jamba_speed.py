"""Jamba on CPU against transformers.JambaForCausalLM holding the same weights, measured in one run.

    python benchmarks/jamba_speed.py [--repeats 3] [--skip-hf-default] [--profile]

Model: the `jamba-small` preset (vocab 256, width 256, 8 layers with attention at layer 4, 4 experts
top-2 in every 2nd layer, d_state 16, expand 2), batch 1. Peers: transformers' PyTorch path (the
sequential scan; `use_mambapy=False`) and its `mambapy` path (a parallel scan, `use_mambapy=True` with
the `mambapy` package installed), both loaded from our `to_hf` export and checked to give the same
logits. Reported (medians): a training step (forward + backward) at 1,024 tokens, a forward at 4,096
tokens, peak memory of that forward (resident-set growth sampled during the forward, each model in a
fresh process), and decoding speed after prompts of 512 and 4,096 tokens. Results: benchmarks/results/jamba_speed.json.
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
    """'ours', 'hf' (sequential scan) or 'hf-mambapy', all with the weights of seed 0."""
    torch.manual_seed(0)
    ours = create_model(MODEL)
    if kind == "ours":
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
    """torch.profiler on one forward of ours: total, matrix products, and the selective scans."""
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
    }
    print(f"forward at {length:,} tokens, profiled:", json.dumps({k: round(v, 1) for k, v in ms.items() if v}))
    out = ROOT / "benchmarks" / "results" / "jamba_speed.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results["forward_4096_profile"] = ms
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-hf-default", action="store_true", help="skip the slow sequential-scan peer (~4 min)")
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
    results: dict = {"model": MODEL, "threads": torch.get_num_threads(), "torch": torch.__version__}
    results["transformers"] = transformers.__version__
    with tempfile.TemporaryDirectory() as tmp:
        ours = build("ours", tmp)
        hf = build("hf", tmp)
        hf_py = build("hf-mambapy", tmp)
    x = ids(256)
    with torch.inference_mode():
        ref = hf.eval()(x).logits
        diff = max((m.eval()(x).logits - ref).abs().max().item() for m in (ours, hf_py))
    assert diff < 1e-3, f"logits differ by {diff}"
    results["max_logit_diff_vs_hf"] = diff
    print(f"same weights, logits agree to {diff:.1e}")

    x = ids(1024)
    train_step(ours, x)  # warm up
    t_ours = statistics.median(train_step(ours, x) for _ in range(args.repeats))
    t_py = statistics.median(train_step(hf_py, x) for _ in range(max(1, args.repeats - 1)))
    row = {"ours_s": t_ours, "hf_mambapy_s": t_py, "speedup_vs_mambapy": t_py / t_ours}
    if not args.skip_hf_default:
        t_hf = train_step(hf, x)
        row |= {"hf_default_s": t_hf, "speedup_vs_default": t_hf / t_ours}
    results["train_step_1024"] = row
    print("training step at 1,024 tokens:", json.dumps({k: round(v, 3) for k, v in row.items()}))

    x = ids(4096)
    forward(ours, ids(64))
    f_ours = statistics.median(forward(ours, x) for _ in range(args.repeats))
    row = {"ours_s": f_ours}
    if not args.skip_hf_default:
        f_hf = statistics.median(forward(hf, x) for _ in range(max(1, args.repeats - 1)))
        row |= {"hf_default_s": f_hf, "speedup_vs_default": f_hf / f_ours}
    results["forward_4096"] = row
    print("forward at 4,096 tokens:", json.dumps({k: round(v, 3) for k, v in row.items()}))

    mem = {kind: peak_memory(kind, 4096) for kind in ("ours", "hf", "hf-mambapy")}
    results["peak_memory_forward_4096_mib"] = mem
    print("peak memory of a forward at 4,096 tokens (MiB):", json.dumps({k: round(v, 1) for k, v in mem.items()}))

    dec = {f"after_{n}": decode_speed(ours, n) for n in (512, 4096)}
    torch.manual_seed(0)
    mamba = create_model("mamba-small")  # no attention layer: the cost per token cannot depend on the prompt
    dec |= {f"mamba_small_after_{n}": decode_speed(mamba, n) for n in (512, 4096)}
    results["decode_tokens_per_s"] = dec
    print("decoding (tokens/s):", json.dumps({k: round(v, 1) for k, v in dec.items()}))

    out = ROOT / "benchmarks" / "results" / "jamba_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Character LM on tiny shakespeare: nanoGPT's CPU recipe, then our faster recipe, in one run.

    python benchmarks/shakespeare_char.py [--only baseline|fast] [--threads 2]

Both recipes train the same model shape (4 layers, 4 heads, width 128, context 64) on the first
90% of ../shared/data/tinyshakespeare/input.txt and evaluate on the *full* last 10%. The figure
is time-to-loss: training wall-clock (evaluations excluded) until the validation loss first reaches
1.88, nanoGPT's reported value for this configuration. Results go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer.train import load_train_config, train  # noqa: E402

TARGET = 1.88
RECIPES = {"baseline": "configs/shakespeare_char.yaml", "fast": "configs/shakespeare_char_fast.yaml"}


def time_to_target(metrics_path: Path, target: float):
    for line in metrics_path.read_text().splitlines():
        e = json.loads(line)
        if e.get("kind") == "eval" and e["val_loss"] <= target:
            return e["step"], e["train_time"], e["val_loss"]
    return None, None, None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=list(RECIPES), default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/tinyshakespeare/input.txt"))
    args = p.parse_args()
    if not Path(args.data).exists():
        print(f"skipping: {args.data} not found")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for name, cfg_path in RECIPES.items():
        if args.only and name != args.only:
            continue
        out = ROOT / "runs" / f"bench_shakespeare_{name}"
        cfg = load_train_config(
            ROOT / cfg_path, [f"out_dir={out}", f"data.path={args.data}", "resume=false", "progress=false"]
        )
        if (out / "metrics.jsonl").exists():
            (out / "metrics.jsonl").unlink()
        t0 = time.perf_counter()
        r = train(cfg)
        step, t_target, v = time_to_target(out / "metrics.jsonl", TARGET)
        results[name] = {
            "config": cfg_path,
            "steps": r["step"],
            "final_val_loss": r["val_loss"],
            "train_seconds": r["wall_seconds"] - r["eval_seconds"],
            "wall_seconds": time.perf_counter() - t0,
            "steps_to_target": step,
            "seconds_to_target": t_target,
            "val_loss_at_target": v,
            "batch_size": cfg.batch_size,
            "dtype": cfg.dtype,
            "compile": cfg.compile,
        }
        print(json.dumps({name: results[name]}, indent=2))
    if (
        "baseline" in results
        and "fast" in results
        and results["fast"]["seconds_to_target"]
        and results["baseline"]["seconds_to_target"]
    ):
        ratio = results["baseline"]["seconds_to_target"] / results["fast"]["seconds_to_target"]
        results["speedup_time_to_target"] = ratio
        print(
            f"time to val loss {TARGET}: baseline {results['baseline']['seconds_to_target']:.1f} s, "
            f"fast {results['fast']['seconds_to_target']:.1f} s -> {ratio:.2f}x"
        )
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out_json = ROOT / "benchmarks" / "results" / "shakespeare_char.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    prev = json.loads(out_json.read_text()) if out_json.exists() and args.only else {}
    out_json.write_text(json.dumps(prev | results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

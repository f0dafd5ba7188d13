"""MNIST (official 60k/10k split): a ViT with <= 1M parameters, and an Activator of comparable size
trained with the same recipe and budget.

    python benchmarks/mnist.py [--only vit|activator]

Configs: configs/mnist_vit.yaml and configs/mnist_activator.yaml (30 epochs, batch 128, AdamW, cosine,
random crop with 2-pixel padding). Runs are resumable (runs/mnist_*). Results: benchmarks/results/mnist.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer.train import load_train_config, train  # noqa: E402

RUNS = {"vit": "configs/mnist_vit.yaml", "activator": "configs/mnist_activator.yaml"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=list(RUNS), default=None)
    args = p.parse_args()
    data = ROOT.parent / "shared" / "data" / "mnist"
    if not data.exists():
        print(f"skipping: {data} not found")
        return 0
    out = ROOT / "benchmarks" / "results" / "mnist.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for name, cfg_path in RUNS.items():
        if args.only and name != args.only:
            continue
        cfg = load_train_config(ROOT / cfg_path, [f"data.path={data}", "progress=false"])
        state = Path(cfg.out_dir) / "trainer_state.json"
        if not (state.exists() and json.loads(state.read_text())["step"] >= cfg.max_steps):
            train(cfg)  # trains, or resumes an unfinished run
        lines = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
        evals = [e for e in lines if e.get("kind") == "eval"]
        r = {**evals[-1], "parameters": next(e["parameters"] for e in reversed(lines) if e.get("kind") == "final")}
        results[name] = {
            "config": cfg_path,
            "parameters": r["parameters"],
            "steps": r["step"],
            "epochs": r["epoch"],
            "test_accuracy": r["accuracy"],
            "test_loss": r["val_loss"],
            "train_seconds": max(e["train_time"] for e in evals),
            "median_images_per_s": statistics.median(e["tokens_per_s"] for e in lines if e.get("kind") == "train"),
            "curve": [{"step": e["step"], "epoch": e["epoch"], "accuracy": e["accuracy"]} for e in evals],
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "curve"}}, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

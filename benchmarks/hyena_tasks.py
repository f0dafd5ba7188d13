"""Hyena on its two tasks: associative recall (vocabulary 30, 1,024 tokens, 2 layers of width 64) and
spoken digits from the raw 8 kHz waveform (free spoken digit dataset, official split).

    python benchmarks/hyena_tasks.py [--only recall|digits]

Configs: configs/associative_recall_hyena.yaml, configs/fsdd_hyena.yaml (runs are resumable).
Results: benchmarks/results/hyena_tasks.json (accuracy, steps, training seconds, curve).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer.train import load_train_config, train  # noqa: E402

RUNS = {"recall": "configs/associative_recall_hyena.yaml", "digits": "configs/fsdd_hyena.yaml"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=list(RUNS), default=None)
    args = p.parse_args()
    out = ROOT / "benchmarks" / "results" / "hyena_tasks.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for name, cfg_path in RUNS.items():
        if args.only and name != args.only:
            continue
        overrides = ["progress=false"]
        if name == "digits":
            data = ROOT.parent / "shared" / "data" / "fsdd" / "recordings"
            if not data.exists():
                print(f"skipping digits: {data} not found")
                continue
            overrides.append(f"data.path={data}")
        cfg = load_train_config(ROOT / cfg_path, overrides)
        metrics = Path(cfg.out_dir) / "metrics.jsonl"
        if not (metrics.exists() and any('"kind": "final"' in x for x in metrics.read_text().splitlines())):
            train(cfg)
        lines = [json.loads(x) for x in metrics.read_text().splitlines()]
        evals = [e for e in lines if e.get("kind") == "eval"]
        final = [e for e in lines if e.get("kind") == "final"][-1]
        results[name] = {
            "config": cfg_path,
            "parameters": final["parameters"],
            "steps": final["step"],
            "stop_reason": final["stop_reason"],
            "accuracy": evals[-1]["accuracy"],
            "best_accuracy": max(e["accuracy"] for e in evals),
            "train_seconds": max(e["train_time"] for e in evals),
            "curve": [{"step": e["step"], "accuracy": e["accuracy"]} for e in evals],
            "threads": torch.get_num_threads(),
        }
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "curve"}}, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

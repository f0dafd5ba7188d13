"""Train a config unless its run already finished, then summarise the run's metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from polyformer.train import train


def train_and_summarise(cfg, cfg_path: str) -> dict:
    """Resume or skip the run in ``cfg.out_dir``; return parameters, steps, stop reason, last and
    best accuracy, training seconds and the accuracy curve."""
    metrics = Path(cfg.out_dir) / "metrics.jsonl"
    if not (metrics.exists() and any('"kind": "final"' in x for x in metrics.read_text().splitlines())):
        train(cfg)
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    evals = [e for e in lines if e.get("kind") == "eval"]
    final = [e for e in lines if e.get("kind") == "final"][-1]
    return {
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

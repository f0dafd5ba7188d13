"""Multi30k German -> English: train configs/multi30k_de_en.yaml, report validation sacreBLEU.

    python benchmarks/multi30k.py [key=value ...]       (overrides for the training config)

Resumable: rerunning continues from the last checkpoint in runs/multi30k_de_en. BLEU is sacreBLEU on
the full validation set (1,014 sentences), lowercased, beam 5, detokenised output against the raw
references; the signature is printed with the score. Results go to benchmarks/results/multi30k.json.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer.train import load_train_config, train  # noqa: E402


def main() -> int:
    data = ROOT.parent / "shared" / "data" / "multi30k"
    if not (data / "train.de.gz").exists():
        print(f"skipping: {data} not found")
        return 0
    cfg = load_train_config(
        ROOT / "configs" / "multi30k_de_en.yaml",
        [
            f"data.{k}={data / v}"
            for k, v in {
                "src_train": "train.de.gz",
                "tgt_train": "train.en.gz",
                "src_val": "val.de.gz",
                "tgt_val": "val.en.gz",
            }.items()
        ]
        + sys.argv[1:],
    )
    r = train(cfg)
    evals = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e.get("kind") == "eval"]
    result = {
        "config": "configs/multi30k_de_en.yaml",
        "overrides": sys.argv[1:],
        "parameters": r["parameters"],
        "steps": r["step"],
        "val_bleu": r.get("bleu"),
        "bleu_signature": r.get("bleu_signature"),
        "val_loss": r["val_loss"],
        "train_seconds_total": max((e["train_time"] for e in evals), default=None),
        "curve": [{"step": e["step"], "train_time": e["train_time"], "bleu": e.get("bleu")} for e in evals],
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    task = r["task"]
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    for src, ref, hyp in task.last_hypotheses[:5]:
        print(f"  de: {src}\n  en: {ref}\n  mt: {hyp}\n")
    out = ROOT / "benchmarks" / "results" / "multi30k.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

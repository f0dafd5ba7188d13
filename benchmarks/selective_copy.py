"""Selective copying (Mamba paper, Table 1) at CPU scale: 512 positions, 16 data tokens, vocabulary 16.

    python benchmarks/selective_copy.py [--only mamba|jamba]

Trains the configs in RUNS (resumable, runs/selective_copy_*) until 99% answer accuracy on a fixed
validation set or the step budget, and records steps, accuracy and training time in
benchmarks/results/selective_copy.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer.train import load_train_config  # noqa: E402
from run_summary import train_and_summarise  # noqa: E402

RUNS = {
    # a 2-layer Mamba, with a length curriculum 64 -> 512
    "mamba": "configs/selective_copy_mamba.yaml",
    # a 2-layer Jamba (a Mamba layer, then an attention layer), with a length curriculum 64 -> 512
    "jamba": "configs/selective_copy_jamba.yaml",
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--only", choices=list(RUNS), default=None)
    args = p.parse_args()
    out = ROOT / "benchmarks" / "results" / "selective_copy.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for name, cfg_path in RUNS.items():
        if args.only and name != args.only:
            continue
        cfg = load_train_config(ROOT / cfg_path, ["progress=false"])
        results[name] = train_and_summarise(cfg, cfg_path)
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "curve"}}, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

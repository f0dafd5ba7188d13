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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer.train import load_train_config  # noqa: E402
from run_summary import train_and_summarise  # noqa: E402

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
        results[name] = train_and_summarise(cfg, cfg_path)
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "curve"}}, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

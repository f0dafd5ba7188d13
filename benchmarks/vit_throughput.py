"""ViT inference throughput against transformers.ViTForImageClassification holding the same weights.

    python benchmarks/vit_throughput.py [--repeats 15] [--batch 8]

For vit-tiny-patch16-224 and vit-small-patch16-224 (random weights: speed does not depend on them),
the model is exported with ``to_hf`` and loaded by transformers, both answer the same batch of 224x224
images (checked to agree to 1e-4), and their forward passes alternate. We report the median
images/s of each and the ratio ours / transformers (> 1 means we are faster). Results go to
benchmarks/results/vit_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer import create_model  # noqa: E402
from polyformer.interop import to_hf  # noqa: E402


def timed(model, x) -> float:
    t0 = time.perf_counter()
    model(x)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--models", nargs="+", default=["vit-tiny-patch16-224", "vit-small-patch16-224"])
    args = p.parse_args()
    try:
        import transformers
    except ImportError:
        print("skipping: transformers is not installed (pip install -e '.[dev]')")
        return 0
    torch.manual_seed(0)
    results = {}
    for name in args.models:
        ours = create_model(name).eval()
        with tempfile.TemporaryDirectory() as tmp:
            to_hf(ours, tmp)
            hf = transformers.ViTForImageClassification.from_pretrained(tmp, attn_implementation="sdpa").eval()
        x = torch.randn(args.batch, 3, 224, 224)
        with torch.inference_mode():
            diff = (ours(x).logits - hf(pixel_values=x).logits).abs().max().item()
            assert diff < 1e-4, f"{name}: logits differ by {diff}"
            for _ in range(2):  # warm-up
                ours(x)
                hf(pixel_values=x)
            t_ours, t_hf = [], []
            for _ in range(args.repeats):
                t_ours.append(timed(ours, x))
                t_hf.append(timed(hf, x))
        ours_ips = args.batch / statistics.median(t_ours)
        hf_ips = args.batch / statistics.median(t_hf)
        results[name] = {
            "batch": args.batch,
            "ours_images_per_s": round(ours_ips, 2),
            "transformers_images_per_s": round(hf_ips, 2),
            "ratio": round(ours_ips / hf_ips, 3),
            "max_logit_diff": diff,
        }
        print(f"{name}: ours {ours_ips:.1f} img/s, transformers {hf_ips:.1f} img/s, ratio {ours_ips / hf_ips:.3f}")
    meta = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "repeats": args.repeats,
    }
    out = ROOT / "benchmarks" / "results" / "vit_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

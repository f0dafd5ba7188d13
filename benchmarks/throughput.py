"""Training and inference throughput against torch.nn.Transformer, measured in the same run.

    python benchmarks/throughput.py [--steps 30]

For each shape, our model and a torch.nn reference with the same sizes (torch.nn.TransformerEncoder
with a causal mask as a GPT-style LM; torch.nn.Transformer as the encoder-decoder; both with the same
embeddings and output layer) run the same batches, interleaved, and we report the median time per
training step (forward + backward + AdamW) and per inference forward, and the ratio ours / reference
(< 1 means we are faster). Results go to benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polyformer import create_model  # noqa: E402


class TorchLM(nn.Module):
    """Reference GPT-style LM from torch.nn building blocks (pre-LN, GELU, learned positions)."""

    def __init__(self, vocab, d, heads, layers, ff, max_len):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(
            d, heads, ff, dropout=0.0, activation="gelu", batch_first=True, norm_first=True, bias=False
        )
        self.blocks = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d, bias=False), enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, x, y=None):
        t = x.shape[1]
        h = self.tok(x) + self.pos(torch.arange(t))
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        logits = self.head(self.blocks(h, mask=mask, is_causal=True))
        return logits if y is None else nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


class TorchSeq2Seq(nn.Module):
    def __init__(self, vocab, d, heads, layers, ff):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.core = nn.Transformer(d, heads, layers, layers, ff, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight
        self.scale = math.sqrt(d)

    def forward(self, src, tgt, y=None):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        h = self.core(self.emb(src) * self.scale, self.emb(tgt) * self.scale, tgt_mask=mask, tgt_is_causal=True)
        logits = self.head(h)
        return logits if y is None else nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def timed(fn, steps):
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def compare(name, ours_step, ref_step, ours_inf, ref_inf, steps, tokens):
    for f in (ours_step, ref_step, ours_inf, ref_inf):  # warm up
        for _ in range(3):
            f()
    a, b, c, d = [], [], [], []
    for _ in range(steps // 5):  # interleave so machine noise hits both alike
        a += timed(ours_step, 5)
        b += timed(ref_step, 5)
        c += timed(ours_inf, 5)
        d += timed(ref_inf, 5)
    r = {
        "train_ms_ours": 1e3 * statistics.median(a),
        "train_ms_torch": 1e3 * statistics.median(b),
        "infer_ms_ours": 1e3 * statistics.median(c),
        "infer_ms_torch": 1e3 * statistics.median(d),
        "tokens_per_batch": tokens,
    }
    r["train_ratio"] = r["train_ms_ours"] / r["train_ms_torch"]
    r["infer_ratio"] = r["infer_ms_ours"] / r["infer_ms_torch"]
    print(
        f"{name:28s} train {r['train_ms_ours']:7.1f} ms vs torch {r['train_ms_torch']:7.1f} ms "
        f"(x{r['train_ratio']:.2f}); inference {r['infer_ms_ours']:6.1f} vs {r['infer_ms_torch']:6.1f} ms "
        f"(x{r['infer_ratio']:.2f})",
        flush=True,
    )
    return r


def make_step(model, loss_fn):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    torch.manual_seed(0)
    results = {}

    # GPT-style LM, nanoGPT's CPU shape
    v, d, h, L, ff, T, B = 65, 128, 4, 4, 512, 64, 16
    ours = create_model("lm-tiny", vocab_size=v, dropout=0.0)
    ref = TorchLM(v, d, h, L, ff, T)
    x, y = torch.randint(0, v, (B, T)), torch.randint(0, v, (B, T))

    def ours_inf():
        with torch.no_grad():
            ours(x)

    def ref_inf():
        with torch.no_grad():
            ref(x)

    results["lm-tiny (B16 T64)"] = compare(
        "lm-tiny (B16 T64)",
        make_step(ours, lambda: ours(x, labels=y, shift_labels=False).loss),
        make_step(ref, lambda: ref(x, y)),
        ours_inf,
        ref_inf,
        args.steps,
        B * T,
    )

    # encoder-decoder, Multi30k-sized
    v, d, h, L, ff, S, B = 8000, 256, 8, 3, 1024, 20, 64
    ours = create_model("transformer-small", vocab_size=v, d_model=d, n_heads=h, n_layers=L, d_ff=ff, dropout=0.0)
    ref = TorchSeq2Seq(v, d, h, L, ff)
    src, tgt, lab = (torch.randint(3, v, (B, S)) for _ in range(3))

    def ours_inf2():
        with torch.no_grad():
            ours(src, tgt)

    def ref_inf2():
        with torch.no_grad():
            ref(src, tgt)

    results["transformer-small (B64 S20)"] = compare(
        "transformer-small (B64 S20)",
        make_step(ours, lambda: ours(src, tgt, labels=lab).loss),
        make_step(ref, lambda: ref(src, tgt, lab)),
        ours_inf2,
        ref_inf2,
        args.steps,
        2 * B * S,
    )

    results["machine"] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    out = ROOT / "benchmarks" / "results" / "throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``polyformer`` command line.

    polyformer list [PATTERN]
    polyformer info MODEL [--seq-len N] [--batch-size B] [--dtype bfloat16]
    polyformer train CONFIG.yaml [key=value ...]
    polyformer eval RUN_DIR [key=value ...]
    polyformer generate CKPT --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
    polyformer translate CKPT [TEXT ...] [--beams K]      (reads lines from stdin without TEXT)
    polyformer predict CKPT IMAGE... [--top-k 5]
    polyformer convert HF_DIR OUT_DIR  |  polyformer convert CKPT OUT_DIR --to-hf

Bad input gives one line on stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import PolyformerError


def _cmd_list(args) -> None:
    import torch

    from .registry import build_model, get_config, get_preset, list_models

    names = list_models(args.pattern)
    if not names:
        raise PolyformerError(f"no model matches '{args.pattern}'")
    print(f"{'model':32s} {'family':12s} {'params':>9s}  description")
    for n in names:
        with torch.device("meta"):
            p = build_model(get_config(n)).num_parameters()
        pr = get_preset(n)
        print(f"{n:32s} {pr.family:12s} {p / 1e6:8.2f}M  {pr.description}")


def _cmd_info(args) -> None:
    from .info import human_bytes, human_count, model_stats
    from .registry import get_config

    cfg = get_config(args.model)
    s = model_stats(args.model, args.seq_len, args.batch_size, args.dtype)
    rows = [
        ("model", s.name),
        ("family / arch", f"{cfg.family} / {getattr(cfg, 'arch', '-')}"),
        ("parameters", f"{s.parameters:,} ({human_count(s.parameters)})"),
        ("matmul parameters", f"{s.matmul_parameters:,}"),
        ("FLOPs per token (forward)", human_count(s.flops_per_token_forward)),
        ("FLOPs per token (training)", human_count(s.flops_per_token_train)),
        (f"weights ({s.dtype})", human_bytes(s.weight_bytes)),
        (f"activations, training (seq {s.seq_len}, batch {s.batch_size})", human_bytes(s.activation_bytes_train)),
        (f"KV cache (seq {s.seq_len}, batch {s.batch_size})", human_bytes(s.kv_cache_bytes)),
    ]
    if s.active_parameters is not None:
        rows.insert(3, ("active parameters per token", f"{s.active_parameters:,} ({human_count(s.active_parameters)})"))
        rows.append((f"SSM + conv state (batch {s.batch_size}, any length)", human_bytes(s.state_bytes)))
    if args.json:
        print(json.dumps(s.__dict__))
        return
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:{w}s}  {v}")


def _cmd_train(args) -> None:
    from .train import load_train_config, train

    cfg = load_train_config(args.config, args.overrides)
    result = train(cfg)
    shown = {k: v for k, v in result.items() if k not in ("model", "task")}
    print(json.dumps(shown, indent=2))


def _cmd_eval(args) -> None:
    from .modeling import from_pretrained
    from .train.tasks import make_task
    from .train.trainer import load_train_config

    run = Path(args.run_dir)
    if not (run / "train_config.json").is_file():
        raise PolyformerError(f"{run} is not a training run directory (no train_config.json)")
    from .io import read_json

    cfg = load_train_config(read_json(run / "train_config.json", "training config"), args.overrides)
    model = from_pretrained(run)
    data = dict(cfg.data)
    if cfg.task == "translation":
        data["tokenizer"] = str(run / "tokenizer.json")
    task = make_task(cfg.task, data, cfg.batch_size, cfg.max_tokens, cfg.seed, model.config.max_seq_len)
    metrics = task.evaluate(model, eval_iters=cfg.eval_iters, **cfg.eval)
    print(json.dumps(metrics, indent=2))


def _load_with_tokenizer(path):
    from .modeling import from_pretrained

    model = from_pretrained(path)
    if model.tokenizer is None:
        raise PolyformerError(f"checkpoint {path} has no tokenizer.json: cannot turn text into tokens")
    return model


def _cmd_generate(args) -> None:
    import torch

    model = _load_with_tokenizer(args.checkpoint)
    if not hasattr(model, "generate") or getattr(model.config, "arch", "") == "encoder":
        raise PolyformerError(f"the model in {args.checkpoint} does not generate text")
    tok = model.tokenizer
    ids = tok.encode(args.prompt)
    if not ids:
        raise PolyformerError("the prompt is empty after tokenisation")
    kwargs = dict(
        do_sample=args.temperature > 0,
        temperature=max(args.temperature, 1e-6),
        top_k=args.top_k,
        top_p=args.top_p,
        generator=torch.Generator().manual_seed(args.seed),
    )
    x = torch.tensor([ids])
    if getattr(model.config, "arch", "") == "encoder-decoder":  # the prompt is the source sentence
        out = model.generate(x, args.max_new_tokens, **kwargs)[0].tolist()
    else:  # the prompt is continued
        out = model.generate(x, args.max_new_tokens, eos_token_id=tok.eos_id, **kwargs)[0].tolist()
    print(tok.decode(out))


def _cmd_translate(args) -> None:
    import torch

    from .data.text import pad_batch

    model = _load_with_tokenizer(args.checkpoint)
    if getattr(model.config, "arch", "") != "encoder-decoder":
        raise PolyformerError(f"the model in {args.checkpoint} is not an encoder-decoder")
    tok = model.tokenizer
    lines = args.text or [line.rstrip("\n") for line in sys.stdin]
    for i in range(0, len(lines), 64):
        chunk = lines[i : i + 64]
        ids = [tok.encode(t)[: model.config.max_seq_len] or [tok.eos_id] for t in chunk]
        src = pad_batch(ids, tok.pad_id)
        with torch.no_grad():
            out = model.generate(
                src,
                min(model.config.max_seq_len - 1, src.shape[1] * 2 + 10),
                num_beams=args.beams,
                length_penalty=args.length_penalty,
            )
        for row in out.tolist():
            if tok.eos_id in row:
                row = row[: row.index(tok.eos_id)]
            print(tok.decode(row))


def _cmd_predict(args) -> None:
    import torch
    from PIL import Image, UnidentifiedImageError

    from .io import read_json
    from .modeling import from_pretrained

    model = from_pretrained(args.checkpoint)
    cfg = model.config
    if cfg.family not in ("vit", "activator"):
        raise PolyformerError(f"the model in {args.checkpoint} is not an image classifier")
    pre_path = Path(args.checkpoint) / "preprocessor.json"
    pre = read_json(pre_path, "preprocessor") if pre_path.exists() else {}
    mean = torch.tensor(pre.get("mean", [0.5] * cfg.num_channels)).view(-1, 1, 1)
    std = torch.tensor(pre.get("std", [0.5] * cfg.num_channels)).view(-1, 1, 1)
    names = pre.get("class_names") or [str(i) for i in range(cfg.num_classes)]
    mode = {1: "L", 3: "RGB"}.get(cfg.num_channels)
    if mode is None:
        raise PolyformerError(f"predict supports 1- or 3-channel models, this one has {cfg.num_channels}")
    k = min(args.top_k, cfg.num_classes)
    for path in args.images:
        try:
            with Image.open(path) as im:
                im = im.convert(mode).resize((cfg.image_size, cfg.image_size), Image.BILINEAR)
                x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        except FileNotFoundError:
            raise PolyformerError(f"image {path} does not exist") from None
        except (UnidentifiedImageError, OSError) as e:
            raise PolyformerError(f"{path} is not a readable image: {e}") from None
        x = x.view(cfg.image_size, cfg.image_size, cfg.num_channels).permute(2, 0, 1).float() / 255.0
        with torch.no_grad():
            probs = model(((x - mean) / std)[None]).logits.softmax(-1)[0]
        top = probs.topk(k)
        shown = ", ".join(f"{names[i]} {p:.3f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {shown}")


def _cmd_convert(args) -> None:
    from .interop import from_hf, to_hf
    from .modeling import from_pretrained

    if args.to_hf:
        to_hf(from_pretrained(args.source), args.dest)
    else:
        from_hf(args.source).save_pretrained(args.dest)
    print(f"wrote {args.dest}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyformer", description="Build, train and compare transformer families.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registered models")
    s.add_argument("pattern", nargs="?", default=None, help="glob, e.g. 'lm-*'")
    s.set_defaults(fn=_cmd_list)

    s = sub.add_parser("info", help="parameters, FLOPs per token and memory of a model")
    s.add_argument("model")
    s.add_argument("--seq-len", type=int, default=None)
    s.add_argument("--batch-size", type=int, default=1)
    s.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16", "int8"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_cmd_info)

    s = sub.add_parser("train", help="train from a YAML config")
    s.add_argument("config")
    s.add_argument("overrides", nargs="*", help="key=value (dotted keys reach into mappings)")
    s.set_defaults(fn=_cmd_train)

    s = sub.add_parser("eval", help="evaluate a training run's checkpoint on its validation data")
    s.add_argument("run_dir")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(fn=_cmd_eval)

    s = sub.add_parser("generate", help="continue a prompt with a language model")
    s.add_argument("checkpoint")
    s.add_argument("--prompt", required=True)
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_cmd_generate)

    s = sub.add_parser("translate", help="translate text with an encoder-decoder checkpoint")
    s.add_argument("checkpoint")
    s.add_argument("text", nargs="*")
    s.add_argument("--beams", type=int, default=5)
    s.add_argument("--length-penalty", type=float, default=1.0)
    s.set_defaults(fn=_cmd_translate)

    s = sub.add_parser("predict", help="top-k classes of images with an image classifier checkpoint")
    s.add_argument("checkpoint")
    s.add_argument("images", nargs="+")
    s.add_argument("--top-k", type=int, default=5)
    s.set_defaults(fn=_cmd_predict)

    s = sub.add_parser("convert", help="Hugging Face checkpoint <-> polyformer checkpoint")
    s.add_argument("source")
    s.add_argument("dest")
    s.add_argument("--to-hf", action="store_true", help="polyformer -> Hugging Face (default: the reverse)")
    s.set_defaults(fn=_cmd_convert)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for name in ("seq_len", "batch_size", "max_new_tokens", "beams", "top_k"):
            v = getattr(args, name, None)
            if v is not None and v < 1:
                raise PolyformerError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        args.fn(args)
    except KeyboardInterrupt:
        print("polyformer: interrupted", file=sys.stderr)
        return 130
    except (PolyformerError, FileNotFoundError, ValueError) as e:
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"polyformer: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

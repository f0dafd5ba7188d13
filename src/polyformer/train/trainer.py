"""Training loop v1: one loop for every task and model.

Per step: learning rate from the schedule, forward (optionally under bf16 autocast), backward,
gradient clipping by global norm, AdamW step. Every ``log_interval`` steps the train loss and
throughput go to ``metrics.jsonl``; every ``eval_interval`` steps (and at the end) the task's
evaluation too. Checkpoints (model + tokenizer + optimizer/RNG state) are written atomically every
``ckpt_interval`` steps and at the end; with ``resume`` a run continues from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import BaseConfig, check, check_choice, check_positive_int
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_bytes, atomic_write_json, read_json
from ..registry import build_model, get_config
from ..runtime import retain_freed_memory
from .optim import SCHEDULES, build_optimizer, lr_at
from .tasks import make_task


@dataclass
class TrainConfig(BaseConfig):
    model: str = "transformer-tiny"
    model_overrides: dict = field(default_factory=dict)
    task: str = "reverse"
    data: dict = field(default_factory=dict)
    out_dir: str = "runs/default"
    max_steps: int = 1000
    batch_size: int = 32
    max_tokens: int = 0  # seq2seq: batch by token budget instead of batch_size when > 0
    lr: float = 1e-3
    min_lr: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0
    fused_optimizer: bool = False  # torch's fused AdamW kernel (about 4% faster per step on a small LM)
    eval_interval: int = 250
    eval_iters: int = 0  # LM: 0 = the full validation split
    eval: dict = field(default_factory=dict)  # seq2seq: num_beams, length_penalty, max_examples, bleu
    ckpt_interval: int = 0  # 0 = only at the end
    log_interval: int = 10
    seed: int = 1337
    dtype: str = "float32"  # or 'bfloat16' (autocast)
    compile: bool = False
    threads: int = 0  # 0 = torch's default
    retain_memory: bool = True  # keep freed activations in the process (faster CPU steps; polyformer.runtime)
    max_time: float = 0.0  # seconds; 0 = no limit
    stop_val_loss: float = 0.0  # stop once an evaluation reaches this validation loss
    stop_accuracy: float = 0.0  # stop once an evaluation reaches this accuracy (classification, copying)
    resume: bool = True
    progress: bool = True
    # fine-tuning (see polyformer.train.finetune)
    init_from: str = ""  # a checkpoint directory: start from its architecture and weights
    reset_head: bool = False  # with init_from: a fresh head even when the class count is unchanged
    trainable_blocks: int = -1  # k >= 0: freeze all but the last k blocks (and the head); -1 = train all
    layer_decay: float = 1.0  # layer-wise lr decay: block i of L trains at lr * layer_decay^(L + 1 - i)

    def __post_init__(self):
        check_positive_int("max_steps", self.max_steps)
        check_positive_int("batch_size", self.batch_size)
        check(self.lr > 0, "lr", self.lr, "> 0")
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("dtype", self.dtype, ("float32", "bfloat16"))
        check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
        check(self.eval_interval >= 0, "eval_interval", self.eval_interval, ">= 0")
        check(self.grad_clip >= 0, "grad_clip", self.grad_clip, ">= 0 (0 = no clipping)")
        check(0.0 < self.layer_decay <= 1.0, "layer_decay", self.layer_decay, "in (0, 1]")
        check(self.trainable_blocks >= -1, "trainable_blocks", self.trainable_blocks, ">= 0, or -1 for all")
        for f in ("model_overrides", "data", "eval"):
            check(isinstance(getattr(self, f), dict), f, getattr(self, f), "a mapping")


def load_train_config(path: str | os.PathLike | dict | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or take a dict) and apply ``key=value`` overrides (dotted keys reach into
    mappings, e.g. ``model_overrides.n_layers=2``)."""
    import copy

    import yaml

    data: dict[str, Any] = {}
    if isinstance(path, dict):
        data = copy.deepcopy(path)
    elif path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"training config {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"training config {p} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"training config {p} must be a mapping of keys to values")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        target = data
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a mapping")
        target[parts[-1]] = parsed
    return TrainConfig.from_dict(_numbers(data))


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _numbers(obj):
    """YAML 1.1 reads '3e-4' as a string; turn such number-like strings into floats."""
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    if isinstance(obj, str) and _NUMBER.match(obj.strip()):
        return float(obj)
    return obj


# ------------------------------------------------------------------------------------ checkpoints
STATE_NAME = "trainer_state.json"
OPTIM_NAME = "optimizer.safetensors"


def _save_state(out: Path, model, optimizer, task, step: int, cfg: TrainConfig, train_time: float) -> None:
    from safetensors.torch import save

    model.save_pretrained(out, tokenizer=task.tokenizer)
    if hasattr(task, "preprocessor"):  # how inputs were normalised, for prediction later
        atomic_write_json(out / "preprocessor.json", task.preprocessor())
    tensors, meta_state = {}, {}
    for idx, st in optimizer.state_dict()["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.contiguous()
            else:
                meta_state[f"{idx}.{k}"] = v
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = task.gen.get_state()
    atomic_write_bytes(out / OPTIM_NAME, save(tensors))
    groups = [
        {k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
        for g in optimizer.state_dict()["param_groups"]
    ]
    atomic_write_json(
        out / STATE_NAME,
        {
            "step": step,
            "train_config": cfg.to_dict(),
            "param_groups": groups,
            "scalar_state": meta_state,
            "task_state": task.state_dict(),
            "train_time": train_time,
        },
    )


def _load_state(out: Path, model, optimizer, task) -> tuple[int, float]:
    """Restore a run; returns (step, training seconds spent so far)."""
    from safetensors.torch import load_file

    meta = read_json(out / STATE_NAME, "trainer state")
    model.load_weights(out / "model.safetensors")
    tensors = load_file(str(out / OPTIM_NAME))
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("state."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for k, v in meta["scalar_state"].items():
        idx, name = k.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(
            f"optimizer state in {out} does not fit this model's parameter groups ({e}); "
            "the run was made with another config or version: use a new out_dir or resume=false"
        ) from None
    torch.set_rng_state(tensors["rng.torch"])
    task.gen.set_state(tensors["rng.data"])
    task.load_state_dict(meta.get("task_state", {}))
    return int(meta["step"]), float(meta.get("train_time", 0.0))


def _checkpoint_config(directory: Path):
    from ..registry import config_from_dict

    meta = read_json(directory / "config.json", "checkpoint config")
    if not isinstance(meta, dict) or "family" not in meta or "config" not in meta:
        raise CheckpointError(f"init_from: {directory / 'config.json'} is not a polyformer checkpoint config")
    return config_from_dict(meta["family"], meta["config"])


def _check_fits_data(model_cfg, data_overrides: dict, init: Path) -> None:
    """Fine-tuning data must have the input format the checkpoint was trained on (the class count
    and, for ViT, the image size may change)."""
    for key in ("num_channels", "vocab_size"):
        want, got = getattr(model_cfg, key, None), data_overrides.get(key)
        if want is not None and got is not None and want != got:
            raise ConfigError(
                f"init_from {init}: the checkpoint takes {key}={want} but the data has {got}"
                + ("; convert the images (data.channels)" if key == "num_channels" else "")
            )


# ------------------------------------------------------------------------------------ the loop
def train(cfg: TrainConfig, log=print) -> dict:
    """Run training; returns the final metrics (also appended to ``out_dir/metrics.jsonl``)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.retain_memory:
        retain_freed_memory()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    resuming = cfg.resume and (out / STATE_NAME).exists()
    init = Path(cfg.init_from) if cfg.init_from else None
    if init is not None:  # the architecture comes from the checkpoint (the run's own copy on resume)
        model_cfg = _checkpoint_config(out if resuming and (out / "config.json").exists() else init)
        model_cfg = model_cfg.replace(**cfg.model_overrides)
    else:
        model_cfg = get_config(cfg.model, **cfg.model_overrides)
    block = int(cfg.data.get("block_size", model_cfg.max_seq_len))  # LM windows: the model's context by default
    if not 1 <= block <= model_cfg.max_seq_len:
        raise ConfigError(f"data.block_size must be in [1, max_seq_len={model_cfg.max_seq_len}], got {block}")
    data = dict(cfg.data)
    for src in (out, init) if resuming else (init,):  # the exact same vocabulary as the weights
        if src is not None and (src / "tokenizer.json").exists():
            data.setdefault("tokenizer", str(src / "tokenizer.json"))
    task = make_task(cfg.task, data, cfg.batch_size, cfg.max_tokens, cfg.seed, block)
    task_overrides = task.model_overrides()
    if init is not None:
        _check_fits_data(model_cfg, task_overrides, init)
        task_overrides = {k: v for k, v in task_overrides.items() if k == "num_classes" or hasattr(model_cfg, k)}
    model_cfg = model_cfg.replace(**{**task_overrides, **cfg.model_overrides})
    model = build_model(model_cfg)
    model.tokenizer = task.tokenizer
    if init is not None and not resuming:
        from .finetune import load_for_finetuning, replace_head

        load_for_finetuning(model, init, log)
        if cfg.reset_head:
            replace_head(model, model_cfg.num_classes)
            log("init_from: head re-initialised (reset_head=true)")
    if cfg.trainable_blocks >= 0:
        from .finetune import freeze_all_but_last

        n_train = freeze_all_but_last(model, cfg.trainable_blocks)
        log(f"training the last {cfg.trainable_blocks} blocks and the head: {n_train / 1e6:.3f}M parameters")
    optimizer = build_optimizer(
        model,
        cfg.lr,
        cfg.weight_decay,
        (cfg.beta1, cfg.beta2),
        cfg.eps,
        fused=cfg.fused_optimizer or None,
        layer_decay=cfg.layer_decay,
    )
    out.mkdir(parents=True, exist_ok=True)
    step, time_offset = 0, 0.0  # time_offset: training seconds spent before a resume
    if resuming:
        step, time_offset = _load_state(out, model, optimizer, task)
        log(f"resumed from {out} at step {step}")
    atomic_write_json(out / "train_config.json", cfg.to_dict())
    fwd_model = torch.compile(model) if cfg.compile else model
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if cfg.dtype == "bfloat16" else contextlib.nullcontext()
    metrics_path = out / "metrics.jsonl"
    eval_kwargs = {"eval_iters": cfg.eval_iters, **cfg.eval}
    n_params = model.num_parameters()
    log(f"model {cfg.model}: {n_params / 1e6:.2f}M parameters; task {cfg.task}; {cfg.max_steps} steps -> {out}")

    def record(entry: dict) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    eval_seconds = 0.0

    def evaluate(at_step: int) -> dict:
        nonlocal eval_seconds
        t0 = time.perf_counter()
        model.eval()
        with autocast:
            m = task.evaluate(model, **eval_kwargs)
        model.train()
        eval_seconds += time.perf_counter() - t0
        now = time.perf_counter() - t_start
        # train_time: wall-clock spent training so far (across resumes), evaluations excluded
        m = {"step": at_step, "time": now, "train_time": time_offset + now - eval_seconds, **m}
        record({"kind": "eval", **m})
        return m

    t_start = time.perf_counter()
    last_eval: dict = {}
    model.train()
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not cfg.progress, dynamic_ncols=True, desc="train")
    tokens, t_log = 0, time.perf_counter()
    stop_reason = "max_steps"
    if step >= cfg.max_steps:  # a finished run: report its final evaluation again
        last_eval = evaluate(step)

    def checkpoint() -> None:
        _save_state(out, model, optimizer, task, step, cfg, time_offset + time.perf_counter() - t_start - eval_seconds)

    def snapshot():
        """RNG and data position at a step boundary, so an interrupted run can be saved exactly."""
        return torch.get_rng_state(), task.gen.get_state(), task.state_dict()

    boundary, updating = snapshot(), False
    try:
        while step < cfg.max_steps:
            lr = lr_at(step, cfg.schedule, cfg.lr, cfg.warmup_steps, cfg.max_steps, cfg.min_lr, model_cfg.d_model)
            for g in optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            batch = task.train_batch()
            with autocast:
                loss = task.loss(fwd_model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr or check the data")
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            updating = True
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            boundary, updating = snapshot(), False
            tokens += task.num_tokens(batch)
            bar.update(1)
            if step % cfg.log_interval == 0:
                dt = time.perf_counter() - t_log
                entry = {
                    "kind": "train",
                    "step": step,
                    "loss": loss.item(),
                    "lr": lr,
                    "tokens_per_s": tokens / dt,
                    "time": time.perf_counter() - t_start,
                }
                record(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3f}", lr=f"{lr:.1e}")
                tokens, t_log = 0, time.perf_counter()
            done = step >= cfg.max_steps
            if cfg.max_time and time.perf_counter() - t_start > cfg.max_time:
                done, stop_reason = True, "max_time"
            saved = False
            if (cfg.ckpt_interval and step % cfg.ckpt_interval == 0) or done:
                # save before evaluating, so a failing evaluation never costs training progress
                checkpoint()
                saved = True
            if (cfg.eval_interval and step % cfg.eval_interval == 0) or done:
                last_eval = evaluate(step)
                bar.write(
                    f"step {step}: "
                    + ", ".join(
                        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in last_eval.items()
                        if k not in ("step", "bleu_signature")
                    )
                )
                reached_loss = cfg.stop_val_loss and last_eval.get("val_loss", math.inf) <= cfg.stop_val_loss
                reached_acc = cfg.stop_accuracy and last_eval.get("accuracy", -math.inf) >= cfg.stop_accuracy
                if reached_loss or reached_acc:
                    done, stop_reason = True, "stop_val_loss" if reached_loss else "stop_accuracy"
                    if not saved:
                        checkpoint()
            if done:
                break
    except KeyboardInterrupt:
        bar.close()
        if not updating:  # parameters and optimizer are consistent with `step`: save them
            optimizer.zero_grad(set_to_none=True)
            torch.set_rng_state(boundary[0])
            task.gen.set_state(boundary[1])
            task.load_state_dict(boundary[2])
            checkpoint()
            log(f"interrupted: checkpoint saved at step {step} in {out}; run the same command again to resume")
        raise
    bar.close()
    result = {
        "step": step,
        "stop_reason": stop_reason,
        "wall_seconds": time.perf_counter() - t_start,
        "eval_seconds": eval_seconds,
        "parameters": n_params,
        **{k: v for k, v in last_eval.items() if k != "step"},
    }
    record({"kind": "final", **result})
    return result | {"model": model, "task": task}

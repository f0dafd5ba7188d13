"""Training tasks: what to feed a model, how to score it. One class per kind of data.

* :class:`LMTask` - next-token prediction on one text file (character tokenizer by default).
* :class:`Seq2SeqTask` - source -> target pairs: synthetic digit tasks or parallel text files
  (e.g. Multi30k) with a BPE tokenizer trained on the training side.
* :class:`SelectiveCopyTask` - the Mamba paper's selective copying, generated on the fly.
* :class:`ImageTask` - image classification.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from ..data.text import ParallelData, TokenStream, pad_batch, read_lines, read_text
from ..data.tokenizers import BPETokenizer, CharTokenizer
from ..errors import ConfigError
from ..tasks.synthetic import ALPHABET, SEQ2SEQ_TASKS, make_pairs


def _need(data: dict, key: str, task: str):
    if key not in data:
        raise ConfigError(f"task '{task}' needs data.{key} in the training config")
    return data[key]


class LMTask:
    """Next-token prediction on one text file; ``data``: path, train_fraction (0.9), block_size
    (window length; default the model's max_seq_len)."""

    kind = "lm"

    def __init__(self, data: dict, batch_size: int, seed: int, block_size: int):
        path = _need(data, "path", "char_lm")
        text = read_text(path)
        self.tokenizer = CharTokenizer.from_text(text, specials=())
        ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        self.stream = TokenStream(ids, float(data.get("train_fraction", 0.9)))
        self.batch_size, self.block = batch_size, block_size
        self.gen = torch.Generator().manual_seed(seed)

    def model_overrides(self) -> dict:
        return {"vocab_size": self.tokenizer.vocab_size, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}

    def state_dict(self) -> dict:
        return {}

    def num_tokens(self, batch) -> int:
        return batch["y"].numel()

    def load_state_dict(self, state: dict) -> None:
        pass

    def train_batch(self) -> dict:
        x, y = self.stream.random_batch("train", self.batch_size, self.block, self.gen)
        return {"x": x, "y": y}

    def loss(self, model, batch):
        return model(batch["x"], labels=batch["y"], shift_labels=False).loss

    @torch.no_grad()
    def evaluate(self, model, eval_iters: int = 0, **_) -> dict:
        """Mean next-token loss on the validation split: every token (eval_iters=0) or random windows."""
        total, count = 0.0, 0
        if eval_iters:
            g = torch.Generator().manual_seed(1234)
            for _ in range(eval_iters):
                x, y = self.stream.random_batch("val", self.batch_size, self.block, g)
                total += model(x, labels=y, shift_labels=False).loss.item() * y.numel()
                count += y.numel()
        else:
            for x, y in self.stream.full_windows("val", self.block, 256):
                logits = model(x).logits
                total += F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum"
                ).item()
                count += y.numel()
        return {"val_loss": total / count}


def _stage_steps(value, task: str) -> list[int]:
    """``stage_steps`` of a length curriculum: one count for every stage, or a list (one per stage,
    the last repeated)."""
    steps = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        steps = [int(s) for s in steps]
    except (TypeError, ValueError):
        steps = []
    if not steps or min(steps) < 1:
        raise ConfigError(f"{task}: stage_steps must be a positive integer or a list of them, got {value!r}")
    return steps


def curriculum_length(batches: int, start: int, final: int, stage_steps: list[int]) -> int:
    """Length after ``batches`` training batches of a curriculum that starts at ``start`` and doubles
    (up to ``final``) after stage_steps[0] batches, then stage_steps[1], ... (the last repeated)."""
    length, stage = start, 0
    while length < final:
        n = stage_steps[min(stage, len(stage_steps) - 1)]
        if batches < n:
            break
        batches -= n
        length, stage = min(final, 2 * length), stage + 1
    return length


class _EpochQueue:
    """Epoch-wise data order: ``_queue`` holds the rest of the current epoch's batches (lists of
    example indices); saved with checkpoints so a resumed run sees exactly the same batches."""

    _queue: list
    epoch: int

    def state_dict(self) -> dict:
        return {"queue": list(self._queue), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self._queue = [list(b) for b in state.get("queue", [])]
        self.epoch = int(state.get("epoch", 0))


class Seq2SeqTask(_EpochQueue):
    kind = "seq2seq"

    def __init__(self, task: str, data: dict, batch_size: int, max_tokens: int, seed: int):
        self.task = task
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.gen = torch.Generator().manual_seed(seed)
        if task in SEQ2SEQ_TASKS:
            n_train, n_val = int(data.get("n_train", 20000)), int(data.get("n_val", 1000))
            lo, hi = int(data.get("min_len", 1)), int(data.get("max_len", 12))
            train = make_pairs(task, n_train, seed=seed, min_len=lo, max_len=hi)
            val = make_pairs(task, n_val, seed=seed + 10_000, min_len=lo, max_len=hi)
            self.tokenizer = CharTokenizer(ALPHABET)
        else:  # translation from parallel text files
            train = list(zip(read_lines(_need(data, "src_train", task)), read_lines(_need(data, "tgt_train", task))))
            val = list(zip(read_lines(_need(data, "src_val", task)), read_lines(_need(data, "tgt_val", task))))
            if "tokenizer" in data:
                from ..data.tokenizers import load_tokenizer

                self.tokenizer = load_tokenizer(data["tokenizer"])
            else:
                texts = [s for s, _ in train] + [t for _, t in train]
                self.tokenizer = BPETokenizer.train(
                    texts, vocab_size=int(data.get("vocab_size", 8000)), lowercase=bool(data.get("lowercase", False))
                )
        tok = self.tokenizer
        self.val_text = val
        enc = tok.encode_batch
        self.train = ParallelData(
            list(zip(enc([s for s, _ in train]), enc([t for _, t in train]))), tok.bos_id, tok.eos_id, tok.pad_id
        )
        self.val = ParallelData(
            list(zip(enc([s for s, _ in val]), enc([t for _, t in val]))), tok.bos_id, tok.eos_id, tok.pad_id
        )
        self._queue: list = []
        self.epoch = 0

    def model_overrides(self) -> dict:
        t = self.tokenizer
        return {
            "vocab_size": t.vocab_size,
            "pad_token_id": t.pad_id,
            "bos_token_id": t.bos_id,
            "eos_token_id": t.eos_id,
        }

    def num_tokens(self, batch) -> int:
        """Real (non-padding) source + target tokens in a batch."""
        pad = self.tokenizer.pad_id
        return int((batch["src"] != pad).sum() + (batch["labels"] != pad).sum())

    def train_batch(self) -> dict:
        if not self._queue:
            if self.max_tokens:
                self._queue = self.train.epoch_batches(self.max_tokens, self.gen)
            else:
                perm = torch.randperm(len(self.train), generator=self.gen).tolist()
                self._queue = [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
            self.epoch += 1
        return self.train.collate(self._queue.pop())

    def loss(self, model, batch):
        return model(batch["src"], batch["tgt"], labels=batch["labels"]).loss

    @torch.no_grad()
    def evaluate(
        self,
        model,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        max_examples: int = 0,
        bleu: bool = False,
        batch_size: int = 128,
        **_,
    ) -> dict[str, Any]:
        pad = self.tokenizer.pad_id
        total, count = 0.0, 0
        for b in self.val.epoch_batches(4096, torch.Generator().manual_seed(0), shuffle=False):
            batch = self.val.collate(b)
            logits = model(batch["src"], batch["tgt"]).logits
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                batch["labels"].reshape(-1),
                ignore_index=pad,
                reduction="sum",
            ).item()
            count += int((batch["labels"] != pad).sum())
        out: dict[str, Any] = {"val_loss": total / count, "val_ppl": math.exp(min(total / count, 50))}
        n = len(self.val) if not max_examples else min(max_examples, len(self.val))
        t0 = time.perf_counter()
        hyps = self.translate_ids(
            [self.val.pairs[i][0] for i in range(n)], model, num_beams, length_penalty, batch_size
        )
        refs = [self.val_text[i][1] for i in range(n)]
        if self.task in SEQ2SEQ_TASKS:
            out["exact_match"] = sum(h == r for h, r in zip(hyps, refs)) / n
        if bleu:
            import sacrebleu

            metric = sacrebleu.BLEU(lowercase=True)
            out["bleu"] = metric.corpus_score(hyps, [refs]).score
            out["bleu_signature"] = str(metric.get_signature())
        out["decode_seconds"] = time.perf_counter() - t0
        self.last_hypotheses = list(zip([self.val_text[i][0] for i in range(n)], refs, hyps))
        return out

    def translate_ids(self, srcs: list[list[int]], model, num_beams=1, length_penalty=1.0, batch_size=128):
        order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
        result: list[str] = [""] * len(srcs)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            src = pad_batch([srcs[j] for j in idx], self.tokenizer.pad_id)
            max_new = min(model.config.max_seq_len - 1, int(src.shape[1] * 1.5) + 10)
            out = model.generate(src, max_new, num_beams=num_beams, length_penalty=length_penalty)
            for j, row in zip(idx, out.tolist()):
                if self.tokenizer.eos_id in row:
                    row = row[: row.index(self.tokenizer.eos_id)]
                result[j] = self.tokenizer.decode(row)
        return result


class ImageTask(_EpochQueue):
    """Image classification on an in-memory dataset: MNIST, CIFAR batch files, an image folder, or
    scikit-learn's 8x8 digits. ``data``: dataset, path, and optionally crop_padding, flip, mean, std,
    val_fraction (for datasets without a test split)."""

    kind = "image"

    def __init__(self, data: dict, batch_size: int, seed: int):
        from ..data import images as im

        name = data.get("dataset")
        self.tokenizer = None
        self.class_names: list[str] | None = None
        if name == "mnist":
            folder = _need(data, "path", "image_classification")
            train, test = im.load_mnist(folder, "train"), im.load_mnist(folder, "test")
        elif name == "cifar":
            train_files = _need(data, "train_files", "image_classification")
            test_files = _need(data, "test_files", "image_classification")
            train = tuple(torch.cat(t) for t in zip(*(im.load_cifar_batch(f) for f in train_files)))
            test = tuple(torch.cat(t) for t in zip(*(im.load_cifar_batch(f) for f in test_files)))
        elif name in ("folder", "digits"):
            if name == "folder":
                x, y, _ = im.load_image_folder(
                    _need(data, "path", "image_classification"), int(data.get("channels", 3)), data.get("size")
                )
            else:
                x, y = im.load_digits()
            perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
            n_val = max(1, int(len(y) * float(data.get("val_fraction", 0.2))))
            train, test = (x[perm[n_val:]], y[perm[n_val:]]), (x[perm[:n_val]], y[perm[:n_val]])
        else:
            raise ConfigError(f"data.dataset must be mnist, cifar, folder or digits, got {name!r}")
        mean, std = data.get("mean"), data.get("std")
        self.train, self.test = im.ImageData(*train, mean, std), im.ImageData(*test, mean, std)
        self.num_classes = int(max(train[1].max(), test[1].max())) + 1
        self.crop, self.flip = int(data.get("crop_padding", 0)), bool(data.get("flip", False))
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self._queue: list = []
        self.epoch = 0

    def model_overrides(self) -> dict:
        x = self.train.images
        return {"num_classes": self.num_classes, "num_channels": x.shape[1], "image_size": x.shape[-1]}

    def preprocessor(self) -> dict:
        x = self.train.images
        return {
            "image_size": x.shape[-1],
            "num_channels": x.shape[1],
            "mean": self.train.mean.flatten().tolist(),
            "std": self.train.std.flatten().tolist(),
            "class_names": self.class_names,
        }

    def num_tokens(self, batch) -> int:
        return batch["x"].shape[0]  # images

    def train_batch(self) -> dict:
        if not self._queue:
            perm = torch.randperm(len(self.train), generator=self.gen).tolist()
            self._queue = [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)][::-1]
            self.epoch += 1
        x, y = self.train.batch(self._queue.pop(), self.crop, self.flip, self.gen)
        return {"x": x, "y": y}

    def loss(self, model, batch):
        return model(batch["x"], labels=batch["y"]).loss

    @torch.no_grad()
    def evaluate(self, model, batch_size: int = 500, **_) -> dict:
        correct, total, loss = 0, 0, 0.0
        for i in range(0, len(self.test), batch_size):
            x, y = self.test.batch(list(range(i, min(i + batch_size, len(self.test)))))
            logits = model(x).logits
            loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
            total += len(y)
        return {"val_loss": loss / total, "accuracy": correct / total, "epoch": self.epoch}


class SelectiveCopyTask:
    """Selective copying (``tasks/selective_copy.py``): fresh random batches for training, a fixed
    seeded set for evaluation. ``data``: length (512), n_data (16), vocab_size (16), n_val (512).

    Optional length curriculum: ``start_length`` (default: ``length``, no curriculum) and
    ``stage_steps`` (500, or a list with one count per stage, the last repeated): training examples
    have start_length positions for the first stage, twice as many for the next, and so on up to
    ``length``. Evaluation always uses ``length``."""

    kind = "lm"

    def __init__(self, data: dict, batch_size: int, seed: int):
        from ..tasks.selective_copy import selective_copy_batch

        self.length = int(data.get("length", 512))
        self.n_data = int(data.get("n_data", 16))
        self.vocab = int(data.get("vocab_size", 16))
        self.start_length = int(data.get("start_length", self.length))
        self.stage_steps = _stage_steps(data.get("stage_steps", 500), "selective_copy")
        if not 0 < self.start_length <= self.length:
            raise ConfigError(
                f"selective_copy: start_length must be in 1..length={self.length}, got {self.start_length}"
            )
        try:
            selective_copy_batch(1, self.length, self.n_data, self.vocab)
            selective_copy_batch(1, self.start_length, self.n_data, self.vocab)
        except ValueError as e:
            raise ConfigError(f"selective_copy: {e}") from None
        self.batches = 0  # training batches drawn so far (the curriculum's clock)
        self.batch_size = batch_size
        self.tokenizer = None
        self.gen = torch.Generator().manual_seed(seed)
        self.val = selective_copy_batch(
            int(data.get("n_val", 512)), self.length, self.n_data, self.vocab, torch.Generator().manual_seed(seed + 1)
        )

    def model_overrides(self) -> dict:
        return {"vocab_size": self.vocab}

    def state_dict(self) -> dict:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        self.batches = int(state.get("batches", 0))

    def num_tokens(self, batch) -> int:
        return batch["x"].numel()

    def train_length(self) -> int:
        """Positions per training example now (the curriculum's current stage)."""
        return curriculum_length(self.batches, self.start_length, self.length, self.stage_steps)

    def train_batch(self) -> dict:
        from ..tasks.selective_copy import selective_copy_batch

        length = self.train_length()
        self.batches += 1
        x, y = selective_copy_batch(self.batch_size, length, self.n_data, self.vocab, self.gen)
        return {"x": x, "y": y}

    def loss(self, model, batch):
        return model(batch["x"], labels=batch["y"]).loss

    @torch.no_grad()
    def evaluate(self, model, **_) -> dict:
        from ..tasks.selective_copy import answer_accuracy

        x, y = self.val
        correct = total = 0
        loss = 0.0
        for i in range(0, len(x), self.batch_size):
            out = model(x[i : i + self.batch_size], labels=y[i : i + self.batch_size])
            c, t = answer_accuracy(out.logits, y[i : i + self.batch_size])
            correct, total = correct + c, total + t
            loss += F.cross_entropy(
                out.logits[:, :-1].reshape(-1, out.logits.shape[-1]).float(),
                y[i : i + self.batch_size, 1:].reshape(-1),
                ignore_index=-100,
                reduction="sum",
            ).item()
        return {"val_loss": loss / total, "accuracy": correct / total}


class AssociativeRecallTask(_EpochQueue):
    """Associative recall (``tasks/associative_recall.py``). ``data``: vocab_size (30), seq_len (1024),
    n_train (4000), n_test (500). Training scores every position; evaluation the recalled value.

    Optional length curriculum, as for selective copying: ``start_length`` (default: ``seq_len``) and
    ``stage_steps`` (500, or a list with one count per stage, the last repeated): the training set is
    drawn at start_length key-value tokens for the first stage, then at twice that, and so on up to
    ``seq_len`` (n_train examples per length, the same seed). The test set is always at ``seq_len``."""

    kind = "lm"

    def __init__(self, data: dict, batch_size: int, seed: int):
        from ..tasks.associative_recall import make_examples

        self.vocab = int(data.get("vocab_size", 30))
        self.seq_len = int(data.get("seq_len", 1024))
        self.n_train = int(data.get("n_train", 4000))
        self.start_length = int(data.get("start_length", self.seq_len))
        self.stage_steps = _stage_steps(data.get("stage_steps", 500), "associative_recall")
        if not 2 <= self.start_length <= self.seq_len:
            raise ConfigError(
                f"associative_recall: start_length must be in 2..seq_len={self.seq_len}, got {self.start_length}"
            )
        self.seed = seed
        try:
            self.test_x, _, self.test_y = make_examples(
                int(data.get("n_test", 500)), self.seq_len, self.vocab, seed + 1
            )
            self._load_stage(self.start_length)
        except ValueError as e:
            raise ConfigError(f"associative_recall: {e}") from None
        self.batch_size, self.tokenizer = batch_size, None
        self.gen = torch.Generator().manual_seed(seed)
        self._queue, self.epoch, self.batches = [], 0, 0

    def _load_stage(self, length: int) -> None:
        from ..tasks.associative_recall import make_examples

        self.x, self.y, _ = make_examples(self.n_train, length, self.vocab, self.seed)
        self.length = length

    def train_length(self) -> int:
        """Key-value tokens per training example now (the curriculum's current stage)."""
        return curriculum_length(self.batches, self.start_length, self.seq_len, self.stage_steps)

    def state_dict(self) -> dict:
        return super().state_dict() | {"batches": self.batches, "length": self.length}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.batches = int(state.get("batches", 0))
        length = int(state.get("length", self.seq_len))  # the training set the saved queue refers to
        if length != self.length:
            self._load_stage(length)

    def model_overrides(self) -> dict:
        return {"vocab_size": self.vocab}

    def num_tokens(self, batch) -> int:
        return batch["x"].numel()

    def train_batch(self) -> dict:
        length = self.train_length()
        if length != self.length:  # next stage: a new training set, a new epoch order
            self._load_stage(length)
            self._queue = []
        self.batches += 1
        if not self._queue:
            perm = torch.randperm(len(self.x), generator=self.gen).tolist()
            self._queue = [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)][::-1]
            self.epoch += 1
        idx = self._queue.pop()
        return {"x": self.x[idx], "y": self.y[idx]}

    def loss(self, model, batch):
        return model(batch["x"], labels=batch["y"], shift_labels=False).loss

    @torch.no_grad()
    def evaluate(self, model, **_) -> dict:
        correct, loss = 0, 0.0
        for i in range(0, len(self.test_x), self.batch_size):
            logits = model(self.test_x[i : i + self.batch_size]).logits[:, -1].float()
            target = self.test_y[i : i + self.batch_size, -1]
            correct += int((logits.argmax(-1) == target).sum())
            loss += F.cross_entropy(logits, target, reduction="sum").item()
        n = len(self.test_x)
        return {"val_loss": loss / n, "accuracy": correct / n, "epoch": self.epoch}


class AudioTask(_EpochQueue):
    """Spoken-digit classification from WAV files named ``{digit}_{speaker}_{take}.wav`` (the free
    spoken digit dataset; takes 0-4 are the test set). ``data``: path, sample_rate (8000), max_len
    (samples kept per clip, default 8000), features ('waveform' or 'log_mel')."""

    kind = "audio"

    def __init__(self, data: dict, batch_size: int, seed: int, multiple: int = 1):
        from ..data import audio

        path = _need(data, "path", "audio_classification")
        rate, max_len = int(data.get("sample_rate", 8000)), int(data.get("max_len", 8000))
        self.features = data.get("features", "waveform")
        if self.features not in ("waveform", "log_mel"):
            raise ConfigError(f"data.features must be 'waveform' or 'log_mel', got {self.features!r}")
        self.rate = rate
        self.train = audio.load_wav_folder(path, rate, max_len, "train")
        self.test = audio.load_wav_folder(path, rate, max_len, "test")
        self.multiple = multiple
        self.num_classes = int(max(self.train[1].max(), self.test[1].max())) + 1
        self.batch_size, self.tokenizer = batch_size, None
        self.gen = torch.Generator().manual_seed(seed)
        self._queue, self.epoch = [], 0

    def model_overrides(self) -> dict:
        if self.features == "log_mel":
            return {"num_classes": self.num_classes, "input_dim": 40, "patch_size": 1}
        return {"num_classes": self.num_classes, "input_dim": 1}

    def num_tokens(self, batch) -> int:
        return batch["x"].shape[0]

    def _batch(self, waves, labels, idx):
        from ..data import audio

        x, mask = audio.pad_waves([waves[i] for i in idx], self.multiple)
        if self.features == "log_mel":
            x = audio.log_mel(x, self.rate)
            frames = x.shape[1]
            mask = mask[:, ::80][:, :frames]
            mask = F.pad(mask, (0, frames - mask.shape[1]), value=0.0)
        return {"x": x, "m": mask, "y": labels[idx]}

    def train_batch(self) -> dict:
        if not self._queue:
            perm = torch.randperm(len(self.train[1]), generator=self.gen).tolist()
            self._queue = [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)][::-1]
            self.epoch += 1
        return self._batch(*self.train, self._queue.pop())

    def loss(self, model, batch):
        return model(batch["x"], labels=batch["y"], attention_mask=batch["m"]).loss

    @torch.no_grad()
    def evaluate(self, model, **_) -> dict:
        correct, loss = 0, 0.0
        n = len(self.test[1])
        for i in range(0, n, self.batch_size):
            b = self._batch(*self.test, list(range(i, min(n, i + self.batch_size))))
            logits = model(b["x"], attention_mask=b["m"]).logits.float()
            correct += int((logits.argmax(-1) == b["y"]).sum())
            loss += F.cross_entropy(logits, b["y"], reduction="sum").item()
        return {"val_loss": loss / n, "accuracy": correct / n, "epoch": self.epoch}


def make_task(task: str, data: dict, batch_size: int, max_tokens: int, seed: int, block_size: int):
    if task == "char_lm":
        return LMTask(data, batch_size, seed, block_size)
    if task in SEQ2SEQ_TASKS or task == "translation":
        return Seq2SeqTask(task, data, batch_size, max_tokens, seed)
    if task == "image_classification":
        return ImageTask(data, batch_size, seed)
    if task == "selective_copy":
        return SelectiveCopyTask(data, batch_size, seed)
    if task == "associative_recall":
        return AssociativeRecallTask(data, batch_size, seed)
    if task == "audio_classification":
        return AudioTask(data, batch_size, seed, int(data.get("pad_multiple", 8)))
    raise ConfigError(
        f"unknown task '{task}': choose from char_lm, translation, image_classification, selective_copy, "
        "associative_recall, audio_classification, "
        f"{', '.join(sorted(SEQ2SEQ_TASKS))}"
    )

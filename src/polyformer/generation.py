"""Decoding: greedy, temperature / top-k / top-p sampling, and beam search, all on a KV cache.

Sampling: p = softmax(logits / T); top-k keeps the k largest logits; top-p (nucleus, Holtzman et
al. 2020) keeps the smallest set of tokens whose probability mass reaches p (always >= 1 token).

Beam search (as in fairseq): each step expands the B*K live hypotheses, keeps the 2K best
candidates per sentence by summed log-probability, moves candidates that end in EOS and rank in the
top K to the finished list with normalised score  sum(log p) / len ** length_penalty, and
continues with the best K that do not end. A sentence is done once it has K finished hypotheses
(so K = 1 is exactly greedy decoding); at the length limit the live hypotheses are finished too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import DataError, SequenceTooLongError


def _check_sampling(temperature, top_k, top_p) -> None:
    if not temperature > 0:
        raise DataError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise DataError(f"top_k must be a positive integer, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise DataError(f"top_p must be in (0, 1], got {top_p}")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus top-p set to -inf. logits: [N, V]."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass *before* it already reaches top_p (keeps at least one token)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, idx, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits [N, V] -> token ids [N]."""
    if not do_sample:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def lm_generate(
    model,
    input_ids,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    attention_mask=None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Continue ``input_ids`` [B, T] by up to ``max_new_tokens`` (greedy, or sampling with
    temperature / top-k / top-p); returns [B, T + new]. With ``use_cache`` each new token reuses the
    model's cache (``model.new_cache()``) instead of recomputing the prefix. Causal LMs expose this
    as ``model.generate`` (``LMGenerateMixin``)."""
    cfg = model.config
    _check_sampling(temperature, top_k, top_p)
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise DataError(f"input_ids must be [batch, length>0], got shape {tuple(input_ids.shape)}")
    total = input_ids.shape[1] + max_new_tokens
    if total > cfg.max_seq_len:
        raise SequenceTooLongError(
            f"prompt ({input_ids.shape[1]}) + max_new_tokens ({max_new_tokens}) = {total} exceeds the "
            f"model's max_seq_len={cfg.max_seq_len}; shorten the prompt or ask for fewer tokens"
        )
    was_training = model.training
    model.eval()
    out = input_ids
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    cache = model.new_cache() if use_cache else None
    step_in, mask = input_ids, attention_mask
    for _ in range(max_new_tokens):
        if use_cache:
            logits = model(step_in, attention_mask=mask, cache=cache).logits[:, -1]
        else:
            full_mask = None
            if attention_mask is not None:
                full_mask = F.pad(attention_mask, (0, out.shape[1] - attention_mask.shape[1]), value=1)
            logits = model(out, attention_mask=full_mask).logits[:, -1]
        tok = next_token(logits, do_sample, temperature, top_k, top_p, generator)
        if eos_token_id is not None:
            tok = torch.where(done, torch.full_like(tok, cfg.pad_token_id), tok)
            done = done | (tok == eos_token_id)
        out = torch.cat([out, tok[:, None]], dim=1)
        step_in, mask = tok[:, None], None
        if eos_token_id is not None and bool(done.all()):
            break
    model.train(was_training)
    return out


def seq2seq_generate(
    model, src_ids, max_new_tokens, num_beams, length_penalty, do_sample, temperature, top_k, top_p, generator
):
    cfg = model.config
    _check_sampling(temperature, top_k, top_p)
    if max_new_tokens + 1 > cfg.max_seq_len:
        max_new_tokens = cfg.max_seq_len - 1
    was_training = model.training
    model.eval()
    try:
        if num_beams > 1:
            if do_sample:
                raise DataError("beam search with sampling is not supported: use num_beams=1 with do_sample")
            return beam_search(model, src_ids, num_beams, max_new_tokens, length_penalty)
        b = src_ids.shape[0]
        cache, memory = model.new_cache(src_ids)
        tok = torch.full((b, 1), cfg.bos_token_id, dtype=torch.long, device=src_ids.device)
        done = torch.zeros(b, dtype=torch.bool, device=src_ids.device)
        outs = []
        for step in range(max_new_tokens):
            logits = model.decode(tok, memory if step == 0 else None, cache.memory_mask, cache=cache)[:, -1]
            nxt = next_token(logits, do_sample, temperature, top_k, top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, cfg.pad_token_id), nxt)
            outs.append(nxt)
            done = done | (nxt == cfg.eos_token_id)
            if bool(done.all()):
                break
            tok = nxt[:, None]
        return torch.stack(outs, 1) if outs else src_ids.new_zeros((b, 0))
    finally:
        model.train(was_training)


def beam_search(model, src_ids, num_beams: int, max_new_tokens: int, length_penalty: float = 1.0):
    cfg = model.config
    b, k = src_ids.shape[0], num_beams
    device = src_ids.device
    cache, memory = model.new_cache(src_ids)
    expand = torch.arange(b, device=device).repeat_interleave(k)
    memory = memory.index_select(0, expand)
    cache.reorder(expand)
    tokens = torch.full((b * k, 1), cfg.bos_token_id, dtype=torch.long, device=device)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    hyps = [[] for _ in range(b * k)]  # generated tokens per live row
    for step in range(max_new_tokens):
        logits = model.decode(tokens[:, -1:], memory if step == 0 else None, cache.memory_mask, cache=cache)
        logp = logits[:, -1].float().log_softmax(-1)  # [b*k, V]
        v = logp.shape[-1]
        cand = (scores.view(b * k, 1) + logp).view(b, k * v)
        top_scores, top_idx = cand.topk(min(2 * k, k * v), dim=-1)
        next_rows, next_tok, next_scores = [], [], []
        last = step == max_new_tokens - 1
        for i in range(b):
            if done[i]:  # keep shapes: carry dummy rows that are never used
                next_rows += [i * k] * k
                next_tok += [cfg.pad_token_id] * k
                next_scores += [float("-inf")] * k
                continue
            live = 0
            for rank, (s, idx) in enumerate(zip(top_scores[i].tolist(), top_idx[i].tolist())):
                beam, tok = divmod(idx, v)
                row = i * k + beam
                if s == float("-inf"):
                    break
                if tok == cfg.eos_token_id:
                    if rank < k:
                        seq = hyps[row] + [tok]
                        finished[i].append((s / len(seq) ** length_penalty, seq))
                else:
                    if live < k:
                        next_rows.append(row)
                        next_tok.append(tok)
                        next_scores.append(s)
                        live += 1
                if len(finished[i]) >= k:
                    break
            if len(finished[i]) >= k:
                done[i] = True
            while live < k:  # pad with dead rows
                next_rows.append(i * k)
                next_tok.append(cfg.pad_token_id)
                next_scores.append(float("-inf"))
                live += 1
            if last and not done[i]:
                for j in range(k):
                    s, row, tok = next_scores[i * k + j], next_rows[i * k + j], next_tok[i * k + j]
                    if s > float("-inf"):
                        seq = hyps[row] + [tok]
                        finished[i].append((s / len(seq) ** length_penalty, seq))
                done[i] = True
        if all(done):
            break
        rows = torch.tensor(next_rows, device=device)
        hyps = [hyps[r] + [t] for r, t in zip(next_rows, next_tok)]
        cache.reorder(rows)
        memory = None
        tokens = torch.tensor(next_tok, device=device).view(b * k, 1)
        scores = torch.tensor(next_scores, device=device).view(b, k)
    best = [max(f, key=lambda x: x[0])[1] if f else [cfg.eos_token_id] for f in finished]
    width = max(len(s) for s in best)
    out = torch.full((b, width), cfg.pad_token_id, dtype=torch.long, device=device)
    for i, s in enumerate(best):
        out[i, : len(s)] = torch.tensor(s, device=device)
    return out

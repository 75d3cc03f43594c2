"""
The GPT of every stage: GPT-2's architecture with attention through
torch.nn.functional.scaled_dot_product_attention, a preallocated KV cache for
batched generation, an optional scalar head (reward and value models), and
GPT-2 weight import/export in Hugging Face format.

References: Radford et al. 2019 (GPT-2); Karpathy's nanoGPT for the layout.
"""

import inspect
import json
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest sequence (learned position embeddings)
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2 has
    scalar_head: bool = False  # add a Linear(n_embd, 1) head: one number per position
    reward_pooling: str = "last"  # a reward model's score: its scalar head at the reply's last token
    #                               ("last") or averaged over the reply's tokens ("mean"); see pool_reward
    lora_rank: int = 0  # > 0: a checkpoint of LoRA adapters of this rank (lora.py); a built GPT is always plain
    lora_alpha: float = 16.0  # LoRA's scale is lora_alpha / lora_rank
    lora_targets: str = "attn"  # the Linear layers with adapters (lora.LORA_TARGETS keys, comma-separated)
    lora_embeddings: bool = False  # LoRA: the token embedding (tied to the output layer) trained too


# ----------------------------------------------------------------------------- layers


class KVCache:
    """Keys and values of every layer, preallocated for the whole generation.

    Preallocating (instead of torch.cat at every step) keeps decoding at one
    write per layer and token, with no reallocation or copy of the past.
    """

    def __init__(self, config, batch_size, max_len):
        self.shape = (config.n_layer, batch_size, config.n_head, max_len, config.n_embd // config.n_head)
        self.k = self.v = None  # allocated at the first update, in the dtype the keys come in (bf16 under autocast)
        self.length = 0  # positions filled so far; advanced once per model call

    def update(self, layer, k, v):
        """Store k, v (B, H, T, D) after the filled part; return all keys and values so far."""
        if self.k is None:
            self.k = torch.zeros(self.shape, device=k.device, dtype=k.dtype)
            self.v = torch.zeros(self.shape, device=v.device, dtype=v.dtype)
        end = self.length + k.size(2)
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def prefers_math_attention(x, T):
    """On a CPU under bf16 autocast, SDPA's fused flash kernel has a slow backward on short
    sequences; its math backend (the matmuls and softmax written out, autograd for the backward)
    made a whole training step 1.3-1.5x faster at 64 and 128 tokens and 0.85x at 256
    (bench.py --only=attention). Elsewhere SDPA's own choice stands, and so does a caller's choice
    made with torch.nn.attention.sdpa_kernel (it switches backends off: these flags are SDPA's own,
    for every device despite the module's name)."""
    callers_choice = not (torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled())
    return (x.device.type == "cpu" and T <= 128 and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
            and not callers_choice)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        B, T, C = x.size()
        # (B, T, 3C) -> three (B, H, T, C/H)
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, L, C/H), L = cached + T
        dropout_p = self.dropout if self.training else 0.0
        with sdpa_kernel(SDPBackend.MATH) if prefers_math_attention(x, T) else nullcontext():
            if attn_mask is None:
                # plain causal attention: SDPA picks the flash kernel on CUDA
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=T > 1)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"; needed to match its weights
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


# ----------------------------------------------------------------------------- model


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying (Press & Wolf 2017)
        self.scalar_head = None

        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer), one per residual add
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.scalar_head:
            self.add_scalar_head()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def add_scalar_head(self):
        """A new scalar head on this body (a reward model made from a language model); init std
        1/sqrt(d_model + 1) as in Ziegler et al.'s lm-human-preferences."""
        self.config.scalar_head = True
        self.scalar_head = nn.Linear(self.config.n_embd, 1).to(self.transformer.wte.weight.device)
        nn.init.normal_(self.scalar_head.weight, std=1 / math.sqrt(self.config.n_embd + 1))
        nn.init.zeros_(self.scalar_head.bias)

    def num_params(self, non_embedding=True):
        """Parameter count; position embeddings excluded by default (they cost no FLOPs).
        The token embedding counts: it is also the output layer's matrix."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def hidden_states(self, idx, attention_mask=None, cache=None, segments=None):
        """Final-LayerNorm hidden states (B, T, n_embd) of token ids idx (B, T).

        attention_mask (B, L): 1 for real tokens, 0 for padding, over the cached
        tokens plus idx (L = cache.length + T). Padding anywhere (e.g. left
        padding of prompts) is then never attended to, and position ids count
        real tokens only. Without it, every token is real and attention is
        plainly causal. segments (B, T), for rows that pack several sequences
        (batching.pack_batch): each sequence's id, so that a token attends only
        inside its own sequence and positions restart at each one.
        """
        B, T = idx.size()
        past = cache.length if cache is not None else 0
        if segments is not None:
            first = torch.arange(T, device=idx.device) * (segments != F.pad(segments, (1, 0), value=-1)[:, :-1])
            pos = torch.arange(T, device=idx.device) - first.cummax(1).values  # (B, T): from each sequence's start
            attn_mask = causal_mask(0, T, None, idx.device) & (segments[:, None, :, None] == segments[:, None, None, :])
        elif attention_mask is None:
            pos = torch.arange(past, past + T, device=idx.device).unsqueeze(0)  # (1, T)
            attn_mask = None if past == 0 or T == 1 else causal_mask(past, T, None, idx.device)
        else:
            assert attention_mask.shape == (B, past + T), "attention_mask must cover cache + new tokens"
            pos = (attention_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]  # (B, T)
            attn_mask = causal_mask(past, T, attention_mask.bool(), idx.device)
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens is longer than block_size {self.config.block_size}")
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for i, block in enumerate(self.transformer.h):
            x = block(x, attn_mask, cache, i)
        if cache is not None:
            cache.length += T
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, attention_mask=None, cache=None, segments=None, logits_at=None):
        """Next-token logits (B, T, vocab); with targets (B, T), also the mean
        cross-entropy over targets != -1. logits_at (B, T) bool: the logits of those positions only,
        (N, vocab) in row-major order: the output layer and its softmax run where a loss reads them
        (SFT: the assistant's tokens), not over the prompts and padding."""
        hidden = self.hidden_states(idx, attention_mask, cache, segments)
        if logits_at is not None:
            hidden = hidden[logits_at]  # (B, T, C) -> (N, C)
        logits = self.lm_head(hidden)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def score(self, idx, attention_mask=None):
        """The scalar head at every position (B, T): value estimates, or a reward model's per-token
        values before pool_reward makes them one reward per row."""
        if self.scalar_head is None:
            raise ValueError("this model has no scalar head (GPTConfig.scalar_head=False)")
        return self.scalar_head(self.hidden_states(idx, attention_mask)).squeeze(-1).float()

    def reward(self, idx, reply_mask):
        """A reward model's score of each row (B,): the scalar head pooled over the reply's tokens
        (reply_mask (B, T), 1 on them) as config.reward_pooling says."""
        return pool_reward(self.score(idx), reply_mask, self.config.reward_pooling)

    # ------------------------------------------------------------------ optimisation

    def configure_optimizer(self, lr, weight_decay, betas, device_type, extra_modules=()):
        """AdamW with weight decay on 2-D weights (matmuls, embeddings) only; biases and
        LayerNorm gains are not decayed (Loshchilov & Hutter; GPT-2 practice). extra_modules
        (e.g. PPO's value model) are optimised together with this model."""
        params = [p for m in (self, *extra_modules) for p in m.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        # the fused kernel (one pass over all tensors; on CPU too, where it beat 'foreach' by ~10% of a
        # small model's step, bench.py), else the multi-tensor 'foreach' one
        if device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters:
            extra = dict(fused=True)
        else:
            extra = dict(foreach=True)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **extra)

    def flops_per_token(self, seq_len=None):
        """Training FLOPs per token: 6N for the matmuls (forward 2N, backward 4N) plus the
        attention scores and weighted sum, 12 * n_layer * n_embd * seq_len (PaLM appendix B)."""
        T = seq_len or self.config.block_size
        return 6 * self.num_params() + 12 * self.config.n_layer * self.config.n_embd * T

    # ------------------------------------------------------------------ GPT-2 weights

    @classmethod
    def from_pretrained(cls, name_or_dir, dropout=0.0):
        """GPT-2 weights in Hugging Face format: 'gpt2', 'gpt2-medium', 'gpt2-large',
        'gpt2-xl', or a local directory with config.json and the weights."""
        try:
            from transformers import GPT2LMHeadModel  # optional dependency, only needed here
        except ImportError:
            raise ImportError("importing GPT-2 weights needs transformers: pip install transformers") from None
        hf = GPT2LMHeadModel.from_pretrained(name_or_dir)
        hc = hf.config
        config = GPTConfig(block_size=hc.n_positions, vocab_size=hc.vocab_size, n_layer=hc.n_layer,
                           n_head=hc.n_head, n_embd=hc.n_embd, dropout=dropout, bias=True)
        model = cls(config)
        model.load_state_dict(hf_to_ours(hf.state_dict()))
        return model

    def export_hf(self, out_dir, safe_serialization=True, eot_id=50256):
        """Write config.json and the weights so that transformers'
        GPT2LMHeadModel.from_pretrained(out_dir) loads this model; eot_id: the tokenizer's
        end-of-text id, GPT-2's bos and eos."""
        c = self.config
        os.makedirs(out_dir, exist_ok=True)
        hf_config = dict(
            architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=c.vocab_size,
            n_positions=c.block_size, n_ctx=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
            n_head=c.n_head, n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5,
            resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, tie_word_embeddings=True,
            bos_token_id=eot_id, eos_token_id=eot_id, initializer_range=0.02,
        )
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(hf_config, f, indent=2)
        state = ours_to_hf(self.state_dict(), c)
        try:
            from safetensors.torch import save_file
        except ImportError:
            safe_serialization = False
        if safe_serialization:
            save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        else:
            torch.save(state, os.path.join(out_dir, "pytorch_model.bin"))


def causal_mask(past, T, key_is_real, device):
    """Boolean attention mask (B or 1, 1, T, past + T): query t (at absolute position
    past + t) sees keys at positions <= its own that are real tokens. A query always
    sees itself, so that no row is fully masked (a pad query would give NaN)."""
    L = past + T
    q_pos = torch.arange(past, L, device=device).view(T, 1)
    k_pos = torch.arange(L, device=device).view(1, L)
    mask = (k_pos <= q_pos).view(1, 1, T, L)
    if key_is_real is not None:
        mask = mask & key_is_real.view(-1, 1, 1, L)
    return mask | (k_pos == q_pos).view(1, 1, T, L)


# Hugging Face's GPT-2 uses Conv1D layers, whose weights are the transpose of nn.Linear's.
_HF_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def hf_to_ours(hf_state):
    state = {}
    for k, v in hf_state.items():
        if k.endswith((".attn.masked_bias", ".attn.bias")):
            continue  # causal-mask buffers of older transformers versions, not weights
        state[k] = v.t().contiguous() if k.endswith(_HF_TRANSPOSED) else v
    state["lm_head.weight"] = state["transformer.wte.weight"]  # tied
    return state


def ours_to_hf(state, config):
    out = {}
    for k, v in state.items():
        if k.startswith(("lm_head.", "scalar_head.")):
            continue  # lm_head is tied to wte; a scalar head has no place in GPT2LMHeadModel
        out[k] = (v.t() if k.endswith(_HF_TRANSPOSED) else v).contiguous().clone()
    if not config.bias:  # GPT-2 always has biases: export ours as zeros
        for i in range(config.n_layer):
            p = f"transformer.h.{i}."
            for name, size in [("ln_1", config.n_embd), ("ln_2", config.n_embd), ("attn.c_attn", 3 * config.n_embd),
                               ("attn.c_proj", config.n_embd), ("mlp.c_fc", 4 * config.n_embd),
                               ("mlp.c_proj", config.n_embd)]:
                out[p + name + ".bias"] = torch.zeros(size)
        out["transformer.ln_f.bias"] = torch.zeros(config.n_embd)
    return out


def resize_vocab(model, vocab_size):
    """Grow the (tied) token embedding to vocab_size rows, e.g. for chat special tokens added after
    GPT-2's vocabulary. New rows start at the mean embedding, so the new tokens begin with
    ordinary logits instead of random ones (Hewitt 2021)."""
    old = model.transformer.wte.weight
    if vocab_size <= old.size(0):
        return
    new = torch.nn.Embedding(vocab_size, old.size(1)).to(old.device, old.dtype)
    with torch.no_grad():
        new.weight[:old.size(0)] = old
        new.weight[old.size(0):] = old.mean(0)
    model.transformer.wte = new
    model.lm_head = nn.Linear(old.size(1), vocab_size, bias=False).to(old.device)
    model.lm_head.weight = new.weight
    model.config.vocab_size = vocab_size


def config_from_dict(d):
    """GPTConfig from a checkpoint's dict (ignores unknown keys from newer versions)."""
    names = {f for f in GPTConfig.__dataclass_fields__}
    return GPTConfig(**{k: v for k, v in d.items() if k in names})


# ----------------------------------------------------------------------------- generation


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, N) new tokens; after a row's stop token, pad_id
    logprobs: torch.Tensor  # (B, N) log-prob of each new token under softmax(logits / T); 0 after the stop
    lengths: torch.Tensor  # (B,) new tokens per row, the stop token included
    stopped: torch.Tensor = field(default=None)  # (B,) True where the row ended on a stop token


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None, vocab_size=None):
    """Sample next tokens from logits (B, V). temperature 0 means greedy.
    Returns the tokens (B,) and their log-probs (B,) under log_softmax(logits / T),
    the distribution PPO recomputes; top-k/top-p only narrow what can be drawn, and so does
    vocab_size (the tokenizer's: the embedding's padding rows are never drawn)."""
    logits = logits.float()
    allowed = logits if vocab_size is None else logits.masked_fill(
        torch.arange(logits.size(-1), device=logits.device) >= vocab_size, float("-inf"))
    if temperature == 0:
        token = allowed.argmax(-1)
        return token, F.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1)
    logits, allowed = logits / temperature, allowed / temperature
    logprobs = F.log_softmax(logits, -1)
    filtered = allowed
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        # nucleus sampling (Holtzman et al.): keep the smallest set of tokens whose mass reaches top_p
        sorted_logits, order = torch.sort(filtered, descending=True, dim=-1)
        sorted_probs = sorted_logits.softmax(-1)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
        filtered = torch.full_like(filtered, float("-inf")).scatter(-1, order, sorted_logits)
    token = torch.multinomial(filtered.softmax(-1), 1, generator=generator).squeeze(-1)
    return token, logprobs.gather(-1, token[:, None]).squeeze(-1)


def left_pad(prompts, pad_id, device):
    """Token-id lists of different lengths -> ids (B, T) and attention mask (B, T), padded on the left
    so that every prompt ends at the same column and generation appends to all rows at once."""
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError("cannot generate from an empty prompt")
        ids[i, T - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, T - len(p):] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None, stop_tokens=(),
             generator=None, pad_id=0, use_cache=True, on_token=None, vocab_size=None):
    """Batched sampling from prompts (lists of token ids, any lengths).

    With use_cache, the prompts are run once (prefill) and each step feeds only the
    newest token, reading past keys and values from the KV cache. use_cache=False
    recomputes the whole sequence at every step (the reference the cache must equal).
    on_token(tokens (B,), done (B,)) is called after each step (for streaming output).
    vocab_size: the tokenizer's vocabulary; ids beyond it (embedding padding) are never drawn.
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device)
    B, T0 = ids.shape
    max_new_tokens = min(max_new_tokens, model.config.block_size - T0)
    if max_new_tokens <= 0:
        raise ValueError(f"prompt of {T0} tokens leaves no room in block_size {model.config.block_size}")
    stop = torch.tensor(sorted(set(stop_tokens)), dtype=torch.long, device=device)
    no_padding = bool(mask.all())
    cache = KVCache(model.config, B, T0 + max_new_tokens) if use_cache else None
    new_tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    new_logprobs = torch.zeros((B, max_new_tokens), device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    step_input = ids
    for t in range(max_new_tokens):
        attn = None if no_padding else mask
        if use_cache:
            logits, _ = model(step_input, attention_mask=attn, cache=cache)
        else:
            logits, _ = model(ids, attention_mask=attn)
        token, logprob = sample_next(logits[:, -1], temperature, top_k, top_p, generator, vocab_size)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        new_tokens[:, t] = token
        new_logprobs[:, t] = torch.where(done, torch.zeros_like(logprob), logprob)
        lengths += (~done).long()
        if on_token is not None:
            on_token(token, done)
        done = done | torch.isin(token, stop)
        if done.all():
            new_tokens, new_logprobs = new_tokens[:, :t + 1], new_logprobs[:, :t + 1]
            break
        ids = torch.cat([ids, token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step_input = token[:, None]
    return Generation(new_tokens, new_logprobs, lengths, done)


def last_real_index(attention_mask):
    """(B, T) mask of real tokens -> (B,) index of the last real token of each row, wherever the
    padding is (left, right or both)."""
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
    return (attention_mask.long() * (positions + 1)).argmax(1)


REWARD_POOLINGS = ("last", "mean")


def pool_reward(values, reply_mask, pooling):
    """Scalar-head values (B, T) -> one reward per row (B,), read from the positions where
    reply_mask (B, T) is 1 (the reply's own tokens; prompt, tool results and padding are 0):
      last: the value at the reply's last token, its end-of-turn token (Ouyang et al. 2022). One
            hidden state must carry the verdict on the whole reply.
      mean: the average over the reply's tokens. Each token's hidden state judges the token it
            reads, so a wrong value copied from nowhere is caught where it stands (a reply that
            contradicts a tool result it just read)."""
    if pooling == "last":
        return values.gather(1, last_real_index(reply_mask)[:, None]).squeeze(1)
    if pooling == "mean":
        mask = reply_mask.to(values.dtype)
        return (values * mask).sum(1) / mask.sum(1).clamp(min=1)
    raise ValueError(f"reward_pooling must be one of {REWARD_POOLINGS}, not {pooling!r}")


def token_logprobs(logits, tokens):
    """log p(tokens) under logits: (B, T, V), (B, T) -> (B, T), computed in float32."""
    return torch.gather(F.log_softmax(logits.float(), -1), -1, tokens.unsqueeze(-1)).squeeze(-1)


def estimate_mfu(flops_per_token, tokens_per_second, peak_flops):
    """Model FLOPs utilisation (PaLM): achieved model FLOP/s over the hardware's peak."""
    return flops_per_token * tokens_per_second / peak_flops

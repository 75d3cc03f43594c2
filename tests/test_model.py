"""model.py against independent references: float64 manual attention, full recomputation."""
import math
from contextlib import nullcontext

import pytest
import torch

from torch.nn.attention import SDPBackend, sdpa_kernel

from model import GPT, GPTConfig, KVCache, estimate_mfu, generate, prefers_math_attention, sample_next, token_logprobs

TINY = dict(block_size=64, vocab_size=97, n_layer=2, n_head=4, n_embd=32)


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **kw})).eval()


def manual_attention(attn, x, mask=None):
    """Textbook softmax(QK^T / sqrt(d) + causal mask) V, the reference for SDPA."""
    B, T, C = x.shape
    H = attn.n_head
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)
    allowed = torch.ones(T, T, dtype=torch.bool).tril() if mask is None else mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    y = scores.softmax(-1) @ v
    return attn.c_proj(y.transpose(1, 2).reshape(B, T, C))


def test_sdpa_attention_equals_manual_float64():
    model = tiny_model()
    attn = model.transformer.h[0].attn
    x = torch.randn(3, 17, 32)
    ours = attn(x)
    reference = manual_attention(attn.double(), x.double())
    assert (ours.double() - reference).abs().max().item() < 1e-5


def test_causality_later_tokens_never_change_earlier_logits():
    model = tiny_model()
    idx = torch.randint(0, 97, (2, 20))
    changed = idx.clone()
    changed[:, 12:] = torch.randint(0, 97, (2, 8))
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.equal(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_left_padding_with_attention_mask_equals_unpadded_rows():
    model = tiny_model()
    rows = [torch.randint(0, 97, (n,)) for n in (9, 4, 6)]
    T = 9
    ids = torch.zeros(3, T, dtype=torch.long)
    mask = torch.zeros(3, T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = r
        mask[i, T - len(r):] = 1
    padded, _ = model(ids, attention_mask=mask)
    assert not torch.isnan(padded).any()
    for i, r in enumerate(rows):
        alone, _ = model(r[None])
        assert torch.allclose(padded[i, T - len(r):], alone[0], atol=1e-5)


def test_loss_is_cross_entropy_and_ignores_minus_one():
    model = tiny_model()
    idx = torch.randint(0, 97, (2, 10))
    targets = torch.randint(0, 97, (2, 10))
    targets[0, :4] = -1
    logits, loss = model(idx, targets)
    keep = targets != -1
    manual = -torch.log_softmax(logits.double(), -1).gather(-1, targets.clamp(min=0)[..., None])[..., 0][keep].mean()
    assert abs(loss.item() - manual.item()) < 1e-5


def test_gpt2_init_scales_residual_projections():
    model = tiny_model(n_layer=8, n_embd=64, vocab_size=2000)
    std = torch.cat([b.attn.c_proj.weight.flatten() for b in model.transformer.h]).std().item()
    assert abs(std - 0.02 / math.sqrt(2 * 8)) < 0.0007
    assert abs(model.transformer.wte.weight.std().item() - 0.02) < 0.001
    assert model.lm_head.weight is model.transformer.wte.weight  # tied


def test_kv_cache_greedy_equals_full_recomputation_batched():
    model = tiny_model()
    prompts = [[5, 6, 7, 8, 9, 10, 11], [3, 4], [20, 21, 22, 23]]
    cached = generate(model, prompts, 25, temperature=0)
    recomputed = generate(model, prompts, 25, temperature=0, use_cache=False)
    assert torch.equal(cached.tokens, recomputed.tokens)
    assert torch.allclose(cached.logprobs, recomputed.logprobs, atol=1e-5)
    for i, p in enumerate(prompts):  # batching and left padding change nothing for a row
        alone = generate(model, [p], 25, temperature=0)
        assert torch.equal(alone.tokens[0], cached.tokens[i])


def test_generated_logprobs_equal_a_plain_forward_pass():
    model = tiny_model()
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9]]
    g = generate(model, prompts, 12, temperature=0.7, generator=torch.Generator().manual_seed(1))
    for i, p in enumerate(prompts):
        full = torch.tensor([p + g.tokens[i].tolist()])
        logits, _ = model(full)
        expected = token_logprobs(logits[:, len(p) - 1:-1] / 0.7, full[:, len(p):])[0]
        assert torch.allclose(g.logprobs[i], expected, atol=1e-5)


def test_kv_cache_chunked_prefill_equals_one_pass():
    model = tiny_model()
    idx = torch.randint(0, 97, (2, 12))
    full, _ = model(idx)
    cache = KVCache(model.config, 2, 12)
    first, _ = model(idx[:, :5], cache=cache)
    second, _ = model(idx[:, 5:], cache=cache)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-5)


def test_sampling_is_seedable_and_filters_work():
    model = tiny_model()
    prompts = [[1, 2], [3, 4, 5]]
    a = generate(model, prompts, 10, temperature=1.0, generator=torch.Generator().manual_seed(7))
    b = generate(model, prompts, 10, temperature=1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.tokens, b.tokens)
    greedy = generate(model, prompts, 10, temperature=0)
    for kw in (dict(top_k=1), dict(top_p=1e-6)):
        narrowed = generate(model, prompts, 10, temperature=1.5, generator=torch.Generator().manual_seed(0), **kw)
        assert torch.equal(narrowed.tokens, greedy.tokens)


def test_top_k_and_top_p_only_draw_allowed_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    tokens, _ = sample_next(logits, 1.0, top_k=2, generator=g)
    assert set(tokens.tolist()) == {0, 1}
    p = torch.softmax(logits[0], -1)  # p0 = 0.64, p0 + p1 = 0.88
    tokens, logprobs = sample_next(logits, 1.0, top_p=0.8, generator=g)
    assert set(tokens.tolist()) == {0, 1}
    assert torch.allclose(logprobs, p.log()[tokens])  # log-probs of the unfiltered distribution


def test_stop_tokens_end_rows_and_pad_after():
    model = tiny_model()
    greedy = generate(model, [[1, 2, 3]], 10, temperature=0)
    stop = greedy.tokens[0, 3].item()  # the 4th generated token becomes a stop token
    first = greedy.tokens[0].tolist().index(stop)
    g = generate(model, [[1, 2, 3], [1, 2, 3]], 10, temperature=0, stop_tokens=[stop], pad_id=0)
    assert g.lengths.tolist() == [first + 1] * 2 and g.stopped.all()
    assert g.tokens.shape[1] == first + 1  # stops early once every row is done


def test_max_new_tokens_clipped_to_block_size():
    model = tiny_model()
    g = generate(model, [[1] * 60], 100, temperature=0)
    assert g.tokens.shape[1] == 4
    with pytest.raises(ValueError):
        generate(model, [[1] * 64], 5)


def test_scalar_head_reads_one_number_per_position_and_ignores_padding():
    model = tiny_model(scalar_head=True)
    row = torch.randint(0, 97, (6,))
    ids = torch.cat([torch.zeros(3, dtype=torch.long), row])[None]
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    values = model.score(ids, attention_mask=mask)
    assert values.shape == (1, 9)
    assert torch.allclose(values[0, 3:], model.score(row[None])[0], atol=1e-5)


def test_flops_and_mfu_formula():
    model = tiny_model()
    c = model.config
    # hand count of the non-embedding-position parameters: wte + per layer (2 LN, qkv, proj, fc, proj) + ln_f
    d = c.n_embd
    per_layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    n = c.vocab_size * d + c.n_layer * per_layer + 2 * d
    assert model.num_params() == n
    assert model.flops_per_token(64) == 6 * n + 12 * c.n_layer * d * 64
    assert estimate_mfu(1e6, 1e3, 1e10) == pytest.approx(0.1)


def test_optimizer_decays_only_matrices():
    model = tiny_model(scalar_head=True)
    opt = model.configure_optimizer(1e-3, 0.1, (0.9, 0.95), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_generation_never_draws_the_embeddings_padding_rows():
    model = tiny_model()  # vocab_size 97: pretend the tokenizer has 90 tokens and 7 rows are padding
    with torch.no_grad():
        model.lm_head.weight[90:] += 5.0  # make the padding rows the likeliest
    for temperature in (0, 1.0):
        g = generate(model, [[1, 2, 3]] * 4, 20, temperature=temperature, vocab_size=90,
                     generator=torch.Generator().manual_seed(0))
        assert g.tokens.max() < 90


def test_math_attention_only_for_short_cpu_bf16_training_and_never_against_a_callers_choice():
    x = torch.zeros(1)
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    with bf16():
        assert prefers_math_attention(x, 64) and prefers_math_attention(x, 128)
        assert not prefers_math_attention(x, 256)
        with torch.no_grad():
            assert not prefers_math_attention(x, 64)  # sampling and evaluation keep SDPA's choice
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            assert not prefers_math_attention(x, 64)
    assert not prefers_math_attention(x, 64)  # float32


def test_math_and_flash_attention_agree_on_loss_and_gradients_in_bf16():
    # the two kernels compute the same softmax attention; in bf16 they round differently, within its 8 bits
    model = tiny_model().train()
    idx = torch.randint(0, TINY["vocab_size"], (3, 64), generator=torch.Generator().manual_seed(1))
    runs = []
    for backend in (None, SDPBackend.FLASH_ATTENTION):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16), (sdpa_kernel(backend) if backend else nullcontext()):
            _, loss = model(idx[:, :-1], targets=idx[:, 1:])
        loss.backward()
        runs.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    (loss_math, grad_math), (loss_flash, grad_flash) = runs
    assert loss_math == pytest.approx(loss_flash, rel=1e-2)
    assert torch.nn.functional.cosine_similarity(grad_math, grad_flash, dim=0) > 0.999


def test_logits_at_gives_the_full_logits_rows_and_the_same_gradients():
    # float64 so that "the same" can be exact up to summation order
    model = tiny_model().double()
    idx = torch.randint(0, TINY["vocab_size"], (3, 20), generator=torch.Generator().manual_seed(2))
    targets = idx.roll(-1, 1).masked_fill(torch.rand(3, 20, generator=torch.Generator().manual_seed(3)) < 0.5, -1)
    at = targets != -1
    full, _ = model(idx)
    part, _ = model(idx, logits_at=at)
    assert part.shape == (int(at.sum()), TINY["vocab_size"]) and torch.allclose(part, full[at], atol=1e-12)
    grads = []
    for logits, t in ((full.view(-1, full.size(-1)), targets.view(-1)), (part, targets[at])):
        model.zero_grad()
        torch.nn.functional.cross_entropy(logits, t, ignore_index=-1, reduction="sum").backward(retain_graph=True)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-10)
    # no predicted token at all: an empty (0, vocab) and a loss of 0, not NaN
    empty, _ = model(idx, logits_at=torch.zeros_like(at))
    assert empty.shape == (0, TINY["vocab_size"])
    assert torch.nn.functional.cross_entropy(empty, targets[:0, 0], reduction="sum").item() == 0

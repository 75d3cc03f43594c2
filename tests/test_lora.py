"""LoRA (lora.py): starts exactly at the base model, trains only the adapters, merges into the same
function, and gives DPO an exact reference with its adapters off."""
import copy

import pytest
import torch

from lora import BaseModelView, LoRALinear, apply_lora, count_trainable, merge_lora, merged_state_dict
from model import GPT, GPTConfig

CONFIG = dict(block_size=32, vocab_size=64, n_layer=2, n_head=2, n_embd=16)


def tiny_gpt(seed=0, scalar_head=False):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**CONFIG, scalar_head=scalar_head))


def train_a_few_steps(model, steps=5, seed=0):
    """AdamW with weight decay, as the stage scripts build it, on random next-token targets (and
    the scalar head's mean, when there is one, so that it gets a gradient too)."""
    g = torch.Generator().manual_seed(seed)
    optimizer = model.configure_optimizer(1e-2, 0.1, (0.9, 0.95), "cpu")
    for _ in range(steps):
        x = torch.randint(0, 64, (4, 17), generator=g)
        _, loss = model(x[:, :-1], x[:, 1:])
        if model.scalar_head is not None:
            loss = loss + model.score(x).mean() ** 2
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("targets", ["attn", "mlp", "attn,mlp"])
def test_with_b_zero_the_lora_model_is_exactly_the_base_model(targets):
    base = tiny_gpt()
    lora = apply_lora(copy.deepcopy(base), rank=4, alpha=8, targets=targets)
    x = torch.randint(0, 64, (3, 20))
    assert torch.equal(lora(x)[0], base(x)[0])
    n_layers = {"attn": 2, "mlp": 2, "attn,mlp": 4}[targets] * CONFIG["n_layer"]
    assert len([m for m in lora.modules() if isinstance(m, LoRALinear)]) == n_layers


def test_training_changes_only_the_adapters_and_the_head_and_merging_keeps_the_function():
    model = apply_lora(tiny_gpt(scalar_head=True), rank=4, alpha=8, targets="attn,mlp")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_a_few_steps(model)
    for name, tensor in model.state_dict().items():  # tensor by tensor
        trains = ".lora_" in name or name.startswith("scalar_head.")
        assert torch.equal(tensor, before[name]) != trains, name
    x = torch.randint(0, 64, (3, 20))
    logits, values = model(x)[0], model.score(x)
    merged = merge_lora(copy.deepcopy(model))
    assert not any(isinstance(m, LoRALinear) for m in merged.modules()) and merged.config.lora_rank == 0
    assert torch.allclose(merged(x)[0], logits, atol=1e-5) and torch.allclose(merged.score(x), values, atol=1e-5)
    plain = GPT(GPTConfig(**CONFIG, scalar_head=True))  # the merged weights load into a plain GPT
    plain.load_state_dict(merged_state_dict(model))
    assert torch.allclose(plain(x)[0], logits, atol=1e-5)


def test_with_embeddings_the_tied_token_embedding_trains_too_and_nothing_else_of_the_base():
    model = apply_lora(tiny_gpt(), rank=2, alpha=2, embeddings=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_a_few_steps(model)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"transformer.wte.weight", "lm_head.weight"} | {k for k in before if ".lora_" in k}
    assert model.lm_head.weight is model.transformer.wte.weight


def test_a_merged_weight_is_w_plus_alpha_over_r_times_b_a():
    layer = LoRALinear(torch.nn.Linear(6, 5), rank=2, alpha=3.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6, dtype=torch.float64)
    W, b, A, B = (t.detach().double() for t in (layer.weight, layer.bias, layer.lora_A, layer.lora_B))
    expected = x @ W.t() + b + 1.5 * (x @ A.t() @ B.t())  # the formula in float64, scale 3 / 2
    assert torch.allclose(layer.double()(x), expected, atol=1e-12)
    assert torch.allclose(layer.merged_weight(), W + 1.5 * B @ A, atol=1e-12)


def test_dpo_reference_with_the_adapters_off_is_the_starting_model():
    start = tiny_gpt(seed=3)
    policy = apply_lora(copy.deepcopy(start), rank=4, alpha=8)
    train_a_few_steps(policy)
    x = torch.randint(0, 64, (3, 20))
    reference = BaseModelView(policy)
    assert (reference(x)[0] - start(x)[0]).abs().max() <= 1e-6
    assert not torch.allclose(policy(x)[0], start(x)[0], atol=1e-3)  # the adapters did learn something
    assert all(m.adapter_on for m in policy.modules() if isinstance(m, LoRALinear))  # switched back on


def test_trainable_parameters_in_gpt2_shapes_by_hand():
    """Rank 8 on the attention projections of GPT-2 124M: per block, c_attn 8 * (768 + 2304) and
    c_proj 8 * (768 + 768), times 12 blocks; full fine-tuning trains all 124,439,808 (wpe included,
    the tied head counted once)."""
    with torch.device("meta"):
        model = GPT(GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257))
        assert count_trainable(model) == (124_439_808, 124_439_808)
        apply_lora(model, rank=8, alpha=16)
    assert count_trainable(model) == (12 * 8 * (768 + 2304 + 768 + 768), 124_439_808 + 12 * 8 * (768 + 2304 + 768 + 768))

"""dpo.py: the losses against their formulas, the reference stays frozen, only reply tokens count."""
import math

import pytest
import torch

from dpo import dpo_loss, pair_logprobs, reference_logprobs, sequence_logprobs, trl_metrics
from model import GPT, GPTConfig, token_logprobs
from runtime import setup_runtime

PI_C, PI_R, REF_C, REF_R = (torch.tensor([v]) for v in (-5.0, -7.0, -6.0, -6.5))
H = (-5.0 + 7.0) - (-6.0 + 6.5)  # 1.5


def softplus(x):
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("loss_type, smoothing, expected", [
    ("sigmoid", 0.0, softplus(-0.5 * H)),  # -log sigmoid(beta h) = log(1 + e^(-beta h))
    ("sigmoid", 0.1, 0.9 * softplus(-0.5 * H) + 0.1 * softplus(0.5 * H)),
    ("hinge", 0.0, max(0.0, 1 - 0.5 * H)),
    ("ipo", 0.0, (H - 1 / (2 * 0.5)) ** 2),
])
def test_each_loss_equals_its_formula(loss_type, smoothing, expected):
    losses, chosen, rejected = dpo_loss(PI_C, PI_R, REF_C, REF_R, 0.5, loss_type, smoothing)
    assert losses.item() == pytest.approx(expected, abs=1e-6)
    assert chosen.item() == pytest.approx(0.5 * (-5.0 + 6.0)) and rejected.item() == pytest.approx(0.5 * (-7 + 6.5))


def tiny_policy(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=32, vocab_size=50, n_layer=2, n_head=2, n_embd=16))


PAIRS = [{"chosen": ([1, 2, 3, 4, 5], [0, 0, 0, 1, 1]), "rejected": ([1, 2, 3, 6], [0, 0, 0, 1])},
         {"chosen": ([7, 8, 9], [0, 1, 1]), "rejected": ([7, 8, 10, 11, 12, 13], [0, 1, 1, 1, 1, 1])}]


def test_at_step_zero_loss_is_ln2_margins_zero_accuracy_zero():
    policy = tiny_policy()
    ref = tiny_policy()  # same seed: the same weights, as at the start of training
    pi_c, pi_r = pair_logprobs(policy, PAIRS, 0, "cpu")
    ref_c, ref_r = pair_logprobs(ref, PAIRS, 0, "cpu")
    losses, chosen, rejected = dpo_loss(pi_c, pi_r, ref_c, ref_r, 0.1)
    m = trl_metrics(losses, chosen, rejected, pi_c, pi_r)
    assert m["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert m["rewards/margins"] == 0 and m["rewards/accuracies"] == 0  # ties fail the strict >


def test_only_reply_tokens_count_and_padding_changes_nothing():
    policy = tiny_policy().eval()
    ids, mask = PAIRS[0]["chosen"]
    x = torch.tensor([ids])
    manual = token_logprobs(policy(x[:, :-1])[0], x[:, 1:])[0][[2, 3]].sum()  # tokens 4 and 5 are the reply
    alone = sequence_logprobs(policy, [(ids, mask)], 0, "cpu")
    padded = sequence_logprobs(policy, [(ids, mask), PAIRS[1]["rejected"]], 0, "cpu")  # batched with a longer one
    assert alone.item() == pytest.approx(manual.item(), abs=1e-5)
    assert padded[0].item() == pytest.approx(manual.item(), abs=1e-5)


def test_no_gradient_reaches_the_reference_and_precomputed_equals_live():
    policy, ref = tiny_policy(0), tiny_policy(1)
    ref.eval().requires_grad_(False)
    pi_c, pi_r = pair_logprobs(policy, PAIRS, 0, "cpu")
    ref_c, ref_r = pair_logprobs(ref, PAIRS, 0, "cpu")
    live, _, _ = dpo_loss(pi_c, pi_r, ref_c, ref_r, 0.1)
    live.mean().backward()
    assert all(p.grad is None for p in ref.parameters())
    assert all(p.grad is not None for p in policy.parameters() if p.dim() == 2)
    pairs = [dict(p) for p in PAIRS]
    reference_logprobs(ref, pairs, 0, setup_runtime("cpu", "float32"))
    pre_c, pre_r = (torch.tensor(x) for x in zip(*[p["ref"] for p in pairs]))
    precomputed, _, _ = dpo_loss(pi_c.detach(), pi_r.detach(), pre_c, pre_r, 0.1)
    assert torch.allclose(precomputed, live.detach(), atol=1e-6)

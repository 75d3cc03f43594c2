"""grpo.py: group-relative (GRPO) and leave-one-out (RLOO) advantages, the k3 KL estimate, the
per-reply mean of the clipped surrogate, and the first minibatch's ratio of exactly one."""
import math
from types import SimpleNamespace

import pytest
import torch

from credit import group_advantages, leave_one_out_advantages
from grpo import (group_policy_loss, k3_kl, policy_logprobs, process_advantages, reply_advantages,
                  rollout_outputs)
from model import GPT, GPTConfig


def test_grpo_advantages_by_hand():
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    # group 1: mean 0.5, std (unbiased) sqrt(1/3): +-0.5 * sqrt(3); group 2: all equal -> 0
    expected = [0.5 * math.sqrt(3), -0.5 * math.sqrt(3), -0.5 * math.sqrt(3), 0.5 * math.sqrt(3), 0, 0, 0, 0]
    assert group_advantages(scores, 4).tolist() == pytest.approx(expected, abs=1e-5)


def test_rloo_advantages_by_hand():
    # groups of 4: [1, 2, 3, 6], the others' means 11/3, 10/3, 3, 2; [0, 4, 5, 5]: 14/3, 10/3, 3, 3
    advantages = leave_one_out_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 4.0, 5.0, 5.0]), 4)
    assert advantages.tolist() == pytest.approx([1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0, -14 / 3, 2 / 3, 2.0, 2.0])
    pairs = leave_one_out_advantages(torch.tensor([0.0, 4.0, 5.0, 5.0]), 2)
    assert pairs.tolist() == pytest.approx([-4.0, 4.0, 0.0, 0.0])  # a tie teaches nothing
    # the textbook identity: r_i - mean(others) = k / (k - 1) * (r_i - mean(all))
    r = torch.randn(3 * 5, dtype=torch.float64)
    groups = r.view(3, 5)
    expected = 5 / 4 * (groups - groups.mean(1, keepdim=True))
    assert torch.allclose(leave_one_out_advantages(r, 5), expected.view(-1))


def test_k3_estimator_matches_kl_in_expectation():
    torch.manual_seed(0)
    p, q = torch.softmax(torch.randn(6), 0), torch.softmax(torch.randn(6), 0)
    exact = (p * (p / q).log()).sum()
    samples = torch.multinomial(p, 200_000, replacement=True)
    estimate = k3_kl(p.log()[samples], q.log()[samples]).mean()
    assert estimate.item() == pytest.approx(exact.item(), rel=0.05)
    assert (k3_kl(p.log(), q.log()) >= 0).all() and k3_kl(p.log(), p.log()).abs().max() == 0


def test_reply_advantages_land_on_every_generated_token_of_their_reply():
    scores = torch.tensor([1.0, 3.0])  # one group of two replies
    action = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.float)
    kl = torch.tensor([[0, 0.5, 0.5, 0, 1.0], [0.25, 0.25, 0, 0, 0]]) * action
    grpo = reply_advantages(scores, kl, action, SimpleNamespace(algo="grpo", group_size=2, beta=0.1))
    # mean 2, unbiased std sqrt(2): (1 - 2) / sqrt(2), (3 - 2) / sqrt(2)
    assert grpo[0].tolist() == pytest.approx([0, -1 / math.sqrt(2), -1 / math.sqrt(2), 0, -1 / math.sqrt(2)], abs=1e-5)
    assert grpo[1].tolist() == pytest.approx([1 / math.sqrt(2), 1 / math.sqrt(2), 0, 0, 0], abs=1e-5)
    rloo = reply_advantages(scores, kl, action, SimpleNamespace(algo="rloo", group_size=2, beta=0.1))
    # rewards with the KL folded in: 1 - 0.1 * 2 = 0.8 and 3 - 0.1 * 0.5 = 2.95; each minus the other
    assert rloo[0].tolist() == pytest.approx([0, -2.15, -2.15, 0, -2.15])
    assert rloo[1].tolist() == pytest.approx([2.15, 2.15, 0, 0, 0])


def test_process_advantages_by_hand():
    """DeepSeekMath's process supervision: the group's step rewards [1, 1] and [1, -1] have mean 0.5
    and unbiased std 1, so they normalise to 0.5, 0.5, 0.5, -1.5; a token's advantage sums its own
    step's and the later steps' (the first reply: 1.0 then 0.5; the second: -1.0 then -1.5)."""
    action = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.float)
    steps = [[(1, 1.0), (3, 1.0)], [(1, 1.0), (4, -1.0)]]  # (column of the step's last token, reward)
    advantages = process_advantages(steps, 2, action)
    assert advantages[0].tolist() == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.0], abs=1e-5)
    assert advantages[1].tolist() == pytest.approx([-1.0, -1.0, -1.5, -1.5, -1.5], abs=1e-5)


def test_process_advantages_of_one_step_replies_are_grpos():
    torch.manual_seed(0)
    scores = torch.randn(8)
    action = (torch.rand(8, 6) > 0.3).float()
    action[:, 5] = 1  # every reply's last token at column 5
    steps = [[(5, s.item())] for s in scores]
    expected = reply_advantages(scores, None, action, SimpleNamespace(algo="grpo", group_size=4, beta=0.0))
    assert torch.allclose(process_advantages(steps, 4, action), expected, atol=1e-5)


def test_group_policy_loss_is_the_mean_over_each_replys_tokens_then_over_replies():
    """At ratio 1 the clipped surrogate is -A per token: a reply of 1 token and one of 3 weigh alike
    (GRPO's 1/G sum_i 1/|o_i| sum_t), unlike PPO's mean over all tokens; GRPO adds beta * k3."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=64, n_layer=1, n_head=2, n_embd=16))
    ids = torch.randint(0, 64, (2, 6))
    old, _, _ = rollout_outputs(model, model, ids, 1.0, 2)
    action = torch.tensor([[0, 0, 0, 0, 1], [0, 0, 1, 1, 1]], dtype=torch.float)
    advantages = torch.tensor([[2.0], [-1.0]]) * action
    ref = old - 0.1  # log ref = log pi - 0.1: k3 = e^-0.1 + 0.1 - 1 on every token
    cfg = SimpleNamespace(algo="grpo", clip_range=0.2, temperature=1.0, beta=0.5)
    loss, stats = group_policy_loss(model, ids, old, ref, advantages, action, cfg)
    k3 = math.exp(-0.1) + 0.1 - 1
    assert stats["loss/policy"] == pytest.approx((-2.0 + 1.0) / 2, abs=1e-6)  # PPO's token mean: (-2 + 3) / 4
    assert stats["loss/kl"] == pytest.approx(k3, abs=1e-6)
    assert loss.item() == pytest.approx(-0.5 + 0.5 * k3, abs=1e-6)
    rloo_loss, rloo_stats = group_policy_loss(model, ids, old, ref, advantages, action,
                                              SimpleNamespace(**{**cfg.__dict__, "algo": "rloo"}))
    assert rloo_loss.item() == pytest.approx(-0.5, abs=1e-6) and "loss/kl" not in rloo_stats


def test_first_minibatch_ratio_is_exactly_one():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=320, n_layer=2, n_head=2, n_embd=32))
    ids = torch.randint(0, 320, (8, 20))
    old, _, ref = rollout_outputs(model, model, ids, 0.7, 4)
    new, _ = policy_logprobs(model, ids[:4], 0.7)  # the first micro-batch, with gradients
    assert torch.equal(new, old[:4]) and torch.equal(ref, old)  # the policy as its own reference

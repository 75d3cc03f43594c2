"""ppo.py and credit.py: GAE, whitening, the clipped losses, the KL penalty placement, the NLL term of preferred
replies, the adaptive KL controller; rollouts.py: rollout tensors and the reward model's reading of
them (what ppo.py and grpo.py share)."""
import math

import pytest
import torch

from generation import Reply
from model import GPT, GPTConfig
from credit import gae, per_token_rewards
from ppo import (AdaptiveKL, PolicyAndValue, clipped_policy_loss, clipped_value_loss, nll_loss, policy_outputs,
                 rollout_outputs, whiten)
from rollouts import reward_model_scores, rollout_tensors
from runtime import setup_runtime
from tokenizer import Tokenizer

RT = setup_runtime("cpu", "float32")


def test_gae_three_steps_by_hand():
    # gamma 0.9, lambda 0.8: delta_2 = 2 - 0.3 = 1.7; delta_1 = 0 + 0.9 * 0.3 - 0.4 = -0.13;
    # delta_0 = 1 + 0.9 * 0.4 - 0.5 = 0.86; A_2 = 1.7, A_1 = -0.13 + 0.72 * 1.7 = 1.094,
    # A_0 = 0.86 + 0.72 * 1.094 = 1.64768
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), 0.9, 0.8)
    assert advantages[0].tolist() == pytest.approx([1.64768, 1.094, 1.7])
    assert returns[0].tolist() == pytest.approx([2.14768, 1.494, 2.0])


def slow_gae(rewards, values, gamma, lam):
    """The textbook sum A_t = sum_l (gamma lam)^l delta_{t+l}, term by term."""
    n = len(rewards)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    return [sum((gamma * lam) ** l * deltas[t + l] for l in range(n - t)) for t in range(n)]


def test_gae_equals_the_textbook_sum_and_skips_tool_tokens():
    torch.manual_seed(0)
    rewards, values = torch.randn(2, 9), torch.randn(2, 9)
    action = torch.tensor([[0, 1, 1, 0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.float)
    advantages, _ = gae(rewards, values, action, 0.97, 0.9)
    for i in range(2):
        steps = action[i].nonzero().squeeze(1).tolist()
        expected = slow_gae(rewards[i, steps].tolist(), values[i, steps].tolist(), 0.97, 0.9)
        assert advantages[i, steps].tolist() == pytest.approx(expected, abs=1e-5)
        assert (advantages[i][action[i] == 0] == 0).all()


def test_whitening_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 5.0, -50.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.float)
    real = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 7.0])
    expected = (real - real.mean()) / real.std(unbiased=False)
    out = whiten(x, mask, RT)
    assert out[mask.bool()].tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert out[~mask.bool()].tolist() == [0.0, 0.0]


def test_clipped_policy_loss_by_hand():
    # ratios e^0.5 = 1.6487 (clipped to 1.2) and e^-0.5 = 0.6065 (clipped to 0.8), advantages +1 and -2
    logprobs, old = torch.tensor([[0.5, -0.5]]), torch.zeros(1, 2)
    advantages = torch.tensor([[1.0, -2.0]])
    loss, ratio, clipfrac = clipped_policy_loss(logprobs, old, advantages, torch.ones(1, 2), 0.2)
    # token 1: max(-1 * 1.6487, -1 * 1.2) = -1.2; token 2: max(2 * 0.6065, 2 * 0.8) = 1.6
    assert loss.item() == pytest.approx((-1.2 + 1.6) / 2, abs=1e-5)
    assert clipfrac.item() == 1.0 and ratio[0, 0].item() == pytest.approx(math.exp(0.5))


def test_clipped_value_loss_by_hand():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 1.0]])
    # token 1: unclipped (1 - 0)^2 = 1, clipped to 0.7: 0.49 -> max 1; token 2: (0 - 1)^2 = 1 both
    loss = clipped_value_loss(values, old, returns, torch.ones(1, 2), 0.2)
    assert loss.item() == pytest.approx(0.5 * (1 + 1) / 2)


def fake_rollout():
    tok = Tokenizer({"kind": "byte"})
    prompt = [{"role": "user", "content": "2*3?"}]
    generated, tool = [10, 11, 12], tok.tool_turn("6")
    reply = Reply(tokens=generated + tool + [20, 21], action_mask=[1] * 3 + [0] * len(tool) + [1, 1])
    return tok, prompt, reply


def test_kl_penalty_and_score_land_on_the_generated_tokens():
    tok, prompt, reply = fake_rollout()
    ids, action, last = rollout_tensors(tok, [prompt], [reply], "cpu")
    n_prompt = len(tok.render_prompt(prompt))
    # position t predicts token t + 1: the reply's first token is predicted at n_prompt - 1
    assert ids[0, n_prompt:].tolist() == reply.tokens
    expected_action = [0] * (n_prompt - 1) + reply.action_mask
    assert action[0].tolist() == expected_action
    assert last[0].nonzero().item() == len(expected_action) - 1
    logprobs, ref = torch.full_like(action, -1.0), torch.full_like(action, -1.5)
    rewards, kl = per_token_rewards(torch.tensor([3.0]), logprobs, ref, action, last, beta=0.1)
    assert rewards[0][action[0] == 1][:-1].tolist() == pytest.approx([-0.05] * 4)  # -beta * 0.5
    assert rewards[0, -1].item() == pytest.approx(3.0 - 0.05)
    assert (rewards[0][action[0] == 0] == 0).all() and kl.sum().item() == pytest.approx(0.5 * 5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_the_reward_model_reads_the_policys_tokens_as_in_training(pooling):
    """PPO scores a rollout over the tokens the policy wrote (not the prompt, not the tool's result),
    the same positions reward.py trained on: by hand, from the rollout's own forward pass."""
    tok, prompt, reply = fake_rollout()
    ids, action, _ = rollout_tensors(tok, [prompt], [reply], "cpu")
    torch.manual_seed(0)
    rm = GPT(GPTConfig(block_size=64, vocab_size=320, n_layer=1, n_head=2, n_embd=16, scalar_head=True,
                       reward_pooling=pooling)).eval()
    values = rm.score(ids)[0].double()
    n_prompt = len(tok.render_prompt(prompt))
    written = [n_prompt + k for k, a in enumerate(reply.action_mask) if a]  # tokens 10, 11, 12, 20, 21
    assert ids[0, written].tolist() == [10, 11, 12, 20, 21]
    expected = values[written[-1]] if pooling == "last" else values[written].mean()
    assert reward_model_scores(rm, ids, action, RT).item() == pytest.approx(expected.item(), abs=1e-5)


def test_first_minibatch_ratio_is_exactly_one():
    torch.manual_seed(0)
    config = GPTConfig(block_size=64, vocab_size=320, n_layer=2, n_head=2, n_embd=32)
    model = PolicyAndValue(GPT(config), GPT(GPTConfig(**{**config.__dict__, "scalar_head": True})))
    ids = torch.randint(0, 320, (8, 20))
    action = torch.ones(8, 19)
    old, _, old_values, ref = rollout_outputs(model, model.policy, ids, 0.7, 4)
    new, _, values = policy_outputs(model, ids[:4], 0.7)  # the first micro-batch, with gradients
    loss, ratio, clipfrac = clipped_policy_loss(new, old[:4], torch.randn(4, 19), action[:4], 0.2)
    assert torch.equal(ratio, torch.ones_like(ratio)) and clipfrac.item() == 0
    assert 0.5 * ((new - old[:4]) ** 2).mean().item() == 0  # approxkl
    assert torch.equal(values, old_values[:4]) and torch.equal(ref, old)  # the policy as its own reference


def test_nll_term_is_the_mean_over_reply_tokens_in_float64():
    torch.manual_seed(0)
    config = GPTConfig(block_size=64, vocab_size=320, n_layer=2, n_head=2, n_embd=32)
    policy = GPT(config)
    model = PolicyAndValue(policy, GPT(GPTConfig(**{**config.__dict__, "scalar_head": True})))
    # two chosen replies of different lengths: the mask is 1 on the reply's tokens only
    examples = [([5, 6, 7, 8, 9, 10], [0, 0, 0, 1, 1, 1]), ([11, 12, 13, 14], [0, 0, 1, 1])]
    loss = nll_loss(model, examples, pad_id=0, device="cpu")
    # by hand: token t is predicted from the tokens before it, with the policy alone, in float64
    terms = []
    for ids, mask in examples:
        logits, _ = policy(torch.tensor([ids[:-1]]))
        logprobs = torch.log_softmax(logits[0].double(), -1)
        terms += [-logprobs[t - 1, ids[t]].item() for t in range(1, len(ids)) if mask[t]]
    assert len(terms) == 5 and loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_adaptive_kl_controller():
    ctl = AdaptiveKL(0.1, target=6.0, horizon=1000)
    ctl.update(torch.tensor([10.0, 14.0]), n_rollouts=100, rt=RT)  # KL 12, error clipped to +0.2: beta *= 1.02
    assert ctl.beta == pytest.approx(0.1 * 1.02)
    ctl.update(torch.tensor([3.0]), n_rollouts=100, rt=RT)  # error -0.5 clipped to -0.2
    assert ctl.beta == pytest.approx(0.1 * 1.02 * 0.98)

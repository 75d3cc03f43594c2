"""
Credit assignment: how each alignment stage turns a verdict on a whole reply into numbers on its
tokens. The training stages call these functions, and inspect_tokens.py calls the same ones to
show, token by token, where each stage put its credit.

  DPO   implicit_rewards: beta * (log pi - log ref), summed over a reply in dpo.py's loss, per
        token in the token view (Rafailov et al. 2023)
  PPO   per_token_rewards: a KL penalty on every generated token, the score on the last one
        (Ziegler et al. 2019); gae: advantages that carry the score back to earlier tokens
        through the value model (Schulman et al. 2016)
  GRPO  group_advantages: one number per reply, its score against its group's (Shao et al. 2024)
  RLOO  leave_one_out_advantages: its reward minus the mean of the others' (Ahmadian et al. 2024)
"""

import torch


def implicit_rewards(logprobs, ref_logprobs, beta):
    """DPO's implicit reward beta * (log pi - log ref): of whole replies when given summed
    log-probs (B,), of each token when given per-token ones (B, T). The policy as its own reward
    model: what it made more likely than the reference, scaled by beta."""
    return beta * (logprobs - ref_logprobs)


def per_token_rewards(scores, logprobs, ref_logprobs, action, last, beta):
    """Per-token KL penalty -beta * (log pi - log ref) on every generated token, plus the score at
    the reply's last token (Ziegler et al. 2019). Returns (rewards, the KL term alone)."""
    kl = (logprobs - ref_logprobs) * action
    return -beta * kl + scores[:, None] * last, kl


def gae(rewards, values, action, gamma, lam):
    """Generalised advantage estimation (Schulman et al. 2016) over each row's generated tokens
    only: tool-output tokens between two generated ones are skipped, as the environment's part.
        delta_k = r_k + gamma * V_{k+1} - V_k   (V after the last token is 0)
        A_k = delta_k + gamma * lam * A_{k+1}
    Returns advantages and returns (A + V), zero outside the action positions."""
    advantages = torch.zeros_like(rewards)
    for i in range(rewards.size(0)):
        steps = action[i].nonzero().squeeze(1)
        next_value, next_advantage = 0.0, 0.0
        for t in reversed(steps.tolist()):
            delta = rewards[i, t] + gamma * next_value - values[i, t]
            next_advantage = delta + gamma * lam * next_advantage
            advantages[i, t] = next_advantage
            next_value = values[i, t]
    return advantages, (advantages + values) * action


def group_advantages(scores, group_size, eps=1e-6):
    """GRPO: each reply's score normalised within its prompt's group of group_size replies."""
    groups = scores.view(-1, group_size)  # (prompts, k)
    normalised = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + eps)
    return normalised.view(-1)


def leave_one_out_advantages(rewards, group_size):
    """RLOO: each reply's reward minus the mean reward of the other group_size - 1 replies to the
    same prompt (Kool et al. 2019; Ahmadian et al. 2024). The baseline never sees the reply it
    judges, so the estimate stays unbiased; it equals k / (k - 1) * (r_i - group mean)."""
    groups = rewards.view(-1, group_size)  # (prompts, k)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).view(-1)

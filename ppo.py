"""
Stage 3c, RLHF with PPO (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022): the
policy samples replies, the reward model scores them, and PPO pushes the policy towards higher
reward while a per-token KL penalty keeps it near the SFT model. (grpo.py holds the methods that
need no value model: GRPO and RLOO.)

    python ppo.py                                   # PPO against out/reward from out/sft, CPU, ~2 min
    python ppo.py --beta=0 --nll_coef=0 --out_dir=out/ppo_beta0   # no leashes: does the policy hack the reward model?
    python ppo.py --target_kl=6 --out_dir=out/ppo_adaptive        # Ziegler et al.'s adaptive KL coefficient

One iteration:
  1. sample: a reply per prompt at temperature T, tool calls executed as in chat (rollouts.py);
  2. score: the reward model, pooled over the policy's own tokens as it was trained (or
     --reward=gold, the world's rules); a reply that never ends its turn gets missing_eos_score.
     The world's gold reward of the rollouts is logged either way: it shows reward hacking;
  3. advantages: log-probs of the policy ("old") and of the reference and the value model's values,
     one forward pass each with logits divided by T as when sampling; per-token rewards
     -beta * (log pi - log ref) on every generated token plus the score on the last one; GAE over
     generated tokens only (tool output is the environment's), whitened over real tokens;
  4. policy update: ppo_epochs passes over the rollouts in minibatches, each one optimizer step on
     the clipped policy loss plus vf_coef times the clipped value loss, plus nll_coef times the NLL
     of preferred replies (PPO-ptx), for skills the reward model cannot judge;
  5. log: scores, KL, entropy and the losses; every eval_interval, the scorecard and a checkpoint.
"""

import os
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from batching import pad_batch
from checkpoint import load_for_resume, load_model, save_checkpoint
from cli import (DType, Device, Folder, Fraction01, NonNegativeFloat, NonNegativeInt, OneOf, Path, PositiveFloat,
                 PositiveInt, Range, UserError, parse_config, repo_path, run_main)
from credit import gae, per_token_rewards
from data.world.prepare import world_folder
from evaluation import load_suites, periodic_scorecard, plot_scorecard, rollout_gold
from metrics import MetricsLog
from model import token_logprobs
from rollouts import (drop_long_prompts, load_nll_examples, load_policy_models, load_prompts, masked_mean,
                      reference_logprobs, rollout_metrics, sample_rollouts, start_samples, training_scores,
                      write_samples)
from run_folder import claim_run_folder
from runtime import derived_seed, lr_at, setup_runtime, wrap_ddp
from tools import Tools


@dataclass
class PPOConfig:
    # data and output
    init_from: str = "out/sft"  # the policy and the frozen reference start here
    reward_model: str = "out/reward"  # the learned reward; PPO's value model starts from it too
    prompts: Path = "data/world/rl_prompts.jsonl"  # prompts (JSONL {"prompt": [messages], ...})
    prompt_categories: Optional[str] = None  # keep only prompts whose info.category is in this comma list
    out_dir: Folder = "out/ppo"  # checkpoints, metrics.jsonl, plots and sample tables go here
    resume: bool = False  # continue from out_dir/ckpt.pt exactly where it stopped
    overwrite: bool = False  # replace a run already in out_dir (its checkpoints, metrics and plots)
    # loss: the reward and its KL shaping
    reward: Annotated[str, OneOf(("model", "gold"))] = "model"  # model: the reward model's score; gold: the
    #                                                             world's rule-based gold_reward
    missing_eos_score: float = -2.0  # the score of a reply that never ends its turn: it replaces the
    #                                  reward model's score (TRL's missing_eos_penalty subtracts from it instead)
    beta: NonNegativeFloat = 0.05  # KL penalty coefficient (the start value when adaptive)
    target_kl: Optional[PositiveFloat] = None  # adaptive KL controller's target per reply (Ziegler et al.); None: fixed
    kl_horizon: PositiveInt = 2000  # adaptive controller horizon, in rollouts
    clip_range: PositiveFloat = 0.2  # PPO's policy ratio clip epsilon
    clip_range_value: PositiveFloat = 0.2  # value prediction clip around the rollout's values
    vf_coef: NonNegativeFloat = 0.1  # weight of the value loss
    gamma: Annotated[float, Range(0, 1)] = 1.0  # discount
    lam: Annotated[float, Range(0, 1)] = 0.95  # GAE lambda
    # rollouts
    rollout_batch: PositiveInt = 32  # prompts per iteration, over all processes
    max_new_tokens: PositiveInt = 48  # longest reply
    temperature: PositiveFloat = 0.7  # sampling temperature; log-probs everywhere use logits / temperature
    # optimisation
    minibatch_size: PositiveInt = 16  # rollouts per optimizer step, over all processes
    micro_batch_size: PositiveInt = 8  # rollouts per forward/backward pass in one process
    max_steps: PositiveInt = 50  # iterations (rollouts + PPO epochs)
    ppo_epochs: PositiveInt = 2  # passes over each iteration's rollouts
    learning_rate: PositiveFloat = 3e-5  # peak learning rate (policy and value)
    min_lr: NonNegativeFloat = 3e-5  # learning rate at the end (cosine decay)
    warmup_steps: NonNegativeInt = 0  # linear warmup from 0, in iterations
    weight_decay: NonNegativeFloat = 0.0  # AdamW weight decay on matrices
    beta1: Fraction01 = 0.9  # AdamW beta1
    beta2: Fraction01 = 0.95  # AdamW beta2
    grad_clip: NonNegativeFloat = 1.0  # clip the gradient norm to this (0: off)
    # skills the reward model cannot judge: the NLL of preferred replies mixed into the loss
    nll_coef: NonNegativeFloat = 1.0  # weight of the chosen replies' per-token NLL (0: off)
    nll_data: Path = "data/world/prefs_train.jsonl"  # preference pairs whose chosen replies it fits (JSONL), or
    #                                                  SFT conversations whose assistant turns it fits
    # evaluation and logging
    eval_interval: PositiveInt = 10  # scorecard, sample table and checkpoint every this many iterations
    eval_per_suite: NonNegativeInt = 10  # held-out examples per suite in the periodic scorecard (0: none)
    log_interval: PositiveInt = 1  # print a progress line every this many iterations
    # system
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA), bfloat16, float32
    compile: bool = False  # torch.compile the policy and value model for the PPO epochs
    seed: int = 1337  # seed for prompts and sampling


# ----------------------------------------------------------------------------- the policy and its value model


class PolicyAndValue(nn.Module):
    """Policy and value model under one module, so one optimizer and one DDP wrapper serve both."""

    def __init__(self, policy, value):
        super().__init__()
        self.policy, self.value = policy, value

    def forward(self, ids, temperature, with_value=True):
        logits, _ = self.policy(ids)
        values = self.value.score(ids) if with_value else None
        return logits.float() / temperature, values


def policy_outputs(model, ids, temperature):
    """Log-probs of each next token (B, T - 1) under the policy, the logits at the sampling
    temperature, and the value model's values (B, T - 1), from one forward pass."""
    logits, values = model(ids, temperature)
    return token_logprobs(logits[:, :-1], ids[:, 1:]), logits[:, :-1], values[:, :-1]


@torch.no_grad()
def rollout_outputs(model, ref, ids, temperature, micro_batch_size):
    """Over the rollouts, (B, T - 1) each: the old policy's log-probs, its entropy, the values and
    the reference's log-probs, in the micro-batches that training uses (identical shapes: the
    first minibatch then reproduces these numbers exactly, ratio 1)."""
    parts = []
    for x in ids.split(micro_batch_size):
        logprobs, logits, values = policy_outputs(model, x, temperature)
        parts.append((logprobs, torch.distributions.Categorical(logits=logits).entropy(), values))
    return [torch.cat(p) for p in zip(*parts)] + [reference_logprobs(ref, ids, temperature, micro_batch_size)]


# ----------------------------------------------------------------------------- advantages
# (per_token_rewards and gae live in credit.py: inspect_tokens.py shows their numbers token by token)


def whiten(x, mask, rt):
    """Normalise x to mean 0, std 1 over the real (mask = 1) tokens of the global batch; padding
    never enters the statistics."""
    stats = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
    if rt.ddp:
        torch.distributed.all_reduce(stats)
    mean = stats[0] / stats[2]
    var = stats[1] / stats[2] - mean ** 2
    return (x - mean.float()) * torch.rsqrt(var.float() + 1e-8) * mask


class AdaptiveKL:
    """Ziegler et al.'s controller: raise beta when the KL is above target, lower it when below,
    by at most 20% per horizon of rollouts."""

    def __init__(self, beta, target, horizon):
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl, n_rollouts, rt):
        """kl: (B,) this process's KL per reply; the controller reads its mean over every process."""
        kl = rt.all_reduce_mean(kl.mean().item())
        if self.target is not None:
            error = float(np.clip(kl / self.target - 1, -0.2, 0.2))
            self.beta *= 1 + error * n_rollouts / self.horizon


# ----------------------------------------------------------------------------- losses


def clipped_policy_loss(logprobs, old_logprobs, advantages, action, clip_range):
    """PPO's clipped surrogate (Schulman et al. 2017), as a loss: the mean over generated tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)). Also the ratio and the clipped fraction."""
    ratio = torch.exp(logprobs - old_logprobs)
    losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    clipped = ((ratio - 1).abs() > clip_range).float()
    return masked_mean(losses, action), ratio, masked_mean(clipped, action)


def clipped_value_loss(values, old_values, returns, action, clip_range_value):
    """0.5 * max((V - R)^2, (V_clipped - R)^2), V_clipped within clip_range_value of the rollout's value."""
    clipped = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), action)


def ppo_loss(model, ids, old_logprobs, old_values, advantages, returns, action, cfg):
    """A micro-batch's PPO loss: the clipped policy loss plus vf_coef times the clipped value loss.
    Returns the loss and its statistics."""
    logprobs, _, values = policy_outputs(model, ids, cfg.temperature)
    pg_loss, ratio, clipfrac = clipped_policy_loss(logprobs, old_logprobs, advantages, action, cfg.clip_range)
    value_loss = clipped_value_loss(values, old_values, returns, action, cfg.clip_range_value)
    log_ratio = (logprobs - old_logprobs).detach()
    stats = {"loss/policy": pg_loss.item(), "loss/value": value_loss.item(),
             "policy/approxkl": 0.5 * masked_mean(log_ratio ** 2, action).item(),
             "policy/clipfrac": clipfrac.item(), "policy/ratio": masked_mean(ratio.detach(), action).item()}
    return pg_loss + cfg.vf_coef * value_loss, stats


def nll_loss(model, examples, pad_id, device):
    """PPO-ptx (Ouyang et al. 2022), with the preference data's chosen replies where InstructGPT
    used pretraining text (as dpo.py's RPO term): the mean NLL per reply token of examples
    [(ids, loss mask)], with the policy's logits at temperature 1. The reward model misjudges what
    it cannot compare (a quoted word list against the python result, a persona's name), and PPO
    drifts there; this term holds those skills in place."""
    x, y = pad_batch(examples, pad_id, device)  # (B, T) inputs, (B, T) targets, -1 where masked
    logits, _ = model(x, 1.0, with_value=False)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1)


def minibatch_rngs(seed, step, rank):
    """The step's own random streams for the minibatch order and the PPO-ptx picks: pure functions
    of (seed, step, rank), so a resumed run draws exactly what an uninterrupted one would."""
    return (torch.Generator().manual_seed(derived_seed(seed, step, rank, 1)),
            np.random.default_rng(derived_seed(seed, step, rank, 2)))


# ----------------------------------------------------------------------------- main


def load_value_model(cfg, rt):
    """The value model starts from the reward model (Ouyang et al.), else from the SFT model with a
    new scalar head."""
    source = cfg.reward_model if os.path.exists(os.path.join(repo_path(cfg.reward_model), "ckpt.pt")) \
        else cfg.init_from
    value, _, _ = load_model(source, rt.device, dropout=0.0, scalar_head=True)
    return value


def main():
    if any(a.startswith("--algo=") for a in sys.argv[1:]):
        raise UserError("ppo.py runs PPO only: GRPO and RLOO are in grpo.py (python grpo.py --algo=grpo|rloo)")
    cfg = parse_config(PPOConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed)
    run_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt)  # locked until the run ends
    rows = load_prompts(cfg.prompts, cfg.prompt_categories, need_info=cfg.reward == "gold")
    world = world_folder(cfg.prompts)
    suites = load_suites(world, cfg.eval_per_suite) if cfg.eval_per_suite and world else None
    tools = Tools.with_encyclopedia(world)  # the rollouts call tools as a chat would
    minibatch = cfg.minibatch_size // rt.world_size
    if cfg.rollout_batch % rt.world_size or cfg.rollout_batch // rt.world_size % minibatch \
            or minibatch % cfg.micro_batch_size:
        raise UserError("rollout_batch, minibatch_size and micro_batch_size must divide evenly over processes")

    # models: policy, frozen reference, reward model (unless the reward is gold) and value model
    policy, ref, reward_model, tokenizer = load_policy_models(cfg, rt)
    value = load_value_model(cfg, rt)
    # every model reads prompt + reply: the smallest context of them bounds the prompts
    block_size = min(m.config.block_size for m in (policy, reward_model, value) if m is not None)
    rows = drop_long_prompts(rows, tokenizer, block_size, cfg.max_new_tokens, cfg.prompts, rt)
    nll_examples = load_nll_examples(cfg, tokenizer, block_size, rt) if cfg.nll_coef else None
    raw_model = PolicyAndValue(policy, value)
    optimizer = policy.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2), rt.device.type,
                                           extra_modules=[value])
    kl_control = AdaptiveKL(cfg.beta, cfg.target_kl, cfg.kl_horizon)
    start_step = 0
    if cfg.resume:  # the policy, the optimizer, and the value model and KL coefficient, which train too
        checkpoint = load_for_resume(cfg.out_dir, "ppo", cfg, rt)
        policy.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        value.load_state_dict(checkpoint["value_model"])
        start_step, kl_control.beta = checkpoint["step"], checkpoint["kl_beta"]
        rt.print(f"resuming from step {start_step} of {cfg.out_dir}/ckpt.pt")
    model = torch.compile(raw_model) if cfg.compile else raw_model
    model = wrap_ddp(model, rt)
    autocast = rt.autocast()
    run_folder.begin()  # inputs all checked: from here on the run writes out_dir
    log = MetricsLog(cfg.out_dir, rt, cfg.max_steps, cfg.log_interval, start_step, cfg.resume)
    rt.print(f"PPO: {len(rows)} prompts, {cfg.rollout_batch} per iteration, reward: "
             f"{'the reward model ' + cfg.reward_model if cfg.reward == 'model' else 'gold (rules)'}, "
             f"beta {kl_control.beta}{' adaptive' if cfg.target_kl else ''}")

    def evaluate_and_save(step, rollouts=None, scores=None, gold=None):
        """The scorecard sample and a table of this iteration's rollouts; ckpt.pt."""
        metrics = periodic_scorecard(policy, tokenizer, suites, tools, rt)
        log.report(step, **metrics)
        if rt.is_master:
            if rollouts is not None:
                write_samples(cfg.out_dir, step, rollouts, scores, gold)
            checkpoint = {"stage": "ppo", "step": step, "model": policy.state_dict(),
                          "model_config": asdict(policy.config), "tokenizer": tokenizer.spec,
                          "config": asdict(cfg), "metrics": metrics, "optimizer": optimizer.state_dict(),
                          "value_model": value.state_dict(), "kl_beta": kl_control.beta}
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), checkpoint)
            plot(log, suites)

    # the training loop: one iteration = the five steps of the docstring
    params = [p for group in optimizer.param_groups for p in group["params"]]  # clipped as one vector
    if start_step == 0:
        if rt.is_master:  # a fresh run starts a fresh table of samples
            start_samples(cfg.out_dir, "PPO rollouts")
        evaluate_and_save(0)
    for step in range(start_step + 1, cfg.max_steps + 1):
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 1. sample
        rollouts = sample_rollouts(policy, tokenizer, rows, tools, step, cfg, rt)
        ids, action = rollouts.ids, rollouts.action
        # 2. score (the gold reward is watched, and trained on only with --reward=gold)
        gold, accuracy = rollout_gold(rollouts.rows, rollouts.replies)
        scores = training_scores(rollouts, reward_model, gold, cfg.missing_eos_score, rt)
        # 3. advantages
        with autocast:
            old_logprobs, entropy, old_values, ref_logprobs = rollout_outputs(raw_model, ref, ids, cfg.temperature,
                                                                              cfg.micro_batch_size)
        rewards, kl = per_token_rewards(scores, old_logprobs, ref_logprobs, action, rollouts.last, kl_control.beta)
        advantages, returns = gae(rewards, old_values, action, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, action, rt)
        # 4. policy update: ppo_epochs passes over the rollouts in minibatches, one optimizer step each
        stats = defaultdict(list)
        order_gen, nll_rng = minibatch_rngs(cfg.seed, step, rt.rank)
        for epoch in range(cfg.ppo_epochs):
            # the first pass keeps the rollout order, so its first minibatch sees ratio == 1 exactly
            order = torch.arange(len(ids)) if epoch == 0 else torch.randperm(len(ids), generator=order_gen)
            for start in range(0, len(ids), minibatch):
                chunks = order[start:start + minibatch].split(cfg.micro_batch_size)
                for micro_step, chunk in enumerate(chunks):
                    if nll_examples:  # PPO-ptx: as many preferred replies as rollouts in the micro-batch
                        picks = nll_rng.integers(len(nll_examples), size=len(chunk))
                        if rt.ddp:  # its gradients are all-reduced with the PPO loss's, below
                            model.require_backward_grad_sync = False
                        with autocast:
                            nll = nll_loss(model, [nll_examples[i] for i in picks], tokenizer.eot, rt.device)
                        (cfg.nll_coef * nll * len(chunk) / minibatch).backward()
                        stats["loss/nll"].append(nll.item())
                    if rt.ddp:  # all-reduce the gradients once per minibatch, in the last micro-step's backward
                        model.require_backward_grad_sync = micro_step == len(chunks) - 1
                    with autocast:
                        loss, loss_stats = ppo_loss(model, ids[chunk], old_logprobs[chunk], old_values[chunk],
                                                    advantages[chunk], returns[chunk], action[chunk], cfg)
                    (loss * len(chunk) / minibatch).backward()  # this micro-batch's share of the minibatch
                    for k, v in loss_stats.items():
                        stats[k].append(v)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        # 5. log
        kl_control.update(kl.sum(1), cfg.rollout_batch, rt)
        log.step(step, lr=lr, grad_norm=grad_norm.item(), beta=kl_control.beta,
                 **rollout_metrics(scores, kl, entropy, action, kl_control.beta, gold, accuracy),
                 **{k: float(np.mean(v)) for k, v in stats.items()})
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            evaluate_and_save(step, rollouts, scores, gold)
    if start_step < cfg.max_steps:
        log.finished(f"wrote {cfg.out_dir}/ckpt.pt, metrics.jsonl, ppo.png, samples.md")
    run_folder.release()


def plot(log, suites):
    log.plot("ppo.png", {
        "reward": ["objective/scores", "objective/gold_reward", "objective/rlhf_reward", "objective/accuracy"],
        "KL to reference (per reply)": ["objective/kl"],
        "policy": ["policy/approxkl", "policy/clipfrac", "objective/entropy"],
        "losses": ["loss/policy", "loss/value", "loss/nll"]}, title="RLHF with PPO")
    if suites:
        plot_scorecard(log, "PPO")


if __name__ == "__main__":
    run_main(main)

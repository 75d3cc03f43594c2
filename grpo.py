"""
Stage 3d, critic-free RL over groups of replies: GRPO (Shao et al. 2024, DeepSeekMath) and RLOO
(Ahmadian et al. 2024). Each prompt is answered group_size times; each reply is judged against
the other replies to the same prompt, so no value model is needed (ppo.py trains one). With a
verifiable reward (--reward=gold: the world's rules, or GSM8K's final-number check) this is RL
with verifiable rewards, as in reasoning models.

    python grpo.py --reward=gold --prompt_categories=arithmetic,tool --out_dir=out/grpo   # CPU, ~3 min
    python grpo.py --algo=rloo --out_dir=out/rloo                  # RLOO against the reward model out/reward
    python grpo.py --config=config/grpo_gsm8k.cfg                  # GSM8K from the GPT-2 SFT model, GPU

One iteration:
  1. sample: rollout_batch prompts, group_size replies each at temperature T, tool calls executed
     as in chat (rollouts.py);
  2. score: the reward model over the policy's own tokens, or --reward=gold; a reply that never
     ends its turn gets missing_eos_score. The world's gold reward is logged either way;
  3. advantages, one per reply, on every token it generated:
       GRPO: the score normalised within the group, (r - mean) / std; with --process_reward, a
             reward per step where the checker judges steps (worked arithmetic, one a line), each
             token getting the normalised rewards of its step and the steps after it;
       RLOO: the score minus beta times the reply's summed KL to the reference, minus the mean of
             the same over the other group_size - 1 replies (the leave-one-out baseline);
  4. policy update: ppo_epochs passes in minibatches of the clipped surrogate, averaged per reply
     then over replies (GRPO's 1/G sum_i 1/|o_i| sum_t), GRPO adding beta times the k3 estimate of
     the KL to the reference as a loss term (RLOO has its KL in the reward already); plus nll_coef
     times the NLL of preferred replies, as in ppo.py;
  5. log: scores, KL, entropy and the losses; every eval_interval, the scorecard and a checkpoint.
"""

import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F

from batching import pad_batch
from checkpoint import load_for_resume, save_checkpoint
from cli import (DType, Device, Folder, Fraction01, NonNegativeFloat, NonNegativeInt, OneOf, Path, PositiveFloat,
                 PositiveInt, UserError, parse_config, run_main)
from credit import group_advantages, leave_one_out_advantages
from data.world.prepare import world_folder
from evaluation import gold_steps, load_suites, periodic_scorecard, plot_scorecard, rollout_gold
from metrics import MetricsLog
from model import token_logprobs
from rollouts import (drop_long_prompts, load_nll_examples, load_policy_models, load_prompts, masked_mean,
                      reference_logprobs, rollout_metrics, sample_rollouts, start_samples, training_scores,
                      write_samples)
from run_folder import claim_run_folder
from runtime import derived_seed, lr_at, setup_runtime, wrap_ddp
from tools import Tools


@dataclass
class GRPOConfig:
    # data and output
    init_from: str = "out/sft"  # the policy and the frozen reference start here
    reward_model: str = "out/reward"  # the learned reward (unused with --reward=gold)
    prompts: Path = "data/world/rl_prompts.jsonl"  # prompts (JSONL {"prompt": [messages], ...})
    prompt_categories: Optional[str] = None  # keep only prompts whose info.category is in this comma list
    out_dir: Folder = "out/grpo"  # checkpoints, metrics.jsonl, plots and sample tables go here
    resume: bool = False  # continue from out_dir/ckpt.pt exactly where it stopped
    overwrite: bool = False  # replace a run already in out_dir (its checkpoints, metrics and plots)
    # loss: the algorithm, the reward and the KL to the reference
    algo: Annotated[str, OneOf(("grpo", "rloo"))] = "grpo"  # grpo: group-normalised advantages, KL as a loss
    #                                                        term; rloo: leave-one-out baseline, KL in the reward
    reward: Annotated[str, OneOf(("model", "gold"))] = "model"  # model: the reward model's score; gold: the
    #                                                             world's rule-based gold_reward (a verifier)
    process_reward: bool = False  # GRPO with process supervision (Shao et al. 2024, 4.1.3): +1 or -1 per step
    #                               where the checkers judge steps (worked arithmetic), needs --reward=gold
    missing_eos_score: float = -2.0  # the score of a reply that never ends its turn (it replaces the score)
    beta: NonNegativeFloat = 0.05  # weight of the KL to the reference (GRPO: loss term; RLOO: reward penalty)
    clip_range: PositiveFloat = 0.2  # the policy ratio clip epsilon
    # rollouts
    rollout_batch: PositiveInt = 32  # prompts per iteration, over all processes
    group_size: PositiveInt = 4  # replies sampled per prompt (RLOO needs at least 2)
    max_new_tokens: PositiveInt = 48  # longest reply
    temperature: PositiveFloat = 0.7  # sampling temperature; log-probs everywhere use logits / temperature
    # optimisation
    minibatch_size: PositiveInt = 16  # rollouts per optimizer step, over all processes
    micro_batch_size: PositiveInt = 8  # rollouts per forward/backward pass in one process
    max_steps: PositiveInt = 50  # iterations (rollouts + update epochs)
    ppo_epochs: PositiveInt = 2  # passes over each iteration's rollouts
    learning_rate: PositiveFloat = 3e-5  # peak learning rate
    min_lr: NonNegativeFloat = 3e-5  # learning rate at the end (cosine decay)
    warmup_steps: NonNegativeInt = 0  # linear warmup from 0, in iterations
    weight_decay: NonNegativeFloat = 0.0  # AdamW weight decay on matrices
    beta1: Fraction01 = 0.9  # AdamW beta1
    beta2: Fraction01 = 0.95  # AdamW beta2
    grad_clip: NonNegativeFloat = 1.0  # clip the gradient norm to this (0: off)
    # skills the reward cannot judge: the NLL of preferred replies mixed into the loss (as ppo.py)
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
    compile: bool = False  # torch.compile the policy for the update epochs
    seed: int = 1337  # seed for prompts and sampling


# ----------------------------------------------------------------------------- log-probs


def policy_logprobs(model, ids, temperature):
    """Log-probs of each next token (B, T - 1) under the policy at the sampling temperature, and the logits."""
    logits = model(ids)[0].float() / temperature
    return token_logprobs(logits[:, :-1], ids[:, 1:]), logits[:, :-1]


@torch.no_grad()
def rollout_outputs(model, ref, ids, temperature, micro_batch_size):
    """Over the rollouts, (B, T - 1) each: the old policy's log-probs, its entropy and the
    reference's log-probs, in the micro-batches that training uses (identical shapes: the first
    minibatch then sees ratio 1 exactly)."""
    parts = []
    for x in ids.split(micro_batch_size):
        logprobs, logits = policy_logprobs(model, x, temperature)
        parts.append((logprobs, torch.distributions.Categorical(logits=logits).entropy()))
    return [torch.cat(p) for p in zip(*parts)] + [reference_logprobs(ref, ids, temperature, micro_batch_size)]


# ----------------------------------------------------------------------------- advantages
# (group_advantages and leave_one_out_advantages live in credit.py, beside PPO's and DPO's credit)


def reply_advantages(scores, kl, action, cfg):
    """One advantage per reply, copied onto every token it generated (B, T - 1). RLOO folds the KL
    penalty into each reply's reward, the whole reply one action (as TRL's RLOO)."""
    if cfg.algo == "grpo":
        per_reply = group_advantages(scores, cfg.group_size)
    else:
        per_reply = leave_one_out_advantages(scores - cfg.beta * kl.sum(1), cfg.group_size)
    return per_reply[:, None] * action


def reply_steps(rollouts, scores, tokenizer):
    """Each reply's steps as [(column in the (B, T - 1) masks of its step's last token, reward)]:
    one step per line where the checkers judge the steps (gold_steps), else one step, the whole
    reply with its score. The reply's <|im_end|> belongs to its last step."""
    steps = []
    last_columns = rollouts.last.argmax(1).tolist()  # one 1 a row (none: column 0); read from the device once
    for row, reply, last, score in zip(rollouts.rows, rollouts.replies, last_columns, scores.tolist()):
        marks = gold_steps(row, reply) if all(reply.action_mask) else None  # (tool turns: not worked arithmetic)
        if marks is None:
            steps.append([(last, score)])
            continue
        first = last - (len(reply.tokens) - 1)  # the column predicting the reply's first token
        text_ends = np.cumsum([len(tokenizer.decode([t])) for t in reply.tokens[:-1]])  # past each token's text
        columns = [first + min(int(np.searchsorted(text_ends, end)), len(text_ends) - 1) for end, _ in marks]
        columns[-1] = last
        steps.append([(c, reward) for c, (_, reward) in zip(columns, marks)])
    return steps


def process_advantages(steps, group_size, action, eps=1e-6):
    """GRPO with process supervision (DeepSeekMath, section 4.1.3): every step reward normalised by
    the mean and std of all step rewards in its prompt's group; a token's advantage is the sum of
    the normalised rewards of the steps that end at or after it. A reply of one step gets exactly
    group_advantages' value on every token."""
    advantages = torch.zeros(action.shape)  # filled on the CPU, step by step, then moved once
    for g in range(0, len(steps), group_size):
        rewards = torch.tensor([r for reply in steps[g:g + group_size] for _, r in reply])
        mean, std = rewards.mean().item(), rewards.std().item()
        for i in range(g, g + group_size):
            to_go = 0.0
            for column, reward in reversed(steps[i]):  # the last step first: earlier steps overwrite their own tokens
                to_go += (reward - mean) / (std + eps)
                advantages[i, :column + 1] = to_go
    return advantages.to(action.device) * action


# ----------------------------------------------------------------------------- losses


def k3_kl(logprobs, ref_logprobs):
    """The k3 estimator of KL(pi || ref) per token (Schulman 2020), as GRPO uses it:
    exp(ref - logp) - (ref - logp) - 1, unbiased and never negative."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def group_policy_loss(model, ids, old_logprobs, ref_logprobs, advantages, action, cfg):
    """A micro-batch's loss: the clipped surrogate (Schulman et al. 2017) averaged over each reply's
    tokens, then over replies, and for GRPO beta times the k3 KL to the reference, averaged the
    same way. Returns the loss and its statistics."""
    logprobs, _ = policy_logprobs(model, ids, cfg.temperature)
    ratio = torch.exp(logprobs - old_logprobs)
    losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
    pg_loss = masked_mean(losses, action, dim=1).mean()
    log_ratio = (logprobs - old_logprobs).detach()
    stats = {"loss/policy": pg_loss.item(), "policy/approxkl": 0.5 * masked_mean(log_ratio ** 2, action).item(),
             "policy/clipfrac": masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), action).item(),
             "policy/ratio": masked_mean(ratio.detach(), action).item()}
    if cfg.algo == "rloo":  # its KL is in the advantages already
        return pg_loss, stats
    kl_loss = masked_mean(k3_kl(logprobs, ref_logprobs), action, dim=1).mean()
    stats["loss/kl"] = kl_loss.item()
    return pg_loss + cfg.beta * kl_loss, stats


def nll_loss(model, examples, pad_id, device):
    """The mean NLL per reply token of preferred replies [(ids, loss mask)] at temperature 1 (the
    PPO-ptx term of ppo.py): it holds in place the skills the reward does not judge."""
    x, y = pad_batch(examples, pad_id, device)  # (B, T) inputs, (B, T) targets, -1 where masked
    logits, _ = model(x)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1)


def minibatch_rngs(seed, step, rank):
    """The step's own random streams for the minibatch order and the NLL picks: pure functions of
    (seed, step, rank), so a resumed run draws exactly what an uninterrupted one would."""
    return (torch.Generator().manual_seed(derived_seed(seed, step, rank, 1)),
            np.random.default_rng(derived_seed(seed, step, rank, 2)))


# ----------------------------------------------------------------------------- main


def main():
    cfg = parse_config(GRPOConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed)
    if cfg.algo == "rloo" and cfg.group_size < 2:
        raise UserError("--algo=rloo needs --group_size of at least 2: the baseline is the other replies' mean")
    if cfg.process_reward and (cfg.algo != "grpo" or cfg.reward != "gold"):
        raise UserError("--process_reward needs --algo=grpo and --reward=gold: the checkers judge the steps")
    run_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt)  # locked until the run ends
    rows = load_prompts(cfg.prompts, cfg.prompt_categories, need_info=cfg.reward == "gold")
    world = world_folder(cfg.prompts)
    suites = load_suites(world, cfg.eval_per_suite) if cfg.eval_per_suite and world else None
    tools = Tools.with_encyclopedia(world)  # the rollouts call tools as a chat would
    per_rank = cfg.rollout_batch // rt.world_size * cfg.group_size
    minibatch = cfg.minibatch_size // rt.world_size
    if cfg.rollout_batch % rt.world_size or per_rank % minibatch or minibatch % cfg.micro_batch_size:
        raise UserError("rollout_batch, minibatch_size and micro_batch_size must divide evenly over processes")

    # models: policy, frozen reference and the reward model (unless the reward is gold); no value model
    policy, ref, reward_model, tokenizer = load_policy_models(cfg, rt)
    block_size = min(m.config.block_size for m in (policy, reward_model) if m is not None)
    rows = drop_long_prompts(rows, tokenizer, block_size, cfg.max_new_tokens, cfg.prompts, rt)
    nll_examples = load_nll_examples(cfg, tokenizer, block_size, rt) if cfg.nll_coef else None
    optimizer = policy.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2), rt.device.type)
    start_step = 0
    if cfg.resume:
        checkpoint = load_for_resume(cfg.out_dir, cfg.algo, cfg, rt)
        policy.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_step = checkpoint["step"]
        rt.print(f"resuming from step {start_step} of {cfg.out_dir}/ckpt.pt")
    model = torch.compile(policy) if cfg.compile else policy
    model = wrap_ddp(model, rt)
    autocast = rt.autocast()
    run_folder.begin()  # inputs all checked: from here on the run writes out_dir
    log = MetricsLog(cfg.out_dir, rt, cfg.max_steps, cfg.log_interval, start_step, cfg.resume)
    rt.print(f"{cfg.algo.upper()}: {len(rows)} prompts, {cfg.rollout_batch} per iteration x {cfg.group_size} "
             f"replies, reward: {'the reward model ' + cfg.reward_model if cfg.reward == 'model' else 'gold (rules)'}, "
             f"beta {cfg.beta}")

    def evaluate_and_save(step, rollouts=None, scores=None, gold=None):
        """The scorecard sample and a table of this iteration's rollouts; ckpt.pt."""
        metrics = periodic_scorecard(policy, tokenizer, suites, tools, rt)
        log.report(step, **metrics)
        if rt.is_master:
            if rollouts is not None:
                write_samples(cfg.out_dir, step, rollouts, scores, gold)
            checkpoint = {"stage": cfg.algo, "step": step, "model": policy.state_dict(),
                          "model_config": asdict(policy.config), "tokenizer": tokenizer.spec,
                          "config": asdict(cfg), "metrics": metrics, "optimizer": optimizer.state_dict()}
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), checkpoint)
            plot(log, suites, cfg.algo)

    # the training loop: one iteration = the five steps of the docstring
    params = [p for group in optimizer.param_groups for p in group["params"]]  # clipped as one vector
    if start_step == 0:
        if rt.is_master:  # a fresh run starts a fresh table of samples
            start_samples(cfg.out_dir, f"{cfg.algo.upper()} rollouts")
        evaluate_and_save(0)
    for step in range(start_step + 1, cfg.max_steps + 1):
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 1. sample: group_size replies per prompt, side by side
        rollouts = sample_rollouts(policy, tokenizer, rows, tools, step, cfg, rt, group_size=cfg.group_size)
        ids, action = rollouts.ids, rollouts.action
        # 2. score (the gold reward is watched, and trained on only with --reward=gold)
        gold, accuracy = rollout_gold(rollouts.rows, rollouts.replies)
        scores = training_scores(rollouts, reward_model, gold, cfg.missing_eos_score, rt)
        # 3. advantages: one per reply, judged against the other replies to its prompt
        with autocast:
            old_logprobs, entropy, ref_logprobs = rollout_outputs(policy, ref, ids, cfg.temperature,
                                                                  cfg.micro_batch_size)
        kl = (old_logprobs - ref_logprobs) * action
        if cfg.process_reward:
            advantages = process_advantages(reply_steps(rollouts, scores, tokenizer), cfg.group_size, action)
        else:
            advantages = reply_advantages(scores, kl, action, cfg)
        # 4. policy update: ppo_epochs passes over the rollouts in minibatches, one optimizer step each
        stats = defaultdict(list)
        order_gen, nll_rng = minibatch_rngs(cfg.seed, step, rt.rank)
        for epoch in range(cfg.ppo_epochs):
            # the first pass keeps the rollout order, so its first minibatch sees ratio == 1 exactly
            order = torch.arange(len(ids)) if epoch == 0 else torch.randperm(len(ids), generator=order_gen)
            for start in range(0, len(ids), minibatch):
                chunks = order[start:start + minibatch].split(cfg.micro_batch_size)
                for micro_step, chunk in enumerate(chunks):
                    if nll_examples:  # as many preferred replies as rollouts in the micro-batch
                        picks = nll_rng.integers(len(nll_examples), size=len(chunk))
                        if rt.ddp:  # its gradients are all-reduced with the policy loss's, below
                            model.require_backward_grad_sync = False
                        with autocast:
                            nll = nll_loss(model, [nll_examples[i] for i in picks], tokenizer.eot, rt.device)
                        (cfg.nll_coef * nll * len(chunk) / minibatch).backward()
                        stats["loss/nll"].append(nll.item())
                    if rt.ddp:  # all-reduce the gradients once per minibatch, in the last micro-step's backward
                        model.require_backward_grad_sync = micro_step == len(chunks) - 1
                    with autocast:
                        loss, loss_stats = group_policy_loss(model, ids[chunk], old_logprobs[chunk],
                                                             ref_logprobs[chunk], advantages[chunk], action[chunk], cfg)
                    (loss * len(chunk) / minibatch).backward()  # this micro-batch's share of the minibatch
                    for k, v in loss_stats.items():
                        stats[k].append(v)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        # 5. log
        log.step(step, lr=lr, grad_norm=grad_norm.item(), beta=cfg.beta,
                 **rollout_metrics(scores, kl, entropy, action, cfg.beta, gold, accuracy),
                 **{k: float(np.mean(v)) for k, v in stats.items()})
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            evaluate_and_save(step, rollouts, scores, gold)
    if start_step < cfg.max_steps:
        log.finished(f"wrote {cfg.out_dir}/ckpt.pt, metrics.jsonl, {cfg.algo}.png, samples.md")
    run_folder.release()


def plot(log, suites, algo):
    log.plot(f"{algo}.png", {
        "reward": ["objective/scores", "objective/gold_reward", "objective/rlhf_reward", "objective/accuracy"],
        "KL to reference (per reply)": ["objective/kl"],
        "policy": ["policy/approxkl", "policy/clipfrac", "objective/entropy"],
        "losses": ["loss/policy", "loss/kl", "loss/nll"]}, title=f"critic-free RL: {algo.upper()}")
    if suites:
        plot_scorecard(log, algo.upper())


if __name__ == "__main__":
    run_main(main)

"""
Stage 3c, RLHF with PPO (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022): the
policy samples replies, the reward model scores them, and PPO pushes the policy towards higher
reward while a per-token KL penalty keeps it near the SFT model. GRPO (Shao et al. 2024) and
RLOO (Ahmadian et al. 2024) are variants without a value model: several replies per prompt, each
judged against the others.

    python ppo.py                                   # PPO against out/reward from out/sft, CPU, ~2 min
    python ppo.py --beta=0 --out_dir=out/ppo_beta0  # no KL penalty: does the policy hack the reward model?
    python ppo.py --algo=grpo --reward=gold --prompt_categories=arithmetic,tool --out_dir=out/grpo
    python ppo.py --algo=rloo --out_dir=out/rloo

One iteration:
  1. rollouts: sample a reply per prompt (GRPO, RLOO: group_size per prompt) at temperature T, tool
     calls executed as in chat
     (generation.respond); a reply that never ends its turn gets missing_eos_score;
  2. score: the reward model, pooled over the reply as it was trained (or --reward=gold, the world's rules);
  3. log-probs of the policy ("old") and of the reference, values from the value model, all from
     one forward pass each over the rollouts, with logits divided by T as when sampling;
  4. per-token rewards: -beta * (log pi - log ref) on every generated token, plus the score on the
     last one; advantages by GAE over generated tokens only (tool output is the environment's),
     whitened over real tokens; GRPO: the group-normalised score as every token's advantage;
     RLOO: the reply's score minus beta times its summed KL, minus the mean of the same for the
     other replies to the prompt (the leave-one-out baseline), as every token's advantage;
  5. ppo_epochs passes over the rollouts in minibatches: clipped policy loss, clipped value loss
     (GRPO: clipped policy loss + beta * k3 KL estimate to the reference; RLOO: the clipped policy
     loss alone, its KL already in the reward; neither has a value model), plus
     nll_coef times the NLL of preferred replies (PPO-ptx), for skills the reward model cannot judge.
"""

import os
from dataclasses import asdict, dataclass
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from checkpoint import load_for_resume, load_model, save_checkpoint
from cli import (DType, Device, Fraction01, NonNegativeFloat, NonNegativeInt, OneOf, Path, PositiveFloat, PositiveInt,
                 Range, UserError, parse_config, repo_path, run_main)
from data.world.checkers import MAIN_BEHAVIOUR, gold_reward, score
from data.world.prepare import ensure_world, world_folder
from data.world.scorecard import chat_scorecard, load_suites, plot_scorecard
from data_formats import load_preferences, read_jsonl
from generation import describe, respond
from metrics import MetricsLog
from model import pad_batch, token_logprobs
from run_folder import claim_run_folder
from tools import Tools
from runtime import batch_indices, derived_seed, lr_at, rank_slice, seed_step, setup_runtime, wrap_ddp
from tokenizer import check_messages


@dataclass
class PPOConfig:
    # data and output
    init_from: str = "out/sft"  # the policy and the frozen reference start here
    reward_model: str = "out/reward"  # the learned reward; PPO's value model starts from it too
    prompts: Path = "data/world/rl_prompts.jsonl"  # prompts (JSONL {"prompt": [messages], ...})
    prompt_categories: Optional[str] = None  # keep only prompts whose info.category is in this comma list
    out_dir: Path = "out/ppo"  # checkpoints, metrics.jsonl, plots and sample tables go here
    resume: bool = False  # continue from out_dir/ckpt.pt exactly where it stopped
    overwrite: bool = False  # replace a run already in out_dir (its checkpoints, metrics and plots)
    # loss: the algorithm, the reward and its KL shaping
    algo: Annotated[str, OneOf(("ppo", "grpo", "rloo"))] = "ppo"  # ppo; grpo (group-normalised advantages) or rloo
    #                                                               (leave-one-out baseline): no value model
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
    group_size: PositiveInt = 4  # GRPO, RLOO: replies sampled per prompt (RLOO needs at least 2)
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
    nll_data: Path = "data/world/prefs_train.jsonl"  # preference pairs (JSONL) whose chosen replies it fits
    # evaluation and logging
    eval_interval: PositiveInt = 10  # scorecard, sample table and checkpoint every this many iterations
    eval_per_suite: NonNegativeInt = 10  # held-out examples per suite in the periodic scorecard (0: none)
    log_interval: PositiveInt = 1  # print a progress line every this many iterations
    # system
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA), bfloat16, float32
    compile: bool = False  # torch.compile the policy and value model for the PPO epochs
    seed: int = 1337  # seed for prompts and sampling


# ----------------------------------------------------------------------------- rollouts


class PolicyAndValue(nn.Module):
    """Policy and value model under one module, so one optimizer and one DDP wrapper serve both."""

    def __init__(self, policy, value=None):
        super().__init__()
        self.policy, self.value = policy, value

    def forward(self, ids, temperature, with_value=True):
        logits, _ = self.policy(ids)
        values = self.value.score(ids) if self.value is not None and with_value else None
        return logits.float() / temperature, values


def rollout_tensors(tokenizer, prompts, replies, device):
    """Rollouts -> right-padded token ids (B, T) and masks over positions (B, T - 1) that line up
    with the predictions: position t holds what is known about token t + 1 (its log-prob under
    the logits at t, the value of the state before it).
      action: 1 where token t + 1 was generated by the policy (0 on prompt, tool output, padding)
      last:   1 at the last generated token of each reply (where the score is added)"""
    seqs = [tokenizer.render_prompt(p) + r.tokens for p, r in zip(prompts, replies)]
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), tokenizer.eot, dtype=torch.long)
    action = torch.zeros((len(seqs), T - 1))
    last = torch.zeros((len(seqs), T - 1))
    for i, (seq, reply) in enumerate(zip(seqs, replies)):
        ids[i, :len(seq)] = torch.tensor(seq)
        start = len(seq) - len(reply.tokens) - 1  # position predicting the reply's first token
        action[i, start:start + len(reply.tokens)] = torch.tensor(reply.action_mask, dtype=torch.float)
        generated = [start + k for k, a in enumerate(reply.action_mask) if a]
        if generated:
            last[i, generated[-1]] = 1
    return ids.to(device), action.to(device), last.to(device)


@torch.no_grad()
def forward_in_chunks(fn, ids, micro_batch_size):
    """fn over the rows of ids in the same micro-batches that training uses (identical shapes,
    so the first minibatch reproduces these numbers exactly: ratio 1)."""
    outs = [fn(ids[i:i + micro_batch_size]) for i in range(0, len(ids), micro_batch_size)]
    return [torch.cat(parts) if parts[0] is not None else None for parts in zip(*outs)]


def policy_outputs(model, ids, temperature):
    """Log-probs of each next token (B, T - 1), entropy (B, T - 1) and values (B, T - 1) or None."""
    logits, values = model(ids, temperature)
    logits = logits[:, :-1]
    logprobs = token_logprobs(logits, ids[:, 1:])
    entropy = torch.distributions.Categorical(logits=logits).entropy()
    return logprobs, entropy, values[:, :-1] if values is not None else None


# ----------------------------------------------------------------------------- advantages


def nll_loss(model, examples, pad_id, device):
    """Mean NLL per masked token of examples [(ids, loss mask)], with the policy's logits at
    temperature 1 (the value model is not run)."""
    x, y = pad_batch(examples, pad_id, device)  # (B, T) inputs, (B, T) targets, -1 where masked
    logits, _ = model(x, 1.0, with_value=False)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-1)


def masked_mean(x, mask, dim=None):
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1) if dim is not None else (x * mask).sum() / mask.sum()


def whiten(x, mask, rt, shift_mean=True):
    """Normalise x to mean 0, std 1 over the real (mask = 1) tokens of the global batch; padding
    never enters the statistics."""
    stats = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).double()
    if rt.ddp:
        torch.distributed.all_reduce(stats)
    mean = stats[0] / stats[2]
    var = stats[1] / stats[2] - mean ** 2
    out = (x - mean.float()) * torch.rsqrt(var.float() + 1e-8)
    return (out if shift_mean else out + mean.float()) * mask


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
    groups = scores.view(-1, group_size)
    normalised = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + eps)
    return normalised.view(-1)


def leave_one_out_advantages(rewards, group_size):
    """RLOO: each reply's reward minus the mean reward of the other group_size - 1 replies to the
    same prompt (Kool et al. 2019; Ahmadian et al. 2024). The baseline never sees the reply it
    judges, so the estimate stays unbiased; it equals k / (k - 1) * (r_i - group mean)."""
    groups = rewards.view(-1, group_size)  # (prompts, k)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).view(-1)


# ----------------------------------------------------------------------------- losses


def clipped_policy_loss(logprobs, old_logprobs, advantages, action, clip_range, per_sequence=False):
    """PPO's clipped surrogate (Schulman et al. 2017), as a loss: the mean over generated tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)); per_sequence: the mean over each reply's
    tokens, then over replies (GRPO's 1/G sum_i 1/|o_i| sum_t). Also the ratio and clip fraction."""
    ratio = torch.exp(logprobs - old_logprobs)
    losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    clipped = ((ratio - 1).abs() > clip_range).float()
    loss = masked_mean(losses, action, dim=1).mean() if per_sequence else masked_mean(losses, action)
    return loss, ratio, masked_mean(clipped, action)


def clipped_value_loss(values, old_values, returns, action, clip_range_value):
    """0.5 * max((V - R)^2, (V_clipped - R)^2), V_clipped within clip_range_value of the rollout's value."""
    clipped = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), action)


def k3_kl(logprobs, ref_logprobs):
    """The k3 estimator of KL(pi || ref) per token (Schulman 2020), as GRPO uses it:
    exp(ref - logp) - (ref - logp) - 1, unbiased and never negative."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


class AdaptiveKL:
    """Ziegler et al.'s controller: raise beta when the KL is above target, lower it when below,
    by at most 20% per horizon of rollouts."""

    def __init__(self, beta, target, horizon):
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl, n_rollouts):
        if self.target is not None:
            error = float(np.clip(kl / self.target - 1, -0.2, 0.2))
            self.beta *= 1 + error * n_rollouts / self.horizon


# ----------------------------------------------------------------------------- scores


@torch.no_grad()
def reward_model_scores(reward_model, ids, action, rt):
    """The reward model's score of each rollout, on exactly the tokens that were sampled, pooled
    over the policy's own tokens (tool results excluded) as in reward.py's training."""
    reply_mask = F.pad(action, (1, 0)) > 0  # (B, T): action[t] is about token t + 1
    with rt.autocast():
        return reward_model.reward(ids, reply_mask)


def score_rollouts(cfg, rows, replies, ids, action, reward_model, rt):
    """(scores used for training, gold rewards or None, accuracy or None) for the rollouts; a
    reply that never ended its turn scores missing_eos_score either way. accuracy: the share of
    replies whose main behaviour the world's checker accepts (right answer, refusal, ...)."""
    gold = accuracy = None
    if all("info" in r for r in rows):
        checks = [score(r, x.messages, x.ended) for r, x in zip(rows, replies)]
        gold = torch.tensor([gold_reward(r, x.messages, x.ended, scores=s) for r, x, s in zip(rows, replies, checks)],
                            device=rt.device)
        accuracy = sum(s[MAIN_BEHAVIOUR[r["info"]["category"]]] for r, s in zip(rows, checks)) / len(rows)
    scores = gold.clone() if cfg.reward == "gold" else reward_model_scores(reward_model, ids, action, rt)
    ended = torch.tensor([x.ended for x in replies], device=rt.device)
    scores = torch.where(ended, scores.float(), torch.full_like(scores.float(), cfg.missing_eos_score))
    return scores, gold, accuracy


# ----------------------------------------------------------------------------- main


def load_prompts(cfg):
    """The prompt rows, every one checked now (not hours later, when it is sampled)."""
    ensure_world(cfg.prompts)  # a fresh clone: generate the built-in world first (a few seconds)
    rows = []
    for line, row in read_jsonl(cfg.prompts):
        where = f"{cfg.prompts}:{line}"
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), list):
            raise UserError(f'{where}: expected {{"prompt": [messages], ...}}')
        try:
            check_messages(row["prompt"])
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if row["prompt"][-1]["role"] != "user":
            raise UserError(f"{where}: a prompt ends with a user message, not {row['prompt'][-1]['role']!r}")
        if not isinstance(row.get("info", {}), dict):
            raise UserError(f"{where}: 'info' must be an object")
        rows.append((where, row))
    if cfg.prompt_categories:
        keep = set(cfg.prompt_categories.split(","))
        rows = [(w, r) for w, r in rows if r.get("info", {}).get("category") in keep]
        if not rows:
            raise UserError(f"no prompt in {cfg.prompts} has a category in --prompt_categories={cfg.prompt_categories}")
    if cfg.reward == "gold" and not all("info" in r for _, r in rows):
        raise UserError("--reward=gold needs the world's prompts (rows with an 'info' field)")
    return rows


def load_nll_examples(cfg, tokenizer, block_size, rt):
    """The chosen replies of the preference pairs, as (ids, loss mask on the reply), for the NLL term."""
    ensure_world(cfg.nll_data)
    pairs, report = load_preferences(cfg.nll_data, tokenizer, block_size)
    rt.print(f"{report}: their chosen replies enter the loss with weight nll_coef={cfg.nll_coef}")
    return [p["chosen"] for p in pairs]


def drop_long_prompts(rows, tokenizer, block_size, cfg, rt):
    """Keep the prompts that leave max_new_tokens of room in the context. One rule, applied at
    load and counted: a long prompt is dropped, never cut (a cut prompt may lose the question).
    Batches are left-padded to their longest prompt, so this is also what gives every reply in a
    batch its full max_new_tokens."""
    kept, dropped = [], []
    for where, row in rows:
        if len(tokenizer.render_prompt(row["prompt"])) + cfg.max_new_tokens <= block_size:
            kept.append(row)
        else:
            dropped.append(where)
    if not kept:
        raise UserError(f"every prompt in {cfg.prompts} is too long to leave --max_new_tokens={cfg.max_new_tokens} "
                        f"tokens of room in the context of {block_size}; lower --max_new_tokens")
    rt.print(f"{cfg.prompts}: {len(kept):,} prompts" + (
        f"; {len(dropped)} dropped, longer than block_size={block_size} - max_new_tokens={cfg.max_new_tokens} "
        f"(first: {dropped[0]})" if dropped else ""))
    return kept


def load_models(cfg, rt):
    hint = "make it with `python sft.py` first"
    policy, tokenizer, _ = load_model(cfg.init_from, rt.device, dropout=0.0, hint=hint,  # dropout off: exact ratios
                                      expect="policy")
    ref, _, _ = load_model(cfg.init_from, rt.device, dropout=0.0, hint=hint, expect="policy")
    ref.eval().requires_grad_(False)
    reward_model = value = None
    if cfg.reward == "model":
        reward_model, rm_tokenizer, _ = load_model(cfg.reward_model, rt.device, dropout=0.0, expect="reward",
                                                   what="--reward_model", hint="make it with `python reward.py` first")
        if rm_tokenizer.spec != tokenizer.spec:
            raise UserError(f"--reward_model={cfg.reward_model} has another tokenizer than the policy")
        reward_model.eval().requires_grad_(False)
    if cfg.algo == "ppo":
        # the value model starts from the reward model (Ouyang et al.), else from the SFT model with a new head
        source = cfg.reward_model if os.path.exists(os.path.join(repo_path(cfg.reward_model), "ckpt.pt")) \
            else cfg.init_from
        value, _, _ = load_model(source, rt.device, dropout=0.0, scalar_head=True)
    return policy, ref, reward_model, value, tokenizer


def main():
    cfg = parse_config(PPOConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed)
    run_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt)  # locked until the run ends
    rows = load_prompts(cfg)
    world = world_folder(cfg.prompts)
    suites = load_suites(world, cfg.eval_per_suite) if cfg.eval_per_suite and world else None
    tools = Tools.with_encyclopedia(world)  # the rollouts call tools as a chat would
    grouped = cfg.algo in ("grpo", "rloo")  # several replies per prompt, judged against each other
    if cfg.algo == "rloo" and cfg.group_size < 2:
        raise UserError("--algo=rloo needs --group_size of at least 2: the baseline is the other replies' mean")
    per_rank = cfg.rollout_batch // rt.world_size * (cfg.group_size if grouped else 1)
    minibatch = cfg.minibatch_size // rt.world_size
    if cfg.rollout_batch % rt.world_size or per_rank % minibatch or minibatch % cfg.micro_batch_size:
        raise UserError("rollout_batch, minibatch_size and micro_batch_size must divide evenly over processes")

    # models: policy, frozen reference, reward model (unless the reward is gold) and value model (PPO)
    policy, ref, reward_model, value, tokenizer = load_models(cfg, rt)
    # every model reads prompt + reply: the smallest context of them bounds the prompts
    block_size = min(m.config.block_size for m in (policy, reward_model, value) if m is not None)
    rows = drop_long_prompts(rows, tokenizer, block_size, cfg, rt)
    nll_examples = load_nll_examples(cfg, tokenizer, block_size, rt) if cfg.nll_coef else None
    raw_model = PolicyAndValue(policy, value)
    optimizer = policy.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2), rt.device.type,
                                           extra_modules=[value] if value is not None else [])
    kl_control = AdaptiveKL(cfg.beta, cfg.target_kl, cfg.kl_horizon)
    start_step = 0
    if cfg.resume:  # the policy, the optimizer, and the value model and KL coefficient, which train too
        checkpoint = load_for_resume(cfg.out_dir, cfg.algo, cfg, rt)
        policy.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if value is not None:
            value.load_state_dict(checkpoint["value_model"])
        start_step, kl_control.beta = checkpoint["step"], checkpoint["kl_beta"]
        rt.print(f"resuming from step {start_step} of {cfg.out_dir}/ckpt.pt")
    model = torch.compile(raw_model) if cfg.compile else raw_model
    model = wrap_ddp(model, rt)
    autocast = rt.autocast()
    run_folder.begin()  # inputs all checked: from here on the run writes out_dir
    log = MetricsLog(cfg.out_dir, rt, cfg.max_steps, cfg.log_interval, start_step, cfg.resume)
    rt.print(f"{cfg.algo.upper()}: {len(rows)} prompts, {cfg.rollout_batch} per iteration"
             + (f" x {cfg.group_size} replies" if grouped else "")
             + f", reward: {'the reward model ' + cfg.reward_model if cfg.reward == 'model' else 'gold (rules)'}, "
               f"beta {kl_control.beta}{' adaptive' if cfg.target_kl else ''}")

    def evaluate_and_save(step, batch_rows=None, replies=None, scores=None, gold=None):
        """The scorecard sample and a table of this iteration's rollouts; ckpt.pt."""
        metrics = {}
        if suites and rt.is_master:
            scorecard, _ = chat_scorecard(policy, tokenizer, suites, tools, rt)
            metrics = {f"eval/{k}": v for k, v in scorecard.items()}
        log.report(step, **metrics)
        if rt.is_master:
            if replies is not None:
                write_samples(cfg.out_dir, step, batch_rows, replies, scores, gold)
            checkpoint = {"stage": cfg.algo, "step": step, "model": policy.state_dict(),
                          "model_config": asdict(policy.config), "tokenizer": tokenizer.spec,
                          "config": asdict(cfg), "metrics": metrics, "optimizer": optimizer.state_dict(),
                          "kl_beta": kl_control.beta}
            if value is not None:
                checkpoint["value_model"] = value.state_dict()
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), checkpoint)
            plot(log, suites)

    # the training loop: one iteration = rollouts, scores, advantages, then ppo_epochs of minibatch steps
    params = [p for group in optimizer.param_groups for p in group["params"]]  # clipped as one vector
    if start_step == 0:
        if rt.is_master:  # a fresh run starts a fresh table of samples
            with open(os.path.join(cfg.out_dir, "samples.md"), "w") as f:
                f.write(f"# {cfg.algo.upper()} rollouts: prompt, reply, training score, gold reward\n")
        evaluate_and_save(0)
    for step in range(start_step + 1, cfg.max_steps + 1):
        seed_step(cfg.seed, step, rt.rank)
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # 1. rollouts
        batch_rows = [rows[i] for i in rank_slice(batch_indices(cfg.seed, step, len(rows), cfg.rollout_batch), rt)]
        if grouped:
            batch_rows = [r for r in batch_rows for _ in range(cfg.group_size)]
        prompts = [r["prompt"] for r in batch_rows]
        generator = torch.Generator(device=rt.device).manual_seed(derived_seed(cfg.seed, step, rt.rank))
        replies = respond(policy, tokenizer, prompts, cfg.max_new_tokens, cfg.temperature, tools=tools,
                          generator=generator)
        ids, action, last = rollout_tensors(tokenizer, prompts, replies, rt.device)
        # 2. scores; 3. old and reference log-probs, values
        scores, gold, accuracy = score_rollouts(cfg, batch_rows, replies, ids, action, reward_model, rt)
        with autocast:
            old_logprobs, entropy, old_values = forward_in_chunks(
                lambda x: policy_outputs(raw_model, x, cfg.temperature), ids, cfg.micro_batch_size)
            ref_logprobs, = forward_in_chunks(
                lambda x: (token_logprobs(ref(x)[0][:, :-1].float() / cfg.temperature, x[:, 1:]),), ids,
                cfg.micro_batch_size)
        # 4. rewards and advantages
        if cfg.algo == "ppo":
            rewards, kl = per_token_rewards(scores, old_logprobs, ref_logprobs, action, last, kl_control.beta)
            advantages, returns = gae(rewards, old_values, action, cfg.gamma, cfg.lam)
            advantages = whiten(advantages, action, rt)
        else:  # GRPO, RLOO: one advantage per reply, on every token it generated; no value model
            kl = (old_logprobs - ref_logprobs) * action
            if cfg.algo == "grpo":
                per_reply = group_advantages(scores, cfg.group_size)
            else:  # RLOO: the KL penalty folded into each reply's reward, the whole reply one action (as TRL)
                per_reply = leave_one_out_advantages(scores - kl_control.beta * kl.sum(1), cfg.group_size)
            advantages, returns = per_reply[:, None] * action, None
        # 5. PPO epochs over minibatches: one optimizer step per minibatch
        stats = {"loss/policy": [], "loss/value": [], "loss/kl": [], "loss/nll": [], "policy/approxkl": [],
                 "policy/clipfrac": [], "policy/ratio": []}
        order_gen = torch.Generator().manual_seed(derived_seed(cfg.seed, step, rt.rank, 1))
        nll_rng = np.random.default_rng(derived_seed(cfg.seed, step, rt.rank, 2))
        for epoch in range(cfg.ppo_epochs):
            # the first pass keeps the rollout order, so its first minibatch sees ratio == 1 exactly
            order = torch.arange(len(ids)) if epoch == 0 else torch.randperm(len(ids), generator=order_gen)
            for start in range(0, len(ids), minibatch):
                minibatch_rows = order[start:start + minibatch]
                chunks = list(minibatch_rows.split(cfg.micro_batch_size))
                for micro_step, chunk in enumerate(chunks):
                    if nll_examples:
                        # The NLL of as many preferred replies, at temperature 1 (PPO-ptx, Ouyang et al.
                        # 2022, with the preference data's chosen replies where InstructGPT used
                        # pretraining text; as dpo.py's RPO term). The reward model misjudges what it
                        # cannot compare (a quoted word list against the python result, a persona's
                        # name), and PPO drifts there; this term holds those skills in place.
                        picks = nll_rng.integers(len(nll_examples), size=len(chunk))
                        if rt.ddp:  # its gradients are all-reduced with the PPO loss's, below
                            model.require_backward_grad_sync = False
                        with autocast:
                            nll = nll_loss(model, [nll_examples[i] for i in picks], tokenizer.eot, rt.device)
                        (cfg.nll_coef * nll * len(chunk) / len(minibatch_rows)).backward()
                        stats["loss/nll"].append(nll.item())
                    if rt.ddp:  # all-reduce the gradients once per minibatch, in the last micro-step's backward
                        model.require_backward_grad_sync = micro_step == len(chunks) - 1
                    with autocast:
                        logprobs, _, values = policy_outputs(model, ids[chunk], cfg.temperature)
                        pg_loss, ratio, clipfrac = clipped_policy_loss(
                            logprobs, old_logprobs[chunk], advantages[chunk], action[chunk], cfg.clip_range,
                            per_sequence=grouped)
                        if cfg.algo == "ppo":
                            value_loss = clipped_value_loss(values, old_values[chunk], returns[chunk], action[chunk],
                                                            cfg.clip_range_value)
                            loss = pg_loss + cfg.vf_coef * value_loss
                            stats["loss/value"].append(value_loss.item())
                        elif cfg.algo == "grpo":  # the KL to the reference is a loss term, not a reward penalty
                            kl_loss = masked_mean(k3_kl(logprobs, ref_logprobs[chunk]), action[chunk], dim=1).mean()
                            loss = pg_loss + kl_control.beta * kl_loss
                            stats["loss/kl"].append(kl_loss.item())
                        else:  # RLOO: the KL is in the advantages already
                            loss = pg_loss
                        loss = loss * len(chunk) / len(minibatch_rows)  # this micro-batch's share of the minibatch
                    loss.backward()
                    log_ratio = (logprobs - old_logprobs[chunk]).detach()
                    stats["loss/policy"].append(pg_loss.item())
                    stats["policy/approxkl"].append(0.5 * masked_mean(log_ratio ** 2, action[chunk]).item())
                    stats["policy/clipfrac"].append(clipfrac.item())
                    stats["policy/ratio"].append(masked_mean(ratio.detach(), action[chunk]).item())
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        # metrics: per reply, averaged over every process's rollouts
        kl_per_reply = kl.sum(1)
        kl_control.update(rt.all_reduce_mean(kl_per_reply.mean().item()), cfg.rollout_batch)
        values_logged = {
            "objective/scores": scores.mean().item(), "objective/kl": kl_per_reply.mean().item(),
            "objective/entropy": masked_mean(entropy, action).item(),
            "objective/rlhf_reward": (scores - kl_control.beta * kl_per_reply).mean().item(),
            "reply_length": action.sum(1).mean().item(),
            **{k: float(np.mean(v)) for k, v in stats.items() if v}}
        if gold is not None:
            values_logged["objective/gold_reward"] = gold.mean().item()
            values_logged["objective/accuracy"] = accuracy
        log.step(step, lr=lr, grad_norm=grad_norm.item(), beta=kl_control.beta, **values_logged)
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            evaluate_and_save(step, batch_rows, replies, scores, gold)
    if start_step < cfg.max_steps:
        log.finished(f"wrote {cfg.out_dir}/ckpt.pt, metrics.jsonl, ppo.png, samples.md")
    run_folder.release()


def write_samples(out_dir, step, rows, replies, scores, gold, n=6):
    """Append a table of (prompt, reply, score, gold reward) from this iteration's rollouts."""
    lines = [f"\n## step {step}\n", "| prompt | reply | score | gold |", "|---|---|---:|---:|"]
    for i in range(min(n, len(rows))):
        prompt = rows[i]["prompt"][-1]["content"].replace("|", "/")
        reply = describe(replies[i]).replace("|", "/").replace("\n", " ")
        g = f"{gold[i].item():.2f}" if gold is not None else "-"
        lines.append(f"| {prompt} | {reply} | {scores[i].item():.2f} | {g} |")
    with open(os.path.join(out_dir, "samples.md"), "a") as f:
        f.write("\n".join(lines) + "\n")


def plot(log, suites):
    log.plot("ppo.png", {
        "reward": ["objective/scores", "objective/gold_reward", "objective/rlhf_reward", "objective/accuracy"],
        "KL to reference (per reply)": ["objective/kl"],
        "policy": ["policy/approxkl", "policy/clipfrac", "objective/entropy"],
        "losses": ["loss/policy", "loss/value", "loss/kl", "loss/nll"]}, title="RLHF")
    if suites:
        plot_scorecard(log, "RL")


if __name__ == "__main__":
    run_main(main)

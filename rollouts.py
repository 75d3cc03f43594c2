"""
Rollouts: what ppo.py and grpo.py share to learn from the policy's own replies.

    load_policy_models(...)  the policy, its frozen reference and the reward model
    load_prompts(...)        the RL prompts, every row checked before the first step
    sample_rollouts(...)     a step's batch of prompts answered by the policy, tool calls executed
                             (generation.respond), laid out as token tensors with a mask over the
                             tokens the policy generated (Rollouts)
    training_scores(...)     the score each rollout is trained on: the reward model read over the
                             policy's own tokens, or the world's gold reward (a verifier)
    reference_logprobs(...)  the frozen reference's per-token log-probs over the rollouts
    rollout_metrics(...)     scores, KL, entropy and gold reward per reply, for the progress line
    load_nll_examples(...)   the preferred replies of the PPO-ptx term
    write_samples(...)       a table of a step's rollouts with their scores, for a reader
"""

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from checkpoint import load_model
from cli import UserError, check_default_follows
from data.world.prepare import ensure_world
from data_formats import holds_conversations, load_conversations, load_preferences, read_jsonl
from evaluation import check_world_row, has_category
from generation import describe, respond
from model import token_logprobs
from runtime import batch_indices, derived_seed, rank_slice
from tokenizer import check_messages

# ----------------------------------------------------------------------------- models and prompts


def load_policy_models(cfg, rt):
    """The policy and its frozen reference, both from init_from (dropout off, so that the ratios are
    exact), and the reward model (None with --reward=gold)."""
    hint = "make it with `python sft.py` first"
    policy, tokenizer, _ = load_model(cfg.init_from, rt.device, dropout=0.0, hint=hint, expect="policy")
    ref, _, _ = load_model(cfg.init_from, rt.device, dropout=0.0, hint=hint, expect="policy")
    ref.eval().requires_grad_(False)
    reward_model = None
    if cfg.reward == "model":
        reward_model, rm_tokenizer, _ = load_model(cfg.reward_model, rt.device, dropout=0.0, expect="reward",
                                                   what="--reward_model", hint="make it with `python reward.py` first")
        if rm_tokenizer.spec != tokenizer.spec:
            raise UserError(f"--reward_model={cfg.reward_model} has another tokenizer than the policy")
        reward_model.eval().requires_grad_(False)
    return policy, ref, reward_model, tokenizer


def load_prompts(path, categories=None, need_info=False):
    """The prompt rows of a JSONL file {"prompt": [messages], "info": {...}}, each checked now (not
    hours later, when it is sampled), as (where, row); categories: a comma list of the info.category
    values to keep; need_info: every row must carry info (the gold reward reads it)."""
    ensure_world(path)  # a fresh clone: generate the built-in world first (a few seconds)
    rows = []
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
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
        try:
            check_world_row(row)  # what the gold reward will read, checked now
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        rows.append((where, row))
    if categories:
        keep = set(categories.split(","))
        rows = [(w, r) for w, r in rows if r.get("info", {}).get("category") in keep]
        if not rows:
            raise UserError(f"no prompt in {path} has a category in --prompt_categories={categories}")
    if need_info and not all(has_category(r) for _, r in rows):
        raise UserError("--reward=gold needs the world's prompts (rows with an info.category for the checkers)")
    return rows


def drop_long_prompts(rows, tokenizer, block_size, max_new_tokens, path, rt):
    """Keep the prompts that leave max_new_tokens of room in the context. One rule, applied at
    load and counted: a long prompt is dropped, never cut (a cut prompt may lose the question).
    Batches are left-padded to their longest prompt, so this is also what gives every reply in a
    batch its full max_new_tokens."""
    kept, dropped = [], []
    for where, row in rows:
        if len(tokenizer.render_prompt(row["prompt"])) + max_new_tokens <= block_size:
            kept.append(row)
        else:
            dropped.append(where)
    if not kept:
        raise UserError(f"every prompt in {path} is too long to leave --max_new_tokens={max_new_tokens} "
                        f"tokens of room in the context of {block_size}; lower --max_new_tokens")
    rt.print(f"{path}: {len(kept):,} prompts" + (
        f"; {len(dropped)} dropped, longer than block_size={block_size} - max_new_tokens={max_new_tokens} "
        f"(first: {dropped[0]})" if dropped else ""))
    return kept


def load_nll_examples(cfg, tokenizer, block_size, rt):
    """The replies the NLL term fits, as (ids, loss mask on the reply): the chosen replies of
    cfg.nll_data's preference pairs, or the assistant turns of its SFT conversations (rows with
    "messages"); the world's pairs only go with the world's prompts."""
    check_default_follows(cfg, "prompts", "nll_data", "--nll_coef=0 to train without the NLL term")
    path, nll_coef = cfg.nll_data, cfg.nll_coef
    ensure_world(path)
    if holds_conversations(path):
        examples, report = load_conversations(path, tokenizer, block_size)
        rt.print(f"{report}: their assistant turns enter the loss with weight nll_coef={nll_coef}")
        return examples
    pairs, report = load_preferences(path, tokenizer, block_size)
    rt.print(f"{report}: their chosen replies enter the loss with weight nll_coef={nll_coef}")
    return [p["chosen"] for p in pairs]


# ----------------------------------------------------------------------------- sampling


@dataclass
class Rollouts:
    """A step's replies, in the views the losses need. Masks over positions (B, T - 1) line up with
    the predictions: position t holds what is known about token t + 1 (its log-prob under the
    logits at t, the value of the state before it)."""
    rows: list  # the prompt rows (their info is what the checkers read)
    replies: list  # generation.Reply of each row: messages for people and checkers, tokens for the losses
    ids: torch.Tensor  # (B, T) prompt + reply tokens, right-padded
    action: torch.Tensor  # (B, T - 1) 1 where token t + 1 was generated by the policy (0: prompt, tool output, padding)
    last: torch.Tensor  # (B, T - 1) 1 at the last generated token of each reply (where a score lands)


def sample_rollouts(policy, tokenizer, rows, tools, step, cfg, rt, group_size=1):
    """Step `step`'s prompts (a pure function of (seed, step); this process's slice of them), each
    answered group_size times at cfg.temperature, tools executed as in a chat."""
    batch_rows = [rows[i] for i in rank_slice(batch_indices(cfg.seed, step, len(rows), cfg.rollout_batch), rt)]
    batch_rows = [r for r in batch_rows for _ in range(group_size)]  # a prompt's group of replies side by side
    prompts = [r["prompt"] for r in batch_rows]
    generator = torch.Generator(device=rt.device).manual_seed(derived_seed(cfg.seed, step, rt.rank))
    replies = respond(policy, tokenizer, prompts, cfg.max_new_tokens, cfg.temperature, tools=tools,
                      generator=generator)
    return Rollouts(batch_rows, replies, *rollout_tensors(tokenizer, prompts, replies, rt.device))


def rollout_tensors(tokenizer, prompts, replies, device):
    """Replies -> right-padded token ids (B, T) and the action and last masks (B, T - 1) of Rollouts."""
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


# ----------------------------------------------------------------------------- scores and log-probs


@torch.no_grad()
def reward_model_scores(reward_model, ids, action, rt):
    """The reward model's score of each rollout, on exactly the tokens that were sampled, pooled
    over the policy's own tokens (tool results excluded) as in reward.py's training."""
    reply_mask = F.pad(action, (1, 0)) > 0  # (B, T): action[t] is about token t + 1
    with rt.autocast():
        return reward_model.reward(ids, reply_mask)


def training_scores(rollouts, reward_model, gold, missing_eos_score, rt):
    """The score (B,) each rollout is trained on: the reward model's (reward_model not None), else
    the gold reward given. A reply that never ended its turn scores missing_eos_score either way
    (it replaces the score; TRL's missing_eos_penalty subtracts from it instead)."""
    scores = reward_model_scores(reward_model, rollouts.ids, rollouts.action, rt) if reward_model is not None \
        else gold.to(rt.device)
    ended = torch.tensor([x.ended for x in rollouts.replies], device=rt.device)
    return torch.where(ended, scores.float(), torch.full_like(scores.float(), missing_eos_score))


@torch.no_grad()
def reference_logprobs(ref, ids, temperature, micro_batch_size):
    """Log-probs (B, T - 1) of each next token under the frozen reference, with the logits divided
    by the sampling temperature as the policy's are, in the micro-batches that training uses."""
    return torch.cat([token_logprobs(ref(x)[0][:, :-1].float() / temperature, x[:, 1:])
                      for x in ids.split(micro_batch_size)])


def rollout_metrics(scores, kl, entropy, action, beta, gold, accuracy):
    """Per reply, averaged over this process's rollouts: what the progress line and metrics.jsonl
    show (TRL's names). kl: (B, T - 1) log pi - log ref on the generated tokens."""
    kl_per_reply = kl.sum(1)
    values = {"objective/scores": scores.mean().item(), "objective/kl": kl_per_reply.mean().item(),
              "objective/entropy": masked_mean(entropy, action).item(),
              "objective/rlhf_reward": (scores - beta * kl_per_reply).mean().item(),
              "reply_length": action.sum(1).mean().item()}
    if gold is not None:
        values["objective/gold_reward"], values["objective/accuracy"] = gold.mean().item(), accuracy
    return values


def masked_mean(x, mask, dim=None):
    """The mean of x over the positions where mask is 1 (all of them, or along dim)."""
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1) if dim is not None else (x * mask).sum() / mask.sum()


# ----------------------------------------------------------------------------- samples for a reader


def start_samples(out_dir, title):
    """A fresh samples.md for a new run (a resumed run appends to its own)."""
    with open(os.path.join(out_dir, "samples.md"), "w") as f:
        f.write(f"# {title}: prompt, reply, training score, gold reward\n")


def write_samples(out_dir, step, rollouts, scores, gold, n=6):
    """Append a table of (prompt, reply, score, gold reward) from this step's rollouts."""
    lines = [f"\n## step {step}\n", "| prompt | reply | score | gold |", "|---|---|---:|---:|"]
    for i in range(min(n, len(rollouts.rows))):
        prompt = rollouts.rows[i]["prompt"][-1]["content"].replace("|", "/")
        reply = describe(rollouts.replies[i]).replace("|", "/").replace("\n", " ")
        g = f"{gold[i].item():.2f}" if gold is not None else "-"
        lines.append(f"| {prompt} | {reply} | {scores[i].item():.2f} | {g} |")
    with open(os.path.join(out_dir, "samples.md"), "a") as f:
        f.write("\n".join(lines) + "\n")

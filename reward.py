"""
Stage 3a, the reward model: a learned stand-in for human raters, trained on preference pairs
with the Bradley-Terry model (Christiano et al. 2017; Ouyang et al. 2022). PPO optimises it.

    python reward.py                              # from out/sft on the world's pairs, CPU, ~9 min
    python reward.py --init_from=out/sft_gpt2 --data=data/hh_rlhf/train.jsonl \\
                     --val_data=data/hh_rlhf/val.jsonl --out_dir=out/reward_hh   # GPU
    python reward.py --lora_rank=8 --out_dir=out/reward_lora   # LoRA adapters; the scalar head trains fully
    python reward.py --score=pairs.jsonl          # score {"prompt", "reply"} rows with out/reward

The model is the GPT body with a scalar head, one number per position, averaged over the reply's
own tokens (--pooling=mean; prompt and tool results excluded) or read at its end-of-turn token
(--pooling=last, as in InstructGPT). For a pair with rewards r_c (chosen) and r_r (rejected):

    loss = -log sigmoid(r_c - r_r - margin) + center_coef * mean((r_c + r_r)^2)

The first term is the Bradley-Terry likelihood that the chosen reply wins; the optional margin
asks for a minimum gap (Llama 2); the centering term keeps rewards near zero (Eisenstein et al.
2023). With --lm_coef, the chosen replies' next-token NLL, from the same forward pass, is added
with that weight: the text-generation regulariser of GRM (Yang et al. 2024), which keeps the
body a language model. After training, the head's bias is shifted so that the chosen replies
score 0 on average: rewards then mean "better or worse than the demonstrations", a natural zero
for PPO.
"""

import json
import os
from dataclasses import asdict, dataclass
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F

from batching import pack_sequences, pad_batch, pad_right, unpack
from checkpoint import load_for_resume, load_model, model_weights, restore_weights, save_checkpoint
from cli import (DType, Device, Folder, Fraction01, NonNegativeFloat, NonNegativeInt, OneOf, Path, PositiveFloat,
                 PositiveInt, UserError, check_default_follows, parse_config, run_main)
from data.world.prepare import ensure_world, world_folder
from data_formats import ReplyTooLong, as_messages, load_preferences, read_jsonl, render_pair
from evaluation import gold_reward
from generation import respond
from lora import apply_lora, count_trainable
from metrics import MetricsLog
from model import REWARD_POOLINGS, pool_reward
from run_folder import claim_run_folder
from tools import Tools
from runtime import batch_indices, batch_per_process, lr_at, seed_step, setup_runtime, wrap_ddp
from tokenizer import check_messages


SHIFT_PAIRS = 2000  # training pairs whose chosen replies set the reward's zero


@dataclass
class RewardConfig:
    # data and output
    init_from: str = "out/sft"  # the model whose body the reward model starts from (a run folder, or gpt2...)
    data: Path = "data/world/prefs_train.jsonl"  # preference pairs (JSONL, TRL format)
    val_data: Optional[Path] = "data/world/prefs_val.jsonl"  # held-out pairs (None: skip)
    out_dir: Folder = "out/reward"  # checkpoints, metrics.jsonl and plots go here
    resume: bool = False  # continue from out_dir/ckpt.pt exactly where it stopped
    overwrite: bool = False  # replace a run already in out_dir (its checkpoints, metrics and plots)
    # model and loss
    pooling: Annotated[str, OneOf(REWARD_POOLINGS)] = "mean"  # the reward: the scalar head averaged over the
    #                                                            reply's tokens (mean) or at its last token (last)
    margin: NonNegativeFloat = 0.0  # ask for r_chosen - r_rejected >= margin (0: plain Bradley-Terry)
    center_coef: NonNegativeFloat = 0.01  # reward centering coefficient (Eisenstein et al.): keeps the scale in check
    lm_coef: NonNegativeFloat = 0.0  # weight of the chosen replies' NLL (GRM's regulariser, Yang et al. 2024)
    # optimisation
    batch_size: PositiveInt = 32  # pairs per optimizer step, over all processes
    micro_batch_size: PositiveInt = 16  # pairs per forward/backward pass in one process (packed: fuller rows than 8)
    pack: bool = True  # pack a micro-batch's replies into full rows, each attending only to itself (less padding,
    #                    one row shape: bf16 pays on a CPU); false: one padded reply a row
    max_steps: PositiveInt = 1100  # optimizer steps (checking a reply against a quoted tool result is slow to learn)
    learning_rate: PositiveFloat = 1e-4  # peak learning rate
    min_lr: NonNegativeFloat = 1e-5  # learning rate at the end of the cosine decay
    warmup_steps: NonNegativeInt = 20  # linear warmup from 0
    weight_decay: NonNegativeFloat = 0.1  # AdamW weight decay on matrices
    beta1: Fraction01 = 0.9  # AdamW beta1
    beta2: Fraction01 = 0.95  # AdamW beta2
    grad_clip: NonNegativeFloat = 1.0  # clip the gradient norm to this (0: off)
    # LoRA (lora.py): train the new scalar head and low-rank adapters of the frozen model instead of all its weights
    lora_rank: NonNegativeInt = 0  # rank of the adapters (0: full fine-tuning)
    lora_alpha: PositiveFloat = 16.0  # the adapters' update is scaled by lora_alpha / lora_rank
    lora_dropout: Fraction01 = 0.0  # dropout on the adapters' input
    lora_targets: Annotated[str, OneOf(("attn", "mlp", "attn,mlp"))] = "attn"  # attention projections, MLP or both
    lora_embeddings: bool = False  # train the token embedding too (tied to the output layer): needed from GPT-2
    #                                weights, whose chat tokens get new rows that frozen would stay all alike
    lora_merge: bool = False  # save merged weights (a plain checkpoint), not the adapters and a pointer to init_from
    # evaluation and logging
    eval_interval: PositiveInt = 200  # val metrics and checkpoint every this many steps
    log_interval: PositiveInt = 10  # print a progress line every this many steps
    correlation_samples: NonNegativeInt = 200  # world only: SFT replies scored by both the reward model and gold_reward
    # scoring mode
    score: Optional[Path] = None  # score the {"prompt", "reply"} rows of this JSONL with out_dir's model, then exit
    # system
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA, and with --pack on a CPU with native bf16), bfloat16, float32
    compile: bool = False  # torch.compile the model
    seed: int = 1337  # seed for batches


# ----------------------------------------------------------------------------- loss


class PairScorer(torch.nn.Module):
    """The GPT with its scalar head, as one module whose forward is the training pass: DDP
    averages gradients only for what runs through the forward of the module it wraps, so the
    loop cannot call GPT.reward on it directly. forward(ids, reply_mask (N, T), targets, segments,
    where) -> the rewards (N,) pooled over the reply tokens as the model's config says, and with
    targets (B, T'), B <= N, T' <= T, -1 where masked, the LM head's mean next-token NLL on the
    first B sequences, from the same hidden states (else None). ids: (N, T), one sequence a row, or
    packed rows (R, L) with their segments and where (batching.pack_sequences)."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, ids, reply_mask, targets=None, segments=None, where=None):
        hidden = self.gpt.hidden_states(ids, segments=segments)  # (N, T, n_embd), or packed (R, L, n_embd)
        if where is not None:
            hidden = unpack(hidden, where)  # (N, T, n_embd): one sequence a row again
        values = self.gpt.scalar_head(hidden).squeeze(-1).float()  # (N, T)
        rewards = pool_reward(values, reply_mask, self.gpt.config.reward_pooling)  # (N,)
        if targets is None:
            return rewards, None
        logits = self.gpt.lm_head(hidden[:targets.size(0), :targets.size(1)])  # (B, T', vocab)
        return rewards, F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)


def pair_rewards(scorer, pairs, pad_id, device, with_nll=False, pack_length=None):
    """Rewards of the chosen and rejected replies (B,), (B,): one forward pass over both, each
    pooled over its own reply tokens; the sequences packed into rows of pack_length tokens (each
    attending only to itself), or one a row, right-padded; with_nll, also the mean NLL of the
    chosen replies' tokens (else None)."""
    examples = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    ids, reply_mask = pad_right(examples, pad_id, device)  # (2B, T); right padding never reaches real tokens (causal)
    segments = where = None
    if pack_length:
        ids, segments, where = pack_sequences(examples, pad_id, pack_length, device)  # (R, pack_length) each
    # chosen rows only: the next token where it is a reply token, else -1 (B, T'), T' < T
    targets = pad_batch([p["chosen"] for p in pairs], pad_id, device)[1] if with_nll else None
    rewards, nll = scorer(ids, reply_mask, targets, segments, where)
    return rewards[:len(pairs)], rewards[len(pairs):], nll


def bradley_terry_loss(r_chosen, r_rejected, margin=0.0, center_coef=0.0):
    """Per-pair loss (B,): -log sigmoid(r_c - r_r - margin) + center_coef * (r_c + r_r)^2."""
    return -F.logsigmoid(r_chosen - r_rejected - margin) + center_coef * (r_chosen + r_rejected) ** 2


def pair_metrics(r_chosen, r_rejected):
    margin = r_chosen - r_rejected
    rewards = torch.cat([r_chosen, r_rejected])
    return {"accuracy": (margin > 0).float().mean().item(),  # strict: a tie is not a win
            "margin": margin.mean().item(), "reward_mean": rewards.mean().item(), "reward_std": rewards.std().item()}


@torch.no_grad()
def evaluate_pairs(model, pairs, cfg, pad_id, rt, batch_size=64):
    """Loss, accuracy, margin and reward statistics on pairs; accuracy per category when the pairs
    carry one (the world's info.pair)."""
    model.eval()
    scorer = PairScorer(model)
    chosen, rejected = [], []
    for i in range(0, len(pairs), batch_size):
        with rt.autocast():
            c, r, _ = pair_rewards(scorer, pairs[i:i + batch_size], pad_id, rt.device,
                                   pack_length=model.config.block_size if cfg.pack else None)
        chosen.append(c.float())
        rejected.append(r.float())
    chosen, rejected = torch.cat(chosen), torch.cat(rejected)
    metrics = {"loss": bradley_terry_loss(chosen, rejected, cfg.margin, cfg.center_coef).mean().item(),
               **pair_metrics(chosen, rejected)}
    categories = [p["info"].get("pair") for p in pairs]
    for category in sorted({c for c in categories if c}):
        rows = torch.tensor([c == category for c in categories])
        metrics[f"accuracy/{category}"] = (chosen[rows] > rejected[rows]).float().mean().item()
    model.train()
    return metrics, chosen


# ----------------------------------------------------------------------------- reward vs gold


def gold_correlation(reward_model, cfg, tokenizer, world, rt):
    """Spearman rank correlation between the reward model and the world's gold_reward on replies
    sampled from the SFT model (what PPO will score): does the learned reward rank real
    behaviour the way the rules do?"""
    policy, _, _ = load_model(cfg.init_from, rt.device)
    rows = [row for _, row in read_jsonl(os.path.join(world, "rl_prompts.jsonl"))][:cfg.correlation_samples]
    g = torch.Generator(device=rt.device).manual_seed(cfg.seed)
    replies = respond(policy, tokenizer, [r["prompt"] for r in rows], 96, temperature=1.0,
                      tools=Tools.with_encyclopedia(world), generator=g)
    rm = score_replies(reward_model, tokenizer, [r["prompt"] for r in rows], [x.messages for x in replies], rt)
    gold = [gold_reward(row, x.messages, x.ended) for row, x in zip(rows, replies)]
    return spearman(rm, gold)


def spearman(a, b):
    """Spearman's rho: the Pearson correlation of the ranks (ties get their average rank)."""
    def ranks(x):
        x = np.asarray(x, dtype=float)
        order = x.argsort(kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # average rank within ties
            r[x == v] = r[x == v].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


# ----------------------------------------------------------------------------- main


@torch.no_grad()
def score_replies(reward_model, tokenizer, prompts, replies, rt, batch_size=32):
    """Reward-model scores of (prompt, reply) pairs (message lists or strings), pooled over the
    reply's tokens as in training."""
    reward_model.eval()
    block = reward_model.config.block_size
    scores = []
    for i in range(0, len(prompts), batch_size):
        examples = []
        for prompt, reply in zip(prompts[i:i + batch_size], replies[i:i + batch_size]):
            prompt, reply = as_messages(prompt, "user"), as_messages(reply, "assistant")
            try:
                examples.append(render_pair(tokenizer, prompt, reply, block)[:2])
            except ReplyTooLong:  # a reply longer than the context: score its last block tokens (all the reply's)
                ids, mask = tokenizer.render_chat(prompt + reply)
                end = len(ids) - len(tokenizer.newline)  # end at the last <|im_end|>, as render_pair does
                examples.append((ids[:end][-block:], mask[:end][-block:]))
        ids, reply_mask = pad_right(examples, tokenizer.eot, rt.device)
        with rt.autocast():
            scores += reward_model.reward(ids, reply_mask).tolist()
    return scores


def score_file(cfg, rt):
    """--score=FILE: print the reward of each {"prompt", "reply"} row (strings or message lists)."""
    model, tokenizer, _ = load_model(cfg.out_dir, rt.device, hint="train one with `python reward.py` first",
                                     expect="reward", what="--out_dir")
    rows = read_jsonl(cfg.score)
    for line, row in rows:
        if not isinstance(row, dict) or not {"prompt", "reply"} <= row.keys():
            raise UserError(f'{cfg.score}:{line}: expected {{"prompt": ..., "reply": ...}}')
        try:
            check_messages(as_messages(row["prompt"], "user") + as_messages(row["reply"], "assistant"))
        except ValueError as e:
            raise UserError(f"{cfg.score}:{line}: {e}") from None
    scores = score_replies(model, tokenizer, [r["prompt"] for _, r in rows], [r["reply"] for _, r in rows], rt)
    for (_, row), s in zip(rows, scores):
        reply = as_messages(row["reply"], "assistant")[-1].get("content") or ""
        print(json.dumps({"reward": round(s, 4), "reply": reply[:80]}))


def main():
    cfg = parse_config(RewardConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed, cpu_bf16=cfg.pack)  # packed rows have one shape: bf16 pays
    if cfg.score:
        return score_file(cfg, rt)
    run_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt)  # locked until the run ends
    per_process = batch_per_process(cfg.batch_size, cfg.micro_batch_size, rt)  # this process's share of a batch

    # model: the SFT body with a new scalar head (Ouyang et al. start the reward model from SFT)
    raw_model, tokenizer, _ = load_model(cfg.init_from, rt.device, dropout=0.0, scalar_head=True,
                                         hint="make it with `python sft.py` first")
    raw_model.config.reward_pooling = cfg.pooling  # saved with the weights: PPO and --score read it the same way
    if cfg.lora_rank:
        apply_lora(raw_model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets,
                   cfg.lora_embeddings)
    trainable, total = count_trainable(raw_model)
    rt.print(f"training {trainable:,} of {total:,} parameters ({trainable / total:.2%})")
    # data
    ensure_world(cfg.data)  # a fresh clone: generate the built-in world first (a few seconds)
    world = world_folder(cfg.data)
    block = raw_model.config.block_size
    train, report = load_preferences(cfg.data, tokenizer, block)
    rt.print(report)
    pack_length = block if cfg.pack else None
    val = []
    if cfg.val_data:
        check_default_follows(cfg, "data", "val_data", "--val_data=None to skip the held-out pairs")
        val, report = load_preferences(cfg.val_data, tokenizer, block)
        rt.print(report)

    # optimizer; --resume restores it and the weights from out_dir/ckpt.pt
    optimizer = raw_model.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                              rt.device.type)
    start_step, best_accuracy = 0, -1.0
    if cfg.resume:
        checkpoint = load_for_resume(cfg.out_dir, "reward", cfg, rt)
        restore_weights(raw_model, checkpoint)
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_step, best_accuracy = checkpoint["step"], checkpoint["best_val_accuracy"]
        with torch.no_grad():  # a finished run saved its head shifted (below): train on from the unshifted one
            raw_model.scalar_head.bias += checkpoint.get("reward_shift", 0.0)
        rt.print(f"resuming from step {start_step} of {cfg.out_dir}/ckpt.pt")
    model = PairScorer(raw_model)
    model = torch.compile(model) if cfg.compile else model
    model = wrap_ddp(model, rt)
    autocast = rt.autocast()
    run_folder.begin()  # inputs all checked: from here on the run writes out_dir
    log = MetricsLog(cfg.out_dir, rt, cfg.max_steps, cfg.log_interval, start_step, cfg.resume)

    def save(step, metrics, best=False, **extra):
        """ckpt.pt (last), and best.pt when the val accuracy is the best so far."""
        checkpoint = {"stage": "reward", "step": step, **model_weights(raw_model, cfg.init_from, cfg.lora_merge),
                      "tokenizer": tokenizer.spec,
                      "config": asdict(cfg), "metrics": metrics,
                      "optimizer": optimizer.state_dict(), "best_val_accuracy": best_accuracy, **extra}
        save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), checkpoint)
        if best:
            save_checkpoint(os.path.join(cfg.out_dir, "best.pt"), checkpoint)

    def evaluate_and_save(step):
        nonlocal best_accuracy
        metrics = {}
        if val:
            metrics, _ = evaluate_pairs(raw_model, val, cfg, tokenizer.eot, rt)
            metrics = {f"val/{k}": v for k, v in metrics.items()}
        log.report(step, **metrics)
        if rt.is_master:
            improved = metrics.get("val/accuracy", -1.0) > best_accuracy
            best_accuracy = max(best_accuracy, metrics.get("val/accuracy", -1.0))
            save(step, metrics, best=improved)
            log.plot("reward.png", {"loss": ["train/loss", "val/loss"], "accuracy": ["train/accuracy", "val/accuracy"],
                                    "margin": ["train/margin", "val/margin"]}, title="reward model")

    # the training loop
    params = [p for group in optimizer.param_groups for p in group["params"]]  # clipped as one vector
    if start_step == 0:
        evaluate_and_save(0)
    model.train()
    for step in range(start_step + 1, cfg.max_steps + 1):
        seed_step(cfg.seed, step, rt.rank)
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = batch_indices(cfg.seed, step, len(train), cfg.batch_size)
        pairs = [train[i] for i in indices[rt.rank * per_process:(rt.rank + 1) * per_process]]  # this process's
        pairs.sort(key=lambda p: len(p["chosen"][0]), reverse=True)  # micro-batches of similar lengths: less padding
        micro_batches = [pairs[i:i + cfg.micro_batch_size] for i in range(0, per_process, cfg.micro_batch_size)]
        stats = {}
        for micro_step, micro_pairs in enumerate(micro_batches):
            if rt.ddp:  # all-reduce the gradients once per step, in the last micro-step's backward
                model.require_backward_grad_sync = micro_step == len(micro_batches) - 1
            with autocast:
                r_chosen, r_rejected, nll = pair_rewards(model, micro_pairs, tokenizer.eot, rt.device,
                                                         with_nll=cfg.lm_coef > 0, pack_length=pack_length)
                losses = bradley_terry_loss(r_chosen, r_rejected, cfg.margin, cfg.center_coef)
                share = len(micro_pairs) / len(pairs)  # this micro-batch's share of the process's pairs
                loss = (losses.mean() + (cfg.lm_coef * nll if nll is not None else 0.0)) * share
            loss.backward()
            micro_stats = {"loss": losses.mean().item(), **pair_metrics(r_chosen.detach(), r_rejected.detach())}
            if nll is not None:
                micro_stats["nll"] = nll.item()
            for k, v in micro_stats.items():
                stats[f"train/{k}"] = stats.get(f"train/{k}", 0.0) + v * share
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        log.step(step, lr=lr, grad_norm=grad_norm.item(), **stats)
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            evaluate_and_save(step)

    if start_step < cfg.max_steps and rt.is_master:
        # Normalise: shift the head's bias so the chosen replies of the training pairs score 0 on average
        # (the mean of the first SHIFT_PAIRS: within a few hundredths of all of them, in a fifth of the time)
        _, chosen_rewards = evaluate_pairs(raw_model, train[:SHIFT_PAIRS], cfg, tokenizer.eot, rt)
        shift = chosen_rewards.mean().item()
        with torch.no_grad():
            raw_model.scalar_head.bias -= shift
        final = {}
        if val:
            final, _ = evaluate_pairs(raw_model, val, cfg, tokenizer.eot, rt)
            by_category = [f"{k.split('/')[1]} {v:.1%}" for k, v in final.items() if k.startswith("accuracy/")]
            if by_category:  # the world's pairs carry a category; other data has none
                rt.print("held-out pair accuracy by category: " + ", ".join(by_category))
        if world and cfg.correlation_samples > 0:
            final["spearman_vs_gold"] = gold_correlation(raw_model, cfg, tokenizer, world, rt)
            rt.print(f"Spearman correlation with the world's gold reward on {cfg.correlation_samples} SFT samples: "
                     f"{final['spearman_vs_gold']:.3f}")
        final = {f"val/{k}": v for k, v in final.items()}
        log.write(cfg.max_steps, reward_shift=shift, **final)
        save(cfg.max_steps, final, reward_shift=shift)  # the shifted head; resume undoes the shift
        log.finished(f"val accuracy {final.get('val/accuracy', float('nan')):.1%}; rewards shifted by {-shift:+.3f} so "
                     f"chosen replies average 0; wrote {cfg.out_dir}/ckpt.pt, metrics.jsonl, reward.png")
    run_folder.release()


if __name__ == "__main__":
    run_main(main)

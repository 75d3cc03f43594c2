"""
Stage 3b, Direct Preference Optimization (Rafailov et al. 2023): align the SFT model on preference
pairs directly, with no reward model and no sampling during training.

    python dpo.py                                    # from out/sft on the world's pairs, CPU, ~5 min
    python dpo.py --sweep=0.03,0.1,0.3,1             # one run per beta + the gold-reward/KL frontier plot
    python dpo.py --config=config/dpo_hh.cfg         # HH-RLHF from the Alpaca SFT model, GPU (beta 0.1)
    python dpo.py --lora_rank=8 --out_dir=out/dpo_lora   # LoRA: the reference is the policy, adapters off

The policy and a frozen reference both start from the SFT model. With sequence log-probs
summed over the reply's tokens, pi_c, pi_r for the policy and ref_c, ref_r for the reference,

    h = (pi_c - pi_r) - (ref_c - ref_r)              (the implicit reward margin, over beta)
    sigmoid (DPO):   -log sigmoid(beta h)
    label smoothing: (1 - e) * -log sigmoid(beta h) + e * -log sigmoid(-beta h)   (conservative DPO)
    hinge (SLiC):    max(0, 1 - beta h)
    ipo:             (h - 1 / (2 beta))^2            (Azar et al. 2023)
    + nll_coef * (per-token NLL of the chosen reply)  (RPO, Pang et al. 2024)

The NLL term matters when chosen and rejected share most of their tokens (a fact pair differs in
one word; a rude reply contains the polite one): pushing the rejected reply down then drags the
shared tokens down too, and the chosen reply's likelihood falls with it ("likelihood
displacement", Razin et al. 2024). Anchoring the chosen reply keeps the model fluent.

With LoRA (--lora_rank > 0) there is no second model: the reference is the policy with its
adapters switched off (lora.BaseModelView). That is exact, not an approximation: the base weights
are frozen (no gradient reaches them, and AdamW holds only the adapters, so not even weight decay
moves them), and an adapter switched off adds nothing, so at every step the network without its
adapters computes exactly the SFT model that training started from.

Metrics under TRL's names: rewards/chosen = beta (pi_c - ref_c), rewards/rejected, rewards/margins,
rewards/accuracies (strict >), logps/chosen, logps/rejected; at eval, the KL to the reference on
sampled replies and the behaviour scorecard on the world's held-out suites.
"""

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Optional

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from batching import pack_sequences, pad_right
from checkpoint import load_for_resume, load_model, model_weights, restore_weights, save_checkpoint
from cli import (DType, Device, Folder, Fraction01, NonNegativeFloat, NonNegativeInt, OneOf, Path, PositiveFloat,
                 PositiveInt, Range, UserError, check_default_follows, parse_config, run_main)
from credit import implicit_rewards
from data.world.prepare import ensure_world, world_folder
from data_formats import load_preferences, read_jsonl
from evaluation import gold_reward, load_suites, periodic_scorecard, plot_scorecard
from generation import respond
from lora import BaseModelView, apply_lora, count_trainable
from metrics import MetricsLog, format_seconds
from model import token_logprobs
from run_folder import claim_run_folder
from tools import Tools
from runtime import batch_indices, batch_per_process, lr_at, seed_step, setup_runtime, wrap_ddp

LOSS_TYPES = ("sigmoid", "ipo", "hinge")
SWEEP_OUTPUTS = ("frontier.json", "frontier.png", "beta_*")  # what --sweep writes into out_dir
KL_SAMPLE_TOKENS = 64  # longest reply sampled to measure the KL to the reference


@dataclass
class DPOConfig:
    # data and output
    init_from: str = "out/sft"  # the policy starts here (a run folder, or gpt2...)
    ref: Optional[str] = None  # the frozen reference model (None: the same as init_from)
    data: Path = "data/world/prefs_train.jsonl"  # preference pairs (JSONL, TRL format)
    val_data: Optional[Path] = "data/world/prefs_val.jsonl"  # held-out pairs (None: skip)
    out_dir: Folder = "out/dpo"  # checkpoints, metrics.jsonl and plots go here
    resume: bool = False  # continue from out_dir/ckpt.pt exactly where it stopped
    overwrite: bool = False  # replace a run already in out_dir (its checkpoints, metrics and plots)
    # loss
    loss_type: Annotated[str, OneOf(LOSS_TYPES)] = "sigmoid"  # sigmoid (DPO), ipo, hinge; ipo on log-ratios
    #                                                           summed over the reply, as in Azar et al. (TRL
    #                                                           averages them per token, so its beta differs)
    beta: PositiveFloat = 0.3  # strength of the pull towards the reference (higher: stay closer); the paper's
    #                            0.1 let the world's small model drift before the NLL term's settings (docs/04-dpo.md)
    label_smoothing: Annotated[float, Range(0, 0.5, hi_open=True)] = 0.0  # conservative DPO: the share of
    #                                                                        preference labels assumed flipped
    nll_coef: NonNegativeFloat = 8.0  # weight of the chosen replies' per-token NLL added to the loss (RPO;
    #                                   TRL's rpo_alpha): it keeps chosen replies likely, so skills the pairs
    #                                   do not mention (copying a tool's result) do not drift
    precompute_ref: bool = False  # reference log-probs once before training (saves a forward pass per step)
    # optimisation
    batch_size: PositiveInt = 32  # pairs per optimizer step, over all processes
    micro_batch_size: PositiveInt = 8  # pairs per forward/backward pass in one process
    pack: bool = True  # pack a micro-batch's replies into full rows, each attending only to itself (less padding,
    #                    one row shape: bf16 pays on a CPU); false: one padded reply a row
    max_steps: PositiveInt = 320  # optimizer steps
    learning_rate: PositiveFloat = 1e-4  # peak learning rate
    min_lr: NonNegativeFloat = 1e-5  # learning rate at the end of the cosine decay
    warmup_steps: NonNegativeInt = 100  # linear warmup from 0 (a short one lets the first steps undo copying)
    weight_decay: NonNegativeFloat = 0.0  # AdamW weight decay on matrices
    beta1: Fraction01 = 0.9  # AdamW beta1
    beta2: Fraction01 = 0.95  # AdamW beta2
    grad_clip: NonNegativeFloat = 1.0  # clip the gradient norm to this (0: off)
    # LoRA (lora.py): train low-rank adapters of the frozen model instead of all its weights; the
    #   reference is then the same network with its adapters off (lora.BaseModelView), no second model
    lora_rank: NonNegativeInt = 0  # rank of the adapters (0: full fine-tuning)
    lora_alpha: PositiveFloat = 16.0  # the adapters' update is scaled by lora_alpha / lora_rank
    lora_dropout: Fraction01 = 0.0  # dropout on the adapters' input
    lora_targets: Annotated[str, OneOf(("attn", "mlp", "attn,mlp"))] = "attn"  # attention projections, MLP or both
    lora_embeddings: bool = False  # train the token embedding too (tied to the output layer): needed from GPT-2
    #                                weights, whose chat tokens get new rows that frozen would stay all alike
    lora_merge: bool = False  # save merged weights (a plain checkpoint), not the adapters and a pointer to init_from
    # evaluation and logging
    eval_interval: PositiveInt = 50  # val metrics, KL, scorecard and checkpoint every this many steps
    eval_per_suite: NonNegativeInt = 10  # held-out examples per suite in the periodic scorecard (0: none)
    kl_samples: NonNegativeInt = 64  # prompts sampled at each eval to measure the KL to the reference
    log_interval: PositiveInt = 10  # print a progress line every this many steps
    sweep: Optional[str] = None  # comma-separated betas: one run each, then frontier.png (gold reward vs KL)
    # system
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA, and with --pack on a CPU with native bf16), bfloat16, float32
    compile: bool = False  # torch.compile the policy
    seed: int = 1337  # seed for batches and sampling


# ----------------------------------------------------------------------------- log-probs and loss


def sequence_logprobs(model, sequences, pad_id, device, pack_length=None):
    """Summed log-probs of each sequence's reply tokens (B,): sequences are (ids, reply mask);
    prompt tokens and padding never count. The sequences go through the model one a row,
    right-padded, or packed into rows of pack_length tokens, each attending only to itself."""
    if not pack_length:
        ids, mask = pad_right(sequences, pad_id, device)  # (B, T)
        logits, _ = model(ids[:, :-1])
        logprobs = token_logprobs(logits, ids[:, 1:])  # (B, T - 1)
        return (logprobs * mask[:, 1:]).sum(1)  # target t+1 is scored by position t
    packed, segments, where = pack_sequences(sequences, pad_id, pack_length, device)  # (R, pack_length)
    # position t of a packed row is scored when token t + 1 is a reply token of the same sequence;
    # the output layer runs there only (prompts and padding need no logits)
    scored = torch.zeros(packed.shape, dtype=torch.bool)
    owner = torch.zeros(packed.shape, dtype=torch.long)  # which sequence each position belongs to
    for i, (row, start, n) in enumerate(where):
        scored[row, start:start + n - 1] = torch.tensor(sequences[i][1][1:], dtype=torch.bool)
        owner[row, start:start + n] = i
    scored, owner = scored.to(device), owner.to(device)
    logits, _ = model(packed, segments=segments, logits_at=scored)  # (N, V)
    logprobs = token_logprobs(logits, packed.roll(-1, 1)[scored])  # (N,): token t + 1's, read at t
    return torch.zeros(len(sequences), device=device).index_add(0, owner[scored], logprobs)  # (B,)


def pair_logprobs(model, pairs, pad_id, device, pack_length=None):
    """(chosen, rejected) summed reply log-probs, (B,) each, in one forward pass."""
    logps = sequence_logprobs(model, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], pad_id, device,
                              pack_length)
    return logps[:len(pairs)], logps[len(pairs):]


def dpo_loss(pi_c, pi_r, ref_c, ref_r, beta, loss_type="sigmoid", label_smoothing=0.0):
    """Per-pair losses (B,) and the implicit rewards beta * (pi - ref) of chosen and rejected."""
    h = (pi_c - pi_r) - (ref_c - ref_r)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:  # ipo (the config allows only LOSS_TYPES)
        losses = (h - 1 / (2 * beta)) ** 2
    return losses, implicit_rewards(pi_c, ref_c, beta).detach(), implicit_rewards(pi_r, ref_r, beta).detach()


def trl_metrics(losses, chosen_rewards, rejected_rewards, pi_c, pi_r):
    return {"loss": losses.mean().item(),
            "rewards/chosen": chosen_rewards.mean().item(), "rewards/rejected": rejected_rewards.mean().item(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
            "logps/chosen": pi_c.detach().mean().item(), "logps/rejected": pi_r.detach().mean().item()}


@torch.no_grad()
def reference_logprobs(ref, pairs, pad_id, rt, pack_length=None, batch_size=32, every_seconds=30):
    """Store each pair's reference log-probs in the pair (--precompute_ref), with a progress line
    every every_seconds (HH-RLHF's 160k pairs take minutes)."""
    t0 = last = time.perf_counter()
    for i in range(0, len(pairs), batch_size):
        with rt.autocast():
            c, r = pair_logprobs(ref, pairs[i:i + batch_size], pad_id, rt.device, pack_length)
        for p, lc, lr in zip(pairs[i:i + batch_size], c.tolist(), r.tolist()):
            p["ref"] = (lc, lr)
        done, now = min(i + batch_size, len(pairs)), time.perf_counter()
        if now - last >= every_seconds or done == len(pairs):
            last = now
            rt.print(f"reference log-probs: {done:,}/{len(pairs):,} pairs | {done / (now - t0):,.0f} pairs/s | "
                     f"eta {format_seconds((len(pairs) - done) * (now - t0) / done)}")


@torch.no_grad()
def evaluate_pairs(policy, ref, pairs, cfg, pad_id, rt, batch_size=32):
    """DPO's loss and TRL's metrics on held-out pairs."""
    pack_length = policy.config.block_size if cfg.pack else None
    policy.eval()
    sums, n = {}, 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        with rt.autocast():
            pi_c, pi_r = pair_logprobs(policy, chunk, pad_id, rt.device, pack_length)
            ref_c, ref_r = pair_logprobs(ref, chunk, pad_id, rt.device, pack_length)
        m = trl_metrics(*dpo_loss(pi_c, pi_r, ref_c, ref_r, cfg.beta, cfg.loss_type, cfg.label_smoothing), pi_c, pi_r)
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v * len(chunk)
        n += len(chunk)
    policy.train()
    return {k: v / n for k, v in sums.items()}


# ----------------------------------------------------------------------------- KL on samples


@torch.no_grad()
def evaluate_samples(policy, ref, tokenizer, rows, tools, rt, seed, max_new_tokens=KL_SAMPLE_TOKENS):
    """Sample replies from the policy (temperature 1) and estimate KL(policy || ref) per reply as
    the sum over its generated tokens of log pi - log ref (unbiased on policy samples). Also the
    world's mean gold reward of those replies, when the rows carry info."""
    g = torch.Generator(device=rt.device).manual_seed(seed)
    prompts = [r["prompt"] for r in rows]
    replies = respond(policy, tokenizer, prompts, max_new_tokens, temperature=1.0, tools=tools, generator=g)
    kls = []
    for prompt, reply in zip(prompts, replies):  # the reference in full precision, as the policy sampled
        ids = torch.tensor([tokenizer.render_prompt(prompt) + reply.tokens], device=rt.device)
        ref_lp = token_logprobs(ref(ids[:, :-1])[0], ids[:, 1:])[0, -len(reply.tokens):]
        action = torch.tensor(reply.action_mask, device=rt.device, dtype=torch.float)
        kls.append(((torch.tensor(reply.logprobs, device=rt.device) - ref_lp) * action).sum().item())
    gold = [gold_reward(r, x.messages, x.ended) for r, x in zip(rows, replies) if "info" in r]
    return sum(kls) / len(kls), (sum(gold) / len(gold) if gold else None)


# ----------------------------------------------------------------------------- training


def train(cfg):
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed, cpu_bf16=cfg.pack)  # packed rows have one shape: bf16 pays
    run_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt)  # locked until the run ends
    per_process = batch_per_process(cfg.batch_size, cfg.micro_batch_size, rt)  # this process's share of a batch

    # models: the policy and a frozen reference, both from the SFT model; dropout off, so that the
    # log-ratio of the two is exact
    hint = "make it with `python sft.py` first"
    raw_policy, tokenizer, _ = load_model(cfg.init_from, rt.device, dropout=0.0, hint=hint, expect="policy")
    if cfg.lora_rank:
        apply_lora(raw_policy, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets,
                   cfg.lora_embeddings)
    trainable, total = count_trainable(raw_policy)
    rt.print(f"training {trainable:,} of {total:,} parameters ({trainable / total:.2%})")
    if cfg.lora_rank and not cfg.ref:
        ref = BaseModelView(raw_policy)  # the frozen starting model, exactly, at no memory cost
    else:
        ref, ref_tokenizer, _ = load_model(cfg.ref or cfg.init_from, rt.device, dropout=0.0, hint=hint,
                                           expect="policy", what="--ref" if cfg.ref else "--init_from")
        if ref_tokenizer.spec != tokenizer.spec:
            raise UserError(f"--ref={cfg.ref} has another tokenizer than --init_from={cfg.init_from}")
        ref.eval().requires_grad_(False)  # frozen: no gradient ever reaches the reference

    # data: preference pairs; on the world, also prompts to sample for the KL and the scorecard suites
    ensure_world(cfg.data)  # a fresh clone: generate the built-in world first (a few seconds)
    world = world_folder(cfg.data)
    block = raw_policy.config.block_size
    pack_length = block if cfg.pack else None
    train_pairs, report = load_preferences(cfg.data, tokenizer, block)
    rt.print(report)
    val = []
    if cfg.val_data:
        check_default_follows(cfg, "data", "val_data", "--val_data=None to skip the held-out pairs")
        val, report = load_preferences(cfg.val_data, tokenizer, block)
        rt.print(report)
    rt.print(f"{cfg.loss_type} loss, beta {cfg.beta}")
    suites = load_suites(world, cfg.eval_per_suite) if world and cfg.eval_per_suite else None
    tools = Tools.with_encyclopedia(world)  # calculator, search (the world's encyclopedia), python
    # prompts to sample replies from for the KL to the reference: the world's RL prompts, else the
    # prompts of the val pairs (any data), those that end with a user turn
    if world:
        kl_rows = [r for _, r in read_jsonl(os.path.join(world, "rl_prompts.jsonl"))]
    else:
        kl_rows = [{"prompt": p["prompt"]} for p in val if p["prompt"] and p["prompt"][-1]["role"] == "user"]
    kl_rows = [r for r in kl_rows  # room for the sampled reply in the context
               if len(tokenizer.render_prompt(r["prompt"])) + KL_SAMPLE_TOKENS <= block][:cfg.kl_samples]
    if cfg.precompute_ref:
        reference_logprobs(ref, train_pairs, tokenizer.eot, rt, pack_length)

    # optimizer; --resume restores it and the weights from out_dir/ckpt.pt
    optimizer = raw_policy.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                               rt.device.type)
    start_step, best_val_loss = 0, float("inf")
    if cfg.resume:
        checkpoint = load_for_resume(cfg.out_dir, "dpo", cfg, rt)
        restore_weights(raw_policy, checkpoint)
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_step, best_val_loss = checkpoint["step"], checkpoint["best_val_loss"]
        rt.print(f"resuming from step {start_step} of {cfg.out_dir}/ckpt.pt")
    policy = torch.compile(raw_policy) if cfg.compile else raw_policy
    policy = wrap_ddp(policy, rt)
    autocast = rt.autocast()
    run_folder.begin()  # inputs all checked: from here on the run writes out_dir
    log = MetricsLog(cfg.out_dir, rt, cfg.max_steps, cfg.log_interval, start_step, cfg.resume)

    def evaluate_and_save(step):
        """Val pair metrics, KL and gold reward of sampled replies, the scorecard sample; ckpt.pt
        (last) and best.pt (lowest val loss)."""
        nonlocal best_val_loss
        metrics = {}
        if val:
            metrics.update({f"val/{k}": v for k, v in evaluate_pairs(raw_policy, ref, val, cfg, tokenizer.eot,
                                                                     rt).items()})
        if kl_rows and rt.is_master:
            metrics["eval/kl"], gold = evaluate_samples(raw_policy, ref, tokenizer, kl_rows, tools, rt, cfg.seed)
            if gold is not None:  # the world's rows know the right answers; other data does not
                metrics["eval/gold_reward"] = gold
        metrics.update(periodic_scorecard(raw_policy, tokenizer, suites, tools, rt))
        log.report(step, **metrics)
        if rt.is_master:
            improved = metrics.get("val/loss", float("inf")) < best_val_loss
            best_val_loss = min(best_val_loss, metrics.get("val/loss", float("inf")))
            checkpoint = {"stage": "dpo", "step": step, **model_weights(raw_policy, cfg.init_from, cfg.lora_merge),
                          "tokenizer": tokenizer.spec,
                          "config": asdict(cfg), "metrics": metrics,
                          "optimizer": optimizer.state_dict(), "best_val_loss": best_val_loss}
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), checkpoint)
            if improved:
                save_checkpoint(os.path.join(cfg.out_dir, "best.pt"), checkpoint)
            plot(log, suites)
        return metrics

    # the training loop
    params = [p for group in optimizer.param_groups for p in group["params"]]  # clipped as one vector
    if start_step == 0:
        evaluate_and_save(0)
    policy.train()
    metrics = {}
    for step in range(start_step + 1, cfg.max_steps + 1):
        seed_step(cfg.seed, step, rt.rank)
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = batch_indices(cfg.seed, step, len(train_pairs), cfg.batch_size)
        pairs = [train_pairs[i] for i in indices[rt.rank * per_process:(rt.rank + 1) * per_process]]  # this process's
        pairs.sort(key=lambda p: len(p["chosen"][0]), reverse=True)  # micro-batches of similar lengths: less padding
        micro_batches = [pairs[i:i + cfg.micro_batch_size] for i in range(0, per_process, cfg.micro_batch_size)]
        stats = {}
        for micro_step, micro_pairs in enumerate(micro_batches):
            if rt.ddp:  # all-reduce the gradients once per step, in the last micro-step's backward
                policy.require_backward_grad_sync = micro_step == len(micro_batches) - 1
            with autocast:
                pi_c, pi_r = pair_logprobs(policy, micro_pairs, tokenizer.eot, rt.device, pack_length)
                if cfg.precompute_ref:
                    ref_c, ref_r = (torch.tensor(x, device=rt.device) for x in zip(*[p["ref"] for p in micro_pairs]))
                else:
                    with torch.no_grad():
                        ref_c, ref_r = pair_logprobs(ref, micro_pairs, tokenizer.eot, rt.device, pack_length)
                losses, chosen_rewards, rejected_rewards = dpo_loss(pi_c, pi_r, ref_c, ref_r, cfg.beta, cfg.loss_type,
                                                                    cfg.label_smoothing)
                micro_stats = trl_metrics(losses, chosen_rewards, rejected_rewards, pi_c, pi_r)
                if cfg.nll_coef:  # RPO: the chosen reply's per-token NLL keeps it likely
                    nll = -pi_c / torch.tensor([sum(p["chosen"][1][1:]) for p in micro_pairs], device=rt.device)
                    losses = losses + cfg.nll_coef * nll
                    micro_stats["nll"] = nll.mean().item()
                share = len(micro_pairs) / len(pairs)  # this micro-batch's share of the process's pairs
                loss = losses.mean() * share
            loss.backward()
            for k, v in micro_stats.items():
                stats[f"train/{k}"] = stats.get(f"train/{k}", 0.0) + v * share
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        log.step(step, lr=lr, grad_norm=grad_norm.item(), **stats)
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            metrics = evaluate_and_save(step)
    if start_step < cfg.max_steps:
        log.finished(f"val margin {metrics.get('val/rewards/margins', float('nan')):.3f}, KL to the reference "
                     f"{metrics.get('eval/kl', float('nan')):.2f}; wrote {cfg.out_dir}/ckpt.pt, metrics.jsonl, "
                     f"dpo.png" + (", scorecard.png" if suites else ""))
    run_folder.release()
    return metrics


def plot(log, suites):
    log.plot("dpo.png", {
        "loss": ["train/loss", "val/loss"],
        "implicit rewards": ["train/rewards/chosen", "train/rewards/rejected", "train/rewards/margins"],
        "accuracy": ["train/rewards/accuracies", "val/rewards/accuracies"],
        "KL to reference (sampled)": ["eval/kl"]}, title="DPO")
    if suites:
        plot_scorecard(log, "DPO")


# ----------------------------------------------------------------------------- the beta sweep


def sweep(cfg):
    """One DPO run per beta, then the DPO paper's frontier redrawn on the world: gold reward of
    sampled replies against their KL to the reference (the SFT model sits at KL 0)."""
    betas = [parse_beta(b) for b in cfg.sweep.split(",") if b.strip()]
    ensure_world(cfg.data)
    world = world_folder(cfg.data)
    if world is None:
        raise UserError("--sweep plots the world's gold reward: use it with the world's data")
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed)
    # out_dir holds the frontier and a run folder per beta, each claimed by its own run
    out_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt, outputs=SWEEP_OUTPUTS)
    ref, tokenizer, _ = load_model(cfg.ref or cfg.init_from, rt.device, hint="make it with `python sft.py` first",
                                   expect="policy", what="--ref" if cfg.ref else "--init_from")
    rows = [r for _, r in read_jsonl(os.path.join(world, "rl_prompts.jsonl"))][:cfg.kl_samples]
    sft_gold = evaluate_samples(ref, ref, tokenizer, rows, Tools.with_encyclopedia(world), rt, cfg.seed)[1]
    points = [{"beta": "SFT", "kl": 0.0, "gold_reward": sft_gold}]
    for beta in betas:
        out = os.path.join(cfg.out_dir, f"beta_{beta:g}")
        print(f"=== beta {beta:g} -> {out}")
        metrics = train(replace(cfg, beta=beta, out_dir=out, sweep=None, eval_per_suite=0))
        points.append({"beta": beta, "kl": metrics["eval/kl"], "gold_reward": metrics["eval/gold_reward"]})
    out_folder.begin()
    with open(os.path.join(cfg.out_dir, "frontier.json"), "w") as f:
        json.dump(points, f, indent=1)
    draw_frontier(points, os.path.join(cfg.out_dir, "frontier.png"))
    out_folder.release()
    for p in points:
        print(f"beta {p['beta']}: KL {p['kl']:.2f}, gold reward {p['gold_reward']:.3f}")
    print(f"wrote {cfg.out_dir}/frontier.png and frontier.json")


def parse_beta(text):
    try:
        beta = float(text)
    except ValueError:
        beta = float("nan")
    if not beta > 0 or beta == float("inf"):
        raise UserError(f"--sweep: {text!r} is not a beta (a positive number)")
    return beta


def draw_frontier(points, path):
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    # points, not a line: each beta is its own run, measured on sampled replies (noisy)
    ax.plot([p["kl"] for p in points], [p["gold_reward"] for p in points], "o")
    for p in points:
        ax.annotate(f"beta={p['beta']}" if p["beta"] != "SFT" else "SFT", (p["kl"], p["gold_reward"]),
                    textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel("KL(policy || reference), nats per reply")
    ax.set_ylabel("world gold reward (mean)")
    ax.set_title("DPO: reward vs KL frontier on the world")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    cfg = parse_config(DPOConfig, description=__doc__)
    if cfg.sweep:
        return sweep(cfg)
    train(cfg)


if __name__ == "__main__":
    run_main(main)

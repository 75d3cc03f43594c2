"""
Stage 2, supervised fine-tuning (instruction tuning): a base model learns to chat from
demonstrations, with the loss on what the assistant writes only.

    python sft.py                                   # from out/pretrain on the world's chats, CPU, ~4 min
    python sft.py --init_from=gpt2 --data=data/alpaca/train.jsonl --val_data=data/alpaca/val.jsonl \\
                  --out_dir=out/sft_alpaca --config=config/sft_gpt2_alpaca.cfg    # GPU
    python sft.py --lora_rank=8 --out_dir=out/sft_lora  # LoRA: rank-8 adapters, every other weight frozen
    torchrun --standalone --nproc_per_node=2 sft.py ...

Data: conversations JSONL, {"messages": [{"role", "content"}, ...]} (the OpenAI/TRL format), rendered with the
chat template; the loss mask is 1 on the assistant's content, tool calls and end-of-turn tokens.
A step's conversations are packed into rows of the model's context (several a row, each attending
only to itself, positions restarting at each: no padding between them), and the loss is summed
over the assistant tokens and divided by their count in the whole global batch.
Every eval_interval steps: the val loss and the behaviour scorecard (evaluation.py) on a sample of
the world's held-out suites. Writes out_dir/ckpt.pt, best.pt, metrics.jsonl, loss.png, scorecard.png.
"""

import os
from dataclasses import asdict, dataclass
from typing import Annotated, Optional

import torch
import torch.nn.functional as F

from batching import pack_batch, pad_batch
from checkpoint import is_hf_source, load_for_resume, load_model, model_weights, restore_weights, save_checkpoint
from cli import (DType, Device, Folder, Fraction01, NonNegativeFloat, NonNegativeInt, OneOf, Path, PositiveFloat,
                 PositiveInt, check_default_follows, parse_config, run_main)
from data.world.prepare import ensure_world, world_folder
from data_formats import load_conversations
from evaluation import load_suites, periodic_scorecard, plot_scorecard
from lora import apply_lora, count_trainable
from metrics import MetricsLog
from run_folder import claim_run_folder
from tools import Tools
from runtime import batch_indices, batch_per_process, lr_at, seed_step, setup_runtime, wrap_ddp


@dataclass
class SFTConfig:
    # data and output
    init_from: str = "out/pretrain"  # a run folder (out/...), or gpt2 / gpt2-medium / -large / -xl
    data: Path = "data/world/sft_train.jsonl"  # training conversations (JSONL)
    val_data: Optional[Path] = "data/world/sft_val.jsonl"  # held-out conversations for the val loss (None: skip)
    out_dir: Folder = "out/sft"  # checkpoints, metrics.jsonl and plots go here
    resume: bool = False  # continue from out_dir/ckpt.pt exactly where it stopped
    overwrite: bool = False  # replace a run already in out_dir (its checkpoints, metrics and plots)
    # optimisation
    batch_size: PositiveInt = 32  # conversations per optimizer step, over all processes
    micro_batch_size: PositiveInt = 16  # rows per forward/backward pass in one process: packed rows of the model's
    #                                     context (a default step fills ~13: one pass), or (--pack=false) conversations
    pack: bool = True  # pack a step's conversations into full rows, each attending only to itself (no padding
    #                    between them, one row shape: bf16 pays on a CPU); false: one padded conversation a row
    max_steps: PositiveInt = 1500  # optimizer steps
    learning_rate: PositiveFloat = 1e-3  # peak learning rate
    min_lr: NonNegativeFloat = 1e-4  # learning rate at the end of the cosine decay
    warmup_steps: NonNegativeInt = 20  # linear warmup from 0
    weight_decay: NonNegativeFloat = 0.1  # AdamW weight decay on matrices
    beta1: Fraction01 = 0.9  # AdamW beta1
    beta2: Fraction01 = 0.99  # AdamW beta2
    grad_clip: NonNegativeFloat = 1.0  # clip the gradient norm to this (0: off)
    dropout: Fraction01 = 0.0  # dropout during fine-tuning
    # LoRA (lora.py): train low-rank adapters of the frozen model instead of all its weights
    lora_rank: NonNegativeInt = 0  # rank of the adapters (0: full fine-tuning)
    lora_alpha: PositiveFloat = 16.0  # the adapters' update is scaled by lora_alpha / lora_rank
    lora_dropout: Fraction01 = 0.0  # dropout on the adapters' input
    lora_targets: Annotated[str, OneOf(("attn", "mlp", "attn,mlp"))] = "attn"  # attention projections, MLP or both
    lora_embeddings: bool = False  # train the token embedding too (tied to the output layer): needed from GPT-2
    #                                weights, whose chat tokens get new rows that frozen would stay all alike
    lora_merge: bool = False  # save merged weights (a plain checkpoint), not the adapters and a pointer to init_from
    # evaluation and logging
    eval_interval: PositiveInt = 400  # val loss, scorecard and checkpoint every this many steps
    eval_per_suite: NonNegativeInt = 10  # held-out examples per suite in the periodic scorecard (0: no scorecard)
    log_interval: PositiveInt = 10  # print a progress line every this many steps
    # system
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA, and with --pack on a CPU with native bf16), bfloat16, float32
    compile: bool = False  # torch.compile the model
    seed: int = 1337  # seed for batches and dropout


# ----------------------------------------------------------------------------- data and loss


def load_data(cfg, tokenizer, block_size, rt):
    """Training and val conversations as (ids, loss mask) pairs that fit the context."""
    ensure_world(cfg.data)  # a fresh clone: generate the built-in world first (a few seconds)
    train, report = load_conversations(cfg.data, tokenizer, block_size)
    rt.print(report)
    val = []
    if cfg.val_data:
        check_default_follows(cfg, "data", "val_data", "--val_data=None to skip the val loss")
        val, report = load_conversations(cfg.val_data, tokenizer, block_size)
        rt.print(report)
    masked = sum(sum(m) for _, m in train) / sum(len(m) for _, m in train)
    rt.print(f"{masked:.0%} of the training tokens are the assistant's and carry the loss")
    return train, val


def summed_loss(logits, targets):
    """Sum (not mean) of the cross-entropy over targets != -1, so that the caller can divide by
    the token count of the whole global batch; an all-masked batch gives 0, never NaN."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1,
                           reduction="sum")


def micro_batches(examples, pad_id, micro_batch_size, device, pack_length=None):
    """A process's share of a batch as (x, y, segments) micro-batches. Packed (pack_length: the row
    length): the examples fill rows of pack_length tokens (batching.pack_batch), micro_batch_size
    rows a pass. Padded: sorted by length and cut into micro_batch_size examples a pass, each
    padded to its longest (the batch itself stays random: sorting the whole dataset by length would
    make batches single-task here, where length follows the task); segments is then None."""
    if pack_length:
        x, y, segments = pack_batch(examples, pad_id, pack_length, device)
        return [(x[i:i + micro_batch_size], y[i:i + micro_batch_size], segments[i:i + micro_batch_size])
                for i in range(0, len(x), micro_batch_size)]
    examples = sorted(examples, key=lambda e: len(e[0]), reverse=True)
    return [pad_batch(examples[i:i + micro_batch_size], pad_id, device) + (None,)
            for i in range(0, len(examples), micro_batch_size)]


@torch.no_grad()
def evaluate_loss(model, examples, pad_id, rt, batch_size=32, pack_length=None):
    """Mean cross-entropy per assistant token over examples (the val loss), batched as training is."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        for x, y, segments in micro_batches(examples[i:i + batch_size], pad_id, batch_size, rt.device, pack_length):
            with rt.autocast():
                logits, _ = model(x, segments=segments, logits_at=y != -1)  # (N, V): the assistant's tokens
            total += summed_loss(logits, y[y != -1]).item()
            count += int((y != -1).sum())
    model.train()
    return total / max(count, 1)


# ----------------------------------------------------------------------------- main


def main():
    cfg = parse_config(SFTConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed, cpu_bf16=cfg.pack)  # packed rows have one shape: bf16 pays
    run_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt)  # locked until the run ends
    # this process's share of a batch (packed, micro_batch_size counts rows, however many the share fills)
    per_process = batch_per_process(cfg.batch_size, 1 if cfg.pack else cfg.micro_batch_size, rt)

    # model and data
    raw_model, tokenizer, _ = load_model(cfg.init_from, rt.device, dropout=cfg.dropout, expect="policy",
                                         hint="make it with `python pretrain.py` (or use --init_from=gpt2)")
    if cfg.lora_rank:
        apply_lora(raw_model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets,
                   cfg.lora_embeddings)
        if is_hf_source(cfg.init_from) and not cfg.lora_embeddings:
            rt.print("note: GPT-2's chat tokens start with identical embedding rows, which stay identical while "
                     "frozen; add --lora_embeddings=true to train them")
    trainable, total = count_trainable(raw_model)
    rt.print(f"training {trainable:,} of {total:,} parameters ({trainable / total:.2%})")
    train, val = load_data(cfg, tokenizer, raw_model.config.block_size, rt)
    pack_length = raw_model.config.block_size if cfg.pack else None
    world = world_folder(cfg.data)
    suites = load_suites(world, cfg.eval_per_suite) if world and cfg.eval_per_suite > 0 else None
    tools = Tools.with_encyclopedia(world)  # calculator, search (the world's encyclopedia), python

    # optimizer; --resume restores it and the weights from out_dir/ckpt.pt
    optimizer = raw_model.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                              rt.device.type)
    start_step, best_val_loss = 0, float("inf")
    if cfg.resume:
        checkpoint = load_for_resume(cfg.out_dir, "sft", cfg, rt)
        restore_weights(raw_model, checkpoint)
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_step, best_val_loss = checkpoint["step"], checkpoint["best_val_loss"]
        rt.print(f"resuming from step {start_step} of {cfg.out_dir}/ckpt.pt")
    model = torch.compile(raw_model) if cfg.compile else raw_model
    model = wrap_ddp(model, rt)
    autocast = rt.autocast()
    run_folder.begin()  # inputs all checked: from here on the run writes out_dir
    log = MetricsLog(cfg.out_dir, rt, cfg.max_steps, cfg.log_interval, start_step, cfg.resume)

    def evaluate_and_save(step):
        """Val loss and the scorecard sample; ckpt.pt (last) and best.pt (lowest val loss)."""
        nonlocal best_val_loss
        metrics = {}
        if val:
            metrics["val/loss"] = evaluate_loss(raw_model, val, tokenizer.eot, rt, pack_length=pack_length)
        metrics.update(periodic_scorecard(raw_model, tokenizer, suites, tools, rt))
        log.report(step, **metrics)
        if rt.is_master:
            improved = metrics.get("val/loss", float("inf")) < best_val_loss
            best_val_loss = min(best_val_loss, metrics.get("val/loss", float("inf")))
            checkpoint = {"stage": "sft", "step": step, **model_weights(raw_model, cfg.init_from, cfg.lora_merge),
                          "tokenizer": tokenizer.spec,
                          "config": asdict(cfg), "metrics": metrics,
                          "optimizer": optimizer.state_dict(), "best_val_loss": best_val_loss}
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), checkpoint)
            if improved:
                save_checkpoint(os.path.join(cfg.out_dir, "best.pt"), checkpoint)
            log.plot("loss.png", {"loss": ["train/loss", "val/loss"]}, title="SFT")
            if suites:
                plot_scorecard(log, "SFT")

    # the training loop
    params = [p for group in optimizer.param_groups for p in group["params"]]  # clipped as one vector
    if start_step == 0:
        evaluate_and_save(0)
    model.train()
    for step in range(start_step + 1, cfg.max_steps + 1):
        seed_step(cfg.seed, step, rt.rank)  # dropout's randomness: a pure function of (seed, step, rank)
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        indices = batch_indices(cfg.seed, step, len(train), cfg.batch_size)
        # Normalise by the assistant tokens of the whole global batch (not of each micro-batch):
        # every token then weighs the same whatever the split into micro-batches and processes.
        # The count needs no communication: the batch is a pure function of (seed, step).
        n_loss_tokens = sum(sum(train[i][1][1:]) for i in indices)
        examples = [train[i] for i in indices[rt.rank * per_process:(rt.rank + 1) * per_process]]  # this process's
        passes = micro_batches(examples, tokenizer.eot, cfg.micro_batch_size, rt.device, pack_length)
        train_loss, tokens = 0.0, 0
        for micro_step, (x, y, segments) in enumerate(passes):
            if rt.ddp:  # all-reduce the gradients once per step, in the last micro-step's backward
                model.require_backward_grad_sync = micro_step == len(passes) - 1
            predicted = y != -1  # (R, T): the assistant's tokens, where the loss reads the logits
            with autocast:
                # packed rows: each conversation attends to itself; the output layer runs only at the
                # predicted tokens (about half of them: prompts and padding need no logits), (N, V)
                logits, _ = model(x, segments=segments, logits_at=predicted)
                # DDP averages gradients over processes, hence the factor world_size
                loss = summed_loss(logits, y[predicted]) * rt.world_size / n_loss_tokens
            loss.backward()
            train_loss += loss.item() / rt.world_size
            tokens += x.numel()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        # train_loss is this process's share of the batch's mean: the mean over processes times world_size
        log.step(step, tokens=tokens * rt.world_size, lr=lr, grad_norm=grad_norm.item(),
                 **{"train/loss": train_loss * rt.world_size})
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            evaluate_and_save(step)

    if start_step < cfg.max_steps:
        log.finished(f"wrote {cfg.out_dir}/ckpt.pt, best.pt, metrics.jsonl, loss.png"
                     + (", scorecard.png; compare stages with `python eval.py`" if suites else ""))
    run_folder.release()


if __name__ == "__main__":
    run_main(main)

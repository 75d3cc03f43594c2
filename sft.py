"""
Stage 2, supervised fine-tuning (instruction tuning): a base model learns to chat from
demonstrations, with the loss on what the assistant writes only.

    python sft.py                                   # from out/pretrain on the world's chats, CPU, ~4 min
    python sft.py --init_from=gpt2 --data=data/alpaca/train.jsonl --val_data=data/alpaca/val.jsonl \\
                  --out_dir=out/sft_alpaca --config=config/sft_gpt2_alpaca.cfg    # GPU
    torchrun --standalone --nproc_per_node=2 sft.py ...

Data: conversations JSONL, {"messages": [{"role", "content"}, ...]} (DESIGN.md), rendered with the
chat template; the loss mask is 1 on the assistant's content, tool calls and end-of-turn tokens.
Every eval_interval steps: the val loss and the behaviour scorecard (eval.py) on a sample of the
world's held-out suites. Writes out_dir/ckpt.pt, best.pt, metrics.jsonl, loss.png, scorecard.png.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from common import (Path, TrainingRun, UserError, accumulate_gradients, batch_indices, conversations_loss,
                    grad_accum_steps, length_sorted_micro_batches, load_conversations, load_model, lr_at,
                    optimizer_step, pad_batch, parse_config, rank_slice, run_main, seed_step, setup_runtime, summed_loss,
                    world_folder, wrap_ddp)


@dataclass
class SFTConfig:
    # data and output
    init_from: str = "out/pretrain"  # a run folder (out/...), or gpt2 / gpt2-medium / -large / -xl
    data: Path = "data/world/sft_train.jsonl"  # training conversations (JSONL)
    val_data: Optional[Path] = "data/world/sft_val.jsonl"  # held-out conversations for the val loss (None: skip)
    out_dir: Path = "out/sft"  # checkpoints, metrics.jsonl and plots go here
    resume: bool = False  # continue from out_dir/ckpt.pt exactly where it stopped
    # optimisation
    batch_size: int = 32  # conversations per optimizer step, over all processes
    micro_batch_size: int = 8  # conversations per forward/backward pass in one process
    max_steps: int = 1200  # optimizer steps
    learning_rate: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_steps: int = 20  # linear warmup from 0
    weight_decay: float = 0.1  # AdamW weight decay on matrices
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.99  # AdamW beta2
    grad_clip: float = 1.0  # clip the gradient norm to this (0: off)
    dropout: float = 0.0  # dropout during fine-tuning
    # evaluation and logging
    eval_interval: int = 400  # val loss, scorecard and checkpoint every this many steps
    eval_per_suite: int = 10  # held-out examples per suite in the periodic scorecard (0: no scorecard)
    log_interval: int = 10  # print a progress line every this many steps
    # system
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: str = "auto"  # auto (bf16 autocast on CUDA), bfloat16, float32
    compile: bool = False  # torch.compile the model
    seed: int = 1337  # seed for batches and dropout


def load_data(cfg, tokenizer, block_size, rt):
    world_folder(cfg.data)  # a fresh clone: generates the default world first
    train, dropped = load_conversations(cfg.data, tokenizer, block_size)
    val = load_conversations(cfg.val_data, tokenizer, block_size)[0] if cfg.val_data else []
    masked = sum(sum(m) for _, m in train) / sum(len(m) for _, m in train)
    rt.print(f"{len(train):,} training conversations ({dropped} dropped: longer than block_size={block_size}); "
             f"{masked:.0%} of tokens are the assistant's and carry the loss; {len(val):,} val conversations")
    return train, val


def main():
    cfg = parse_config(SFTConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed)
    grad_accum_steps(cfg.batch_size, cfg.micro_batch_size, rt)  # checks that the batch splits evenly

    model, tokenizer, source = load_model(cfg.init_from, rt.device, dropout=cfg.dropout,
                                          hint="make it with `python pretrain.py` (or use --init_from=gpt2)")
    if source is not None and source.get("stage") == "reward":
        raise UserError(f"{cfg.init_from} is a reward model; SFT starts from a language model")
    train, val = load_data(cfg, tokenizer, model.config.block_size - 1, rt)

    optimizer = model.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                          rt.device.type)
    run = TrainingRun(cfg, rt, "sft", model, tokenizer, optimizer)
    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    model = wrap_ddp(model, rt)
    suites = world_suites(cfg)

    def evaluate(step):
        metrics = {}
        if val:
            metrics["val/loss"] = conversations_loss(raw_model, val, tokenizer, rt)
        if suites and rt.is_master:
            from eval import chat_scorecard
            scores, _ = chat_scorecard(raw_model, tokenizer, suites, rt)
            metrics.update({f"eval/{k}": v for k, v in scores.items()})
        rt.print(f"step {step}: " + " | ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items()))
        run.evaluated(step, metrics, best_key="val/loss" if val else None)
        model.train()

    def micro_loss(model, batch):
        examples, n_loss_tokens = batch
        x, y = pad_batch(examples, tokenizer.eot, rt.device)
        logits, _ = model(x)
        # Normalise by the assistant tokens of the whole global batch (not of this micro-batch):
        # every token then weighs the same whatever the split into micro-batches and processes.
        # DDP averages gradients over processes, hence the factor world_size.
        loss = summed_loss(logits, y) * rt.world_size / n_loss_tokens
        return loss, {"loss": loss.item() / rt.world_size, "tokens": int(x.numel())}

    if run.start_step == 0:
        evaluate(0)
    model.train()
    for step in run.steps:
        seed_step(cfg.seed, step, rt.rank)
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        indices = batch_indices(cfg.seed, step, len(train), cfg.batch_size)
        # the batch's loss tokens are known on every rank without communication: the batch is a
        # pure function of (seed, step)
        n_loss_tokens = sum(sum(train[i][1][1:]) for i in indices)
        mine = [train[i] for i in rank_slice(indices, rt)]
        micro_batches = [(m, n_loss_tokens) for m in length_sorted_micro_batches(mine, cfg.micro_batch_size)]
        stats = accumulate_gradients(model, micro_batches, micro_loss, rt)
        grad_norm = optimizer_step(model, optimizer, lr, cfg.grad_clip)
        run.step_done(step, tokens=stats["tokens"] * rt.world_size, lr=lr, grad_norm=grad_norm,
                      **{"train/loss": rt.all_reduce_mean(stats["loss"]) * rt.world_size})
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            evaluate(step)
            plot(run, suites)

    if run.start_step < cfg.max_steps:
        run.finished(f"wrote {cfg.out_dir}/ckpt.pt, best.pt, metrics.jsonl, loss.png"
                     + (", scorecard.png; compare stages with `python eval.py`" if suites else ""))


def world_suites(cfg):
    """A sample of the world's held-out suites for the periodic scorecard (world data only)."""
    folder = world_folder(cfg.data)
    if cfg.eval_per_suite <= 0 or folder is None:
        return None
    from eval import load_suites
    return load_suites(folder, cfg.eval_per_suite)


def plot(run, suites):
    run.metrics.plot("loss.png", {"loss": ["train/loss", "val/loss"]}, title="SFT")
    if suites:
        from eval import plot_scorecard
        plot_scorecard(run, "SFT")


if __name__ == "__main__":
    run_main(main)

"""
Stage 1, pretraining: next-token prediction on a token stream -> a base model.

    python pretrain.py                                  # the built-in world, tiny model, CPU, ~4 min
    python pretrain.py --config=config/shakespeare_char_cpu.cfg
    torchrun --standalone --nproc_per_node=8 pretrain.py --config=config/gpt2_124m_fineweb.cfg
    python pretrain.py --resume=true                    # continue out_dir/ckpt.pt exactly

Reads data_dir/{train,val}.bin and meta.json (see data/*/prepare.py), trains a GPT on random
windows of the stream, and writes out_dir/ckpt.pt (last, resumable), out_dir/best.pt (lowest val
loss), metrics.jsonl and loss.png.

Determinism: the windows of step s are a pure function of (seed, s), split over processes by
rank, and dropout is re-seeded from (seed, s, rank) each step. So a run with N processes follows
the same trajectory as a single process with the same global batch, and a run killed at any
point and restarted with --resume=true reproduces the losses of an uninterrupted run exactly.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch

from common import (Path, TrainingRun, UserError, accumulate_gradients, check_same_tokenizer, get_batch,
                    grad_accum_steps, load_model, lr_at, measure_peak_flops, open_token_stream, optimizer_step,
                    parse_config, rank_slice, read_meta, repo_path, run_main, seed_step, setup_runtime, stream_loss,
                    window_starts, wrap_ddp)
from model import GPT, GPTConfig, generate
from tokenizer import Tokenizer, padded_vocab_size


@dataclass
class PretrainConfig:
    # data and output
    data_dir: Path = "data/world"  # folder with train.bin, val.bin, meta.json
    out_dir: Path = "out/pretrain"  # checkpoints, metrics.jsonl and plots go here
    init_from: str = "scratch"  # 'scratch', a run folder (out/...), or gpt2 / gpt2-medium / -large / -xl
    resume: bool = False  # continue from out_dir/ckpt.pt (same config), exactly where it stopped
    # model (when init_from=scratch)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # width of the residual stream
    block_size: int = 256  # context length in tokens
    dropout: float = 0.0  # dropout rate (0 for short runs that cannot overfit)
    bias: bool = True  # biases in Linear and LayerNorm layers
    # optimisation
    batch_size: int = 16  # sequences per optimizer step, over all processes (small: more updates per minute)
    micro_batch_size: int = 16  # sequences per forward/backward pass in one process
    max_steps: int = 900  # optimizer steps
    learning_rate: float = 2e-3  # peak learning rate (small models take large ones)
    min_lr: float = 2e-4  # learning rate at the end of the cosine decay
    warmup_steps: int = 50  # linear warmup from 0
    weight_decay: float = 0.1  # AdamW weight decay on matrices
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.99  # AdamW beta2 (0.99 for small batches, as nanoGPT's char model)
    grad_clip: float = 1.0  # clip the gradient norm to this (0: off)
    # evaluation and logging
    eval_interval: int = 100  # evaluate val loss and save checkpoints every this many steps
    eval_batches: int = 10  # micro-batches of val windows per evaluation
    log_interval: int = 10  # print a progress line every this many steps
    n_samples: int = 4  # samples printed at the end
    sample_tokens: int = 60  # tokens per sample
    # system
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: str = "auto"  # auto (bf16 autocast on CUDA), bfloat16, float32
    compile: bool = False  # torch.compile the model (worth it on GPU for long runs)
    peak_flops: float = 0.0  # the device's peak FLOP/s for MFU; 0: measure matmul throughput at start
    seed: int = 1337  # seed for model init, batches and dropout


# ----------------------------------------------------------------------------- data


def load_streams(data_dir):
    if data_dir == repo_path("data", "world"):
        from data.world.prepare import ensure_world
        ensure_world(data_dir)  # a fresh clone: generate the built-in world first (a few seconds)
    meta = read_meta(data_dir)
    return meta, open_token_stream(data_dir, "train", meta), open_token_stream(data_dir, "val", meta)


# ----------------------------------------------------------------------------- model


def build_model(cfg, meta, rt):
    """A new GPT, or weights from a checkpoint or GPT-2; the tokenizer always comes from the data."""
    tokenizer = Tokenizer(meta["tokenizer"])
    if cfg.init_from == "scratch":
        torch.manual_seed(cfg.seed)
        config = GPTConfig(block_size=cfg.block_size, vocab_size=padded_vocab_size(tokenizer.n_vocab),
                           n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout,
                           bias=cfg.bias)
        return GPT(config).to(rt.device), tokenizer
    model, model_tokenizer, _ = load_model(cfg.init_from, rt.device, dropout=cfg.dropout,
                                           hint="train one with `python pretrain.py` first")
    check_same_tokenizer(model_tokenizer.spec, tokenizer.spec, f"--init_from={cfg.init_from}", cfg.data_dir)
    if cfg.block_size > model.config.block_size:
        raise UserError(f"--block_size={cfg.block_size} exceeds the model's {model.config.block_size}")
    return model, tokenizer


# ----------------------------------------------------------------------------- main


def main():
    cfg = parse_config(PretrainConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed)
    accum = grad_accum_steps(cfg.batch_size, cfg.micro_batch_size, rt)

    meta, train_stream, val_stream = load_streams(cfg.data_dir)
    if len(val_stream) <= cfg.block_size + 1:
        raise UserError(f"--block_size={cfg.block_size} is longer than the val split ({len(val_stream)} tokens "
                        f"in {cfg.data_dir}/val.bin); use a smaller block_size or more val data")

    model, tokenizer = build_model(cfg, meta, rt)
    optimizer = model.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                          rt.device.type)
    peak = cfg.peak_flops or measure_peak_flops(rt.device, torch.bfloat16 if rt.bf16 else torch.float32)
    run = TrainingRun(cfg, rt, "pretrain", model, tokenizer, optimizer, model.flops_per_token(cfg.block_size), peak)
    raw_model = model  # what gets saved: unwrapped from torch.compile and DDP
    if cfg.compile:
        model = torch.compile(model)
    model = wrap_ddp(model, rt)

    tokens_per_step = cfg.batch_size * cfg.block_size
    rt.print(f"{raw_model.num_params() / 1e6:.2f}M parameters | {len(train_stream):,} train tokens "
             f"({tokenizer}) | {tokens_per_step:,} tokens/step, {accum} micro-step(s) x {rt.world_size} "
             f"process(es) | {cfg.max_steps} steps on {rt.device}")

    def evaluate(step):
        val_loss = stream_loss(model, val_stream, cfg.block_size, cfg.micro_batch_size, cfg.eval_batches, rt)
        rt.print(f"step {step}: val loss {val_loss:.4f}")
        run.evaluated(step, {"tokens_seen": step * tokens_per_step, "val/loss": val_loss}, best_key="val/loss")
        return val_loss

    def micro_loss(model, starts):
        x, y = get_batch(train_stream, starts, cfg.block_size, rt.device)
        _, loss = model(x, y)
        return loss / accum, {"loss": loss.item() / accum}  # mean over micro-batches = mean over the batch

    if run.start_step == 0:
        evaluate(0)
    for step in run.steps:
        seed_step(cfg.seed, step, rt.rank)
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        starts = rank_slice(window_starts(cfg.seed, step, len(train_stream), cfg.block_size, cfg.batch_size), rt)
        stats = accumulate_gradients(model, np.split(starts, accum), micro_loss, rt)
        grad_norm = optimizer_step(model, optimizer, lr, cfg.grad_clip)
        run.step_done(step, tokens=tokens_per_step, tokens_seen=step * tokens_per_step, lr=lr, grad_norm=grad_norm,
                      **{"train/loss": rt.all_reduce_mean(stats["loss"])})
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            val_loss = evaluate(step)
            run.metrics.plot("loss.png", {"loss vs step": ["train/loss", "val/loss"],
                                          "loss vs tokens seen": ("tokens_seen", ["train/loss", "val/loss"])},
                             title=f"pretraining on {os.path.basename(cfg.data_dir)}")

    if rt.is_master and run.start_step < cfg.max_steps:
        run.finished(f"val loss {val_loss:.4f} (best {run.best:.4f}); wrote {cfg.out_dir}/ckpt.pt, best.pt, "
                     f"metrics.jsonl, loss.png")
        print_samples(raw_model, tokenizer, meta, cfg, rt)


def print_samples(model, tokenizer, meta, cfg, rt):
    """A few continuations at temperature 0.8: of the dataset's sample prompts (meta.json), or of
    an <|endoftext|> (a fresh document)."""
    prompts = meta.get("sample_prompts") or [""] * cfg.n_samples
    ids = [[tokenizer.eot] + tokenizer.encode(p) for p in prompts[:cfg.n_samples]]
    g = torch.Generator(device=rt.device).manual_seed(cfg.seed)
    model.eval()
    with rt.autocast():
        out = generate(model, ids, cfg.sample_tokens, temperature=0.8, top_k=50, stop_tokens=[tokenizer.eot],
                       generator=g, pad_id=tokenizer.eot, vocab_size=tokenizer.n_vocab)
    print("samples (temperature 0.8):")
    for prompt, new, n in zip(prompts, out.tokens.tolist(), out.lengths.tolist()):
        text = prompt + tokenizer.decode([t for t in new[:n] if t != tokenizer.eot])
        print("  > " + text.strip().replace("\n", "\n    "))


if __name__ == "__main__":
    run_main(main)

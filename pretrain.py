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
from dataclasses import asdict, dataclass

import numpy as np
import torch

from checkpoint import check_same_tokenizer, load_for_resume, load_model, save_checkpoint
from cli import (DType, Device, Folder, Fraction01, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,
                 UserError, parse_config, run_main)
from data.world.prepare import ensure_world
from data_formats import open_token_stream, read_meta
from metrics import MetricsLog
from model import GPT, GPTConfig, generate
from run_folder import claim_run_folder
from runtime import batch_per_process, lr_at, measure_peak_flops, rank_slice, seed_step, setup_runtime, wrap_ddp
from tokenizer import Tokenizer, padded_vocab_size


@dataclass
class PretrainConfig:
    # data and output
    init_from: str = "scratch"  # 'scratch', a run folder (out/...), or gpt2 / gpt2-medium / -large / -xl
    data_dir: Folder = "data/world"  # folder with train.bin, val.bin, meta.json
    out_dir: Folder = "out/pretrain"  # checkpoints, metrics.jsonl and plots go here
    resume: bool = False  # continue from out_dir/ckpt.pt (same config), exactly where it stopped
    overwrite: bool = False  # replace a run already in out_dir (its checkpoints, metrics and plots)
    # model (when init_from=scratch)
    n_layer: PositiveInt = 4  # transformer blocks
    n_head: PositiveInt = 4  # attention heads per block
    n_embd: PositiveInt = 128  # width of the residual stream
    block_size: PositiveInt = 256  # context length in tokens
    dropout: Fraction01 = 0.0  # dropout rate (0 for short runs that cannot overfit)
    bias: bool = True  # biases in Linear and LayerNorm layers
    # optimisation
    batch_size: PositiveInt = 16  # sequences per optimizer step, over all processes (small: more updates per minute)
    micro_batch_size: PositiveInt = 16  # sequences per forward/backward pass in one process
    max_steps: PositiveInt = 900  # optimizer steps
    learning_rate: PositiveFloat = 2e-3  # peak learning rate (small models take large ones)
    min_lr: NonNegativeFloat = 2e-4  # learning rate at the end of the cosine decay
    warmup_steps: NonNegativeInt = 50  # linear warmup from 0
    weight_decay: NonNegativeFloat = 0.1  # AdamW weight decay on matrices
    beta1: Fraction01 = 0.9  # AdamW beta1
    beta2: Fraction01 = 0.99  # AdamW beta2 (0.99 for small batches, as nanoGPT's char model)
    grad_clip: NonNegativeFloat = 1.0  # clip the gradient norm to this (0: off)
    # evaluation and logging
    eval_interval: PositiveInt = 100  # evaluate val loss and save checkpoints every this many steps
    eval_batches: PositiveInt = 10  # micro-batches of val windows per evaluation
    log_interval: PositiveInt = 10  # print a progress line every this many steps
    n_samples: NonNegativeInt = 4  # samples printed at the end
    sample_tokens: PositiveInt = 60  # tokens per sample
    # system
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA, and on a CPU with native bf16), bfloat16, float32
    compile: bool = False  # torch.compile the model (worth it on GPU for long runs)
    peak_flops: NonNegativeFloat = 0.0  # the device's peak FLOP/s for MFU; 0: datasheet (known GPUs) or measured
    seed: int = 1337  # seed for model init, batches and dropout


# ----------------------------------------------------------------------------- data


def load_streams(data_dir):
    """meta.json and the memmapped train and val token streams of a prepared dataset."""
    ensure_world(data_dir)  # a fresh clone: generate the built-in world first (a few seconds)
    meta = read_meta(data_dir)
    return meta, open_token_stream(data_dir, "train", meta), open_token_stream(data_dir, "val", meta)


def window_starts(seed, step, n_tokens, block_size, batch_size):
    """Start offsets of a batch's windows in the stream: a pure function of (seed, step), so a
    resumed run and a run on N processes draw exactly the windows a single process would."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - block_size - 1, size=batch_size)


def get_batch(stream, starts, block_size, device):
    """Inputs x and next-token targets y, both (B, block_size), from windows of the memmapped stream."""
    windows = np.stack([stream[s:s + block_size + 1].astype(np.int64) for s in starts])  # (B, block_size + 1)
    xy = torch.from_numpy(windows)
    if device.type == "cuda":
        xy = xy.pin_memory().to(device, non_blocking=True)  # overlap the copy with compute
    else:
        xy = xy.to(device)
    return xy[:, :-1], xy[:, 1:]


@torch.no_grad()
def evaluate_loss(model, stream, cfg, rt):
    """Mean loss over fixed windows of the val stream: the same eval_batches * micro_batch_size
    windows at every evaluation and for any number of processes (each takes its slice), so the
    numbers compare across steps and runs."""
    model.eval()
    starts = rank_slice(window_starts(0, 0, len(stream), cfg.block_size, cfg.micro_batch_size * cfg.eval_batches), rt)
    total = 0.0
    for i in range(0, len(starts), cfg.micro_batch_size):
        x, y = get_batch(stream, starts[i:i + cfg.micro_batch_size], cfg.block_size, rt.device)
        with rt.autocast():
            total += model(x, y)[1].item() * len(x)
    model.train()
    return rt.all_reduce_mean(total / len(starts))


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
    model, model_tokenizer, _ = load_model(cfg.init_from, rt.device, dropout=cfg.dropout, expect="policy",
                                           hint="train one with `python pretrain.py` first")
    check_same_tokenizer(model_tokenizer.spec, tokenizer.spec, f"--init_from={cfg.init_from}", cfg.data_dir)
    if cfg.block_size > model.config.block_size:
        raise UserError(f"--block_size={cfg.block_size} exceeds the model's {model.config.block_size}")
    return model, tokenizer


# ----------------------------------------------------------------------------- main


def main():
    cfg = parse_config(PretrainConfig, description=__doc__)
    rt = setup_runtime(cfg.device, cfg.dtype, cfg.seed, cpu_bf16=True)  # fixed windows: bf16 pays on a CPU too
    run_folder = claim_run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, rt)  # locked until the run ends
    per_process = batch_per_process(cfg.batch_size, cfg.micro_batch_size, rt)  # this process's share of a batch
    accum = per_process // cfg.micro_batch_size  # micro-steps per optimizer step (gradient accumulation)

    # data
    if cfg.init_from == "scratch" and cfg.n_embd % cfg.n_head:
        raise UserError(f"--n_embd={cfg.n_embd} must be a multiple of --n_head={cfg.n_head} (each head gets "
                        f"n_embd / n_head dimensions)")
    meta, train_stream, val_stream = load_streams(cfg.data_dir)
    for split, stream in (("val", val_stream), ("train", train_stream)):
        if len(stream) <= cfg.block_size + 1:
            raise UserError(f"--block_size={cfg.block_size} is longer than the {split} split ({len(stream)} tokens "
                            f"in {cfg.data_dir}/{split}.bin); use a smaller block_size or more {split} data")

    # model and optimizer; --resume restores both from out_dir/ckpt.pt
    raw_model, tokenizer = build_model(cfg, meta, rt)  # raw: unwrapped from torch.compile and DDP, for saving
    optimizer = raw_model.configure_optimizer(cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2),
                                              rt.device.type)
    start_step, best_val_loss = 0, float("inf")
    if cfg.resume:
        checkpoint = load_for_resume(cfg.out_dir, "pretrain", cfg, rt)
        raw_model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start_step, best_val_loss = checkpoint["step"], checkpoint["best_val_loss"]
        rt.print(f"resuming from step {start_step} of {cfg.out_dir}/ckpt.pt")
    model = torch.compile(raw_model) if cfg.compile else raw_model
    model = wrap_ddp(model, rt)
    autocast = rt.autocast()  # bf16 on CUDA, nothing elsewhere

    tokens_per_step = cfg.batch_size * cfg.block_size
    peak_flops = cfg.peak_flops or measure_peak_flops(rt.device, torch.bfloat16 if rt.bf16 else torch.float32)
    run_folder.begin()  # inputs all checked: from here on the run writes out_dir
    log = MetricsLog(cfg.out_dir, rt, cfg.max_steps, cfg.log_interval, start_step, cfg.resume,
                     raw_model.flops_per_token(cfg.block_size), peak_flops)
    rt.print(f"{raw_model.num_params() / 1e6:.2f}M parameters | {len(train_stream):,} train tokens "
             f"({tokenizer}) | {tokens_per_step:,} tokens/step, {accum} micro-step(s) x {rt.world_size} "
             f"process(es) | {cfg.max_steps} steps on {rt.device}")

    def evaluate_and_save(step):
        """Val loss; ckpt.pt (the last state, for --resume) and best.pt (the lowest val loss)."""
        nonlocal best_val_loss
        val_loss = evaluate_loss(model, val_stream, cfg, rt)
        log.report(step, tokens_seen=step * tokens_per_step, **{"val/loss": val_loss})
        if rt.is_master:
            improved = val_loss < best_val_loss
            best_val_loss = min(best_val_loss, val_loss)
            checkpoint = {"stage": "pretrain", "step": step, "model": raw_model.state_dict(),
                          "model_config": asdict(raw_model.config), "tokenizer": tokenizer.spec,
                          "config": asdict(cfg), "metrics": {"val/loss": val_loss},
                          "optimizer": optimizer.state_dict(), "best_val_loss": best_val_loss}
            save_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), checkpoint)
            if improved:
                save_checkpoint(os.path.join(cfg.out_dir, "best.pt"), checkpoint)
            log.plot("loss.png", {"loss vs step": ["train/loss", "val/loss"],
                                  "loss vs tokens seen": ("tokens_seen", ["train/loss", "val/loss"])},
                     title=f"pretraining on {os.path.basename(cfg.data_dir)}")
        return val_loss

    # the training loop
    params = [p for group in optimizer.param_groups for p in group["params"]]  # clipped as one vector
    if start_step == 0:
        evaluate_and_save(0)
    for step in range(start_step + 1, cfg.max_steps + 1):
        seed_step(cfg.seed, step, rt.rank)  # dropout's randomness: a pure function of (seed, step, rank)
        lr = lr_at(step - 1, cfg.learning_rate, cfg.warmup_steps, cfg.max_steps, cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # the global batch's windows, a pure function of (seed, step); this process takes its slice (DDP)
        # and cuts it into accum micro-batches
        starts = window_starts(cfg.seed, step, len(train_stream), cfg.block_size, cfg.batch_size)
        starts = starts[rt.rank * per_process:(rt.rank + 1) * per_process]
        train_loss = 0.0
        for micro_step, micro_starts in enumerate(np.split(starts, accum)):
            x, y = get_batch(train_stream, micro_starts, cfg.block_size, rt.device)
            if rt.ddp:  # all-reduce the gradients once per step, in the last micro-step's backward
                model.require_backward_grad_sync = micro_step == accum - 1
            with autocast:
                _, loss = model(x, y)
                loss = loss / accum  # the mean over micro-batches is the mean over the batch
            loss.backward()
            train_loss += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        log.step(step, tokens=tokens_per_step, tokens_seen=step * tokens_per_step, lr=lr,
                 grad_norm=grad_norm.item(), **{"train/loss": train_loss})
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            val_loss = evaluate_and_save(step)

    if start_step < cfg.max_steps:
        log.finished(f"val loss {val_loss:.4f} (best {best_val_loss:.4f}); wrote {cfg.out_dir}/ckpt.pt, best.pt, "
                     f"metrics.jsonl, loss.png")
        if rt.is_master:
            print_samples(raw_model, tokenizer, meta, cfg, rt)
    run_folder.release()


def print_samples(model, tokenizer, meta, cfg, rt):
    """A few continuations at temperature 0.8: of the dataset's sample prompts (meta.json), or of
    an <|endoftext|> (a fresh document)."""
    if cfg.n_samples == 0:
        return
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

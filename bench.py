"""
Speed figures for the machine this runs on: what the README's numbers come from.

    python bench.py                                  # all four, ~4 min on a 2-core CPU
    python bench.py --only=generation                # one of: train, generation, dpo, ppo
    python bench.py --train_shape=gpt2 --batch_size=16 --compile=True   # GPT-2 124M on a GPU

1. matmul peak: the FLOP/s of large square matmuls, the denominator of MFU on hardware whose
   datasheet peak we do not know (a laptop CPU).
2. train: pretraining steps (forward, backward, AdamW) on random tokens in a named model shape,
   tokens/s and MFU (PaLM's 6N + attention FLOPs per token, model.flops_per_token).
3. generation: greedy decoding of 256 tokens after 16-token prompts with a 6-layer, 192-wide
   model (block 512), with the KV cache and with full recomputation at every step, batch 1 and 16.
   Both must produce the same tokens; the speed-up is the point of the cache.
4. dpo, ppo: optimizer steps (DPO) and iterations (PPO: rollouts + PPO epochs) per second of the
   real scripts on the default models (out/sft, out/reward), read from their metrics.jsonl.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

import torch

from cli import DType, Device, NonNegativeInt, Path, PositiveInt, UserError, parse_config, repo_path, run_main
from metrics import read_metrics
from model import GPT, GPTConfig, estimate_mfu, generate
from runtime import measure_peak_flops, setup_runtime, sync

# name: (n_layer, n_head, n_embd, block_size, vocab_size, batch_size)
TRAIN_SHAPES = {
    "shakespeare_char": (4, 4, 128, 64, 320, 12),  # nanoGPT's CPU quick start (byte tokens + specials, padded)
    "world": (4, 4, 128, 256, 1088, 16),  # pretrain.py's default on the world
    "gpt2": (12, 12, 768, 1024, 50304, 8),  # GPT-2 124M (a GPU shape; raise batch_size to fill the GPU)
}


@dataclass
class BenchConfig:
    only: Optional[str] = None  # comma-separated subset of train,generation,dpo,ppo (None: all)
    train_shape: str = "shakespeare_char"  # shakespeare_char, world or gpt2 (see TRAIN_SHAPES)
    batch_size: NonNegativeInt = 0  # sequences per training step (0: the shape's own)
    train_steps: PositiveInt = 30  # timed training steps (after 3 warm-up steps)
    compile: bool = False  # torch.compile the training model
    gen_vocab_size: PositiveInt = 1024  # vocabulary of the generation model (the world's is about 1k)
    prompt_len: PositiveInt = 16  # generation prompt tokens
    new_tokens: PositiveInt = 256  # tokens generated per prompt
    dpo_steps: PositiveInt = 30  # DPO steps timed (the first is excluded: start-up)
    ppo_steps: PositiveInt = 6  # PPO iterations timed (the first is excluded)
    out_dir: Path = "out/bench"  # bench.json and bench.md go here
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA), bfloat16, float32


def bench_train(cfg, rt, peak):
    n_layer, n_head, n_embd, block, vocab, batch = TRAIN_SHAPES[cfg.train_shape]
    batch = cfg.batch_size or batch
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=n_layer, n_head=n_head,
                          n_embd=n_embd)).to(rt.device)
    optimizer = model.configure_optimizer(1e-3, 0.1, (0.9, 0.99), rt.device.type)
    step_model = torch.compile(model) if cfg.compile else model
    data = torch.randint(0, vocab, (batch, block + 1), device=rt.device)

    def step():  # one pretraining step, as pretrain.py takes it with a single micro-batch
        with rt.autocast():
            _, loss = step_model(data[:, :-1], targets=data[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up (and compilation)
        step()
    sync(rt.device)
    t0 = time.perf_counter()
    for _ in range(cfg.train_steps):
        step()
    sync(rt.device)
    tokens_per_s = cfg.train_steps * batch * block / (time.perf_counter() - t0)
    mfu = estimate_mfu(model.flops_per_token(block), tokens_per_s, peak)
    return {"shape": cfg.train_shape, "params_M": model.num_params() / 1e6, "batch_size": batch,
            "block_size": block, "compile": cfg.compile, "tokens_per_s": tokens_per_s, "mfu": mfu}


def bench_generation(cfg, rt):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=512, vocab_size=cfg.gen_vocab_size, n_layer=6, n_head=6,
                          n_embd=192)).to(rt.device).eval()
    results = []
    for batch, repeats in ((1, 3), (16, 1)):  # batch 1 is per-step overhead, noisy: the best of 3 runs
        prompts = torch.randint(0, cfg.gen_vocab_size, (batch, cfg.prompt_len)).tolist()
        timings, outputs = {}, {}
        for use_cache in (True, False):
            with rt.autocast():
                generate(model, prompts, 8, temperature=0, use_cache=use_cache)  # warm-up
                runs = []
                for _ in range(repeats):
                    sync(rt.device)
                    t0 = time.perf_counter()
                    out = generate(model, prompts, cfg.new_tokens, temperature=0, use_cache=use_cache)
                    sync(rt.device)
                    runs.append(time.perf_counter() - t0)
            timings[use_cache] = min(runs)
            outputs[use_cache] = out.tokens
        new = batch * cfg.new_tokens
        results.append({"batch_size": batch, "cache_tokens_per_s": new / timings[True],
                        "recompute_tokens_per_s": new / timings[False],
                        "speedup": timings[False] / timings[True],
                        "same_tokens": bool(torch.equal(outputs[True], outputs[False]))})
    return results


def bench_script(script, args, steps, cfg):
    """Run a stage script for a few steps in a scratch folder; its own timing (steps after the
    first, evaluation excluded) comes back from metrics.jsonl."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, repo_path(script), f"--out_dir={out}", f"--max_steps={steps}",
               f"--eval_interval={10 * steps}", "--eval_per_suite=0", f"--device={cfg.device}",
               f"--dtype={cfg.dtype}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()[-2000:]}")
        rows = read_metrics(out)
    return next(r["time/steps_per_s"] for r in reversed(rows) if "time/steps_per_s" in r)


def stage_models_present():
    missing = [d for d in ("out/sft", "out/reward") if not os.path.exists(repo_path(d, "ckpt.pt"))]
    if missing:
        print(f"  skipped: {', '.join(missing)} missing (make them with `python sft.py` and `python reward.py`)")
    return not missing


def write_report(cfg, device_name, results):
    lines = [f"# bench.py on {device_name}", ""]
    if "peak_flops" in results:
        lines.append(f"- matmul peak: {results['peak_flops'] / 1e9:,.1f} GFLOP/s ({results['peak_dtype']})")
    if "train" in results:
        t = results["train"]
        lines.append(f"- pretraining, {t['shape']} shape ({t['params_M']:.2f}M non-embedding params, batch "
                     f"{t['batch_size']} x {t['block_size']}{', compiled' if t['compile'] else ''}): "
                     f"{t['tokens_per_s']:,.0f} tokens/s, MFU {t['mfu']:.1%}")
    for g in results.get("generation", []):
        lines.append(f"- generation, batch {g['batch_size']}: {g['cache_tokens_per_s']:,.0f} tokens/s with the KV "
                     f"cache, {g['recompute_tokens_per_s']:,.0f} recomputing: {g['speedup']:.1f}x "
                     f"(same tokens: {'yes' if g['same_tokens'] else 'NO'})")
    if "dpo_steps_per_s" in results:
        lines.append(f"- dpo.py: {results['dpo_steps_per_s']:.2f} steps/s (32 pairs per step)")
    if "ppo_steps_per_s" in results:
        lines.append(f"- ppo.py: {results['ppo_steps_per_s']:.3f} iterations/s ({1 / results['ppo_steps_per_s']:.1f} "
                     f"s each: 32 rollouts of up to 48 tokens, 2 PPO epochs)")
    os.makedirs(cfg.out_dir, exist_ok=True)
    with open(os.path.join(cfg.out_dir, "bench.json"), "w") as f:
        json.dump({"device": device_name, **results}, f, indent=1)
    with open(os.path.join(cfg.out_dir, "bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def main():
    cfg = parse_config(BenchConfig, description=__doc__)
    parts = cfg.only.split(",") if cfg.only else ["train", "generation", "dpo", "ppo"]
    unknown = set(parts) - {"train", "generation", "dpo", "ppo"}
    if unknown or cfg.train_shape not in TRAIN_SHAPES:
        raise UserError(f"--only takes train,generation,dpo,ppo and --train_shape one of {', '.join(TRAIN_SHAPES)}")
    rt = setup_runtime(cfg.device, cfg.dtype)
    torch.set_grad_enabled(True)
    device_name = (torch.cuda.get_device_name() if rt.device.type == "cuda" else
                   f"{rt.device.type}, {torch.get_num_threads()} threads") + f", torch {torch.__version__}"
    print(f"bench on {device_name}")
    results = {}
    if "train" in parts:
        dtype = torch.bfloat16 if rt.bf16 else torch.float32
        results["peak_flops"], results["peak_dtype"] = measure_peak_flops(rt.device, dtype), str(dtype)
        print(f"matmul peak {results['peak_flops'] / 1e9:,.1f} GFLOP/s; timing pretraining steps ...")
        results["train"] = bench_train(cfg, rt, results["peak_flops"])
    if "generation" in parts:
        print("timing generation with and without the KV cache ...")
        results["generation"] = bench_generation(cfg, rt)
    if ("dpo" in parts or "ppo" in parts) and stage_models_present():
        if "dpo" in parts:
            print("timing dpo.py ...")
            results["dpo_steps_per_s"] = bench_script("dpo.py", ["--kl_samples=0"], cfg.dpo_steps, cfg)
        if "ppo" in parts:
            print("timing ppo.py ...")
            results["ppo_steps_per_s"] = bench_script("ppo.py", [], cfg.ppo_steps, cfg)
    print("\n".join(write_report(cfg, device_name, results)))
    print(f"wrote {cfg.out_dir}/bench.md and bench.json")


if __name__ == "__main__":
    run_main(main)

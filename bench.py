"""
Speed figures for the machine this runs on: what the speed chapter's numbers (docs/10-speed.md) come from.

    python bench.py                                  # all seven, ~8 min on a 2-core CPU
    python bench.py --only=generation                # one of: train, precision, attention, generation, dpo, ppo, lora
    python bench.py --train_shape=gpt2 --batch_size=16 --compile=True   # GPT-2 124M on a GPU
    python profiler.py sft.py ...                    # where a stage's time goes (forward, backward, eval, ...)

1. peak: the denominator of MFU. A GPU in runtime.DATASHEET_PEAK_FLOPS takes its datasheet figure;
   other hardware (a laptop CPU) the FLOP/s of large square matmuls (the fastest one over 2 s, after
   a warm-up: runtime.measure_peak_flops says why); --peak_flops overrides both.
2. train: pretraining steps (forward, backward, AdamW) on random tokens in a named model shape,
   tokens/s and MFU (PaLM's 6N + attention FLOPs per token, model.flops_per_token), against a
   baseline timed in the same run: a plain nanoGPT-style GPT of the same shape (BaselineGPT below)
   in the same loop, once on nanoGPT's own settings and once on this project's. The timings
   alternate, --train_rounds (3) rounds each, and each keeps its best round; the ratios project /
   baseline are the figures to quote: all sides share machine and moment.
3. precision: a training step of the world's model in float32 and under bf16 autocast, on fixed
   pretraining windows and on the chat stages' sequences of changing length: what decides
   setup_runtime's precision on this machine.
4. attention: a training step with SDPA's fused flash kernel (its own choice on a CPU) and with
   its math backend, in float32 and bf16 autocast, at 64, 128 and 256 tokens: what decides
   model.prefers_math_attention on a CPU.
5. generation: greedy decoding of 256 tokens after 16-token prompts with a 6-layer, 192-wide
   model (block 512), with the KV cache and with full recomputation at every step, batch 1 and 16.
   Both must produce the same tokens; the speed-up is the point of the cache.
6. dpo, ppo: optimizer steps (DPO) and iterations (PPO: rollouts + PPO epochs) per second of the
   real scripts on the default models (out/sft, out/reward), read from their metrics.jsonl.
7. lora: full fine-tuning against LoRA (lora.py, rank --lora_rank on the attention projections) in
   the GPT-2 124M and gpt2-medium shapes (random weights, nothing downloaded): trainable parameters,
   the bytes of their gradients and of AdamW's state (measured on the optimizer after a step), and
   the time of a training step of one --lora_tokens-token sequence.
"""

import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from cli import (DType, Device, Folder, NonNegativeFloat, NonNegativeInt, PositiveInt, UserError, parse_config,
                 repo_path, run_main)
from lora import apply_lora, count_trainable
from metrics import read_metrics
from model import GPT, GPTConfig, estimate_mfu, generate
from run_folder import claim_run_folder
from runtime import datasheet_peak_flops, measure_peak_flops, setup_runtime, sync

# name: (n_layer, n_head, n_embd, block_size, vocab_size, batch_size)
TRAIN_SHAPES = {
    "shakespeare_char": (4, 4, 128, 64, 320, 12),  # nanoGPT's CPU quick start (byte tokens + specials, padded)
    "world": (4, 4, 128, 256, 1088, 16),  # pretrain.py's default on the world
    "gpt2": (12, 12, 768, 1024, 50304, 8),  # GPT-2 124M (a GPU shape; raise batch_size to fill the GPU)
}
BENCHES = ("train", "precision", "attention", "generation", "dpo", "ppo", "lora")  # what --only can pick
LORA_SHAPES = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024)}  # (n_layer, n_head, n_embd); block 1024


@dataclass
class BenchConfig:
    only: Optional[str] = None  # comma-separated subset of train,precision,attention,generation,dpo,ppo,lora (None: all)
    train_shape: str = "shakespeare_char"  # shakespeare_char, world or gpt2 (see TRAIN_SHAPES)
    batch_size: NonNegativeInt = 0  # sequences per training step (0: the shape's own)
    train_steps: PositiveInt = 30  # timed training steps per round (after 3 warm-up steps)
    train_rounds: PositiveInt = 3  # rounds of the project's model and of the baseline, alternating; best kept
    compile: bool = False  # torch.compile the training models (the project's and the baseline)
    peak_flops: NonNegativeFloat = 0.0  # the device's peak FLOP/s for MFU; 0: datasheet (known GPUs) or measured
    gen_vocab_size: PositiveInt = 1024  # vocabulary of the generation model (the world's is about 1k)
    prompt_len: PositiveInt = 16  # generation prompt tokens
    new_tokens: PositiveInt = 256  # tokens generated per prompt
    dpo_steps: PositiveInt = 30  # DPO steps timed (the first is excluded: start-up)
    ppo_steps: PositiveInt = 6  # PPO iterations timed (the first is excluded)
    lora_rank: PositiveInt = 8  # LoRA rank compared with full fine-tuning
    lora_tokens: PositiveInt = 256  # tokens in the one sequence of each timed LoRA / full step
    lora_steps: PositiveInt = 2  # timed steps of each (after one that creates AdamW's state)
    precision_steps: PositiveInt = 40  # training steps of each workload in each precision (--only=precision)
    out_dir: Folder = "out/bench"  # bench.json and bench.md go here
    overwrite: bool = False  # replace earlier figures in out_dir
    device: Device = "auto"  # auto (cuda > mps > cpu), cpu, cuda, mps
    dtype: DType = "auto"  # auto (bf16 autocast on CUDA), bfloat16, float32


class BaselineBlock(nn.Module):
    """Pre-LayerNorm block, x + attn(ln_1(x)) then x + mlp(ln_2(x)), written as plainly as
    nanoGPT's: causal attention through scaled_dot_product_attention, a GELU MLP 4x wide."""

    def __init__(self, n_head, n_embd):
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # q, k and v in one matmul
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp(self.ln_2(x))


class BaselineGPT(nn.Module):
    """The speed baseline: a minimal GPT-2 in the style of nanoGPT's model.py, with nothing of
    this project's (no KV cache, masks, padding or scalar head). Same layers, widths and parameter
    count as model.GPT for a given shape (bench_train checks), so the two do the same FLOPs and
    their tokens/s compare the code, not the model. As in nanoGPT, the GELU is the exact one and the
    loss takes the logits in their own dtype (model.GPT: tanh GELU, logits cast to fp32). Weights
    keep PyTorch's default init: speed does not depend on them."""

    def __init__(self, n_layer, n_head, n_embd, block_size, vocab_size):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(BaselineBlock(n_head, n_embd) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    def configure_optimizer(self, lr, weight_decay, betas, device_type, fused=None):
        """AdamW, decay on 2-D weights only; nanoGPT's choice of kernel (fused on CUDA, foreach
        elsewhere) unless fused says otherwise."""
        params = list(self.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = device_type == "cuda" if fused is None else fused
        fused = fused and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **(dict(fused=True) if fused else dict(foreach=True)))


def training_step(model, optimizer, data, autocast, compile_=False):
    """One pretraining step as pretrain.py takes it with a single micro-batch (forward under
    autocast, backward, clip, AdamW, zero), the same function for both models: nothing but the
    model and the settings given differ between timings. autocast: a function returning the
    context (Runtime.autocast, or nullcontext for float32)."""
    step_model = torch.compile(model) if compile_ else model

    def step():
        with autocast():
            _, loss = step_model(data[:, :-1], targets=data[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def time_steps(step, n, device, warmup=3):
    """Seconds for n steps after `warmup` steps (compilation, allocator, thread pool)."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return time.perf_counter() - t0


def bench_train(cfg, rt, peak):
    """Pretraining tokens/s of model.GPT and of BaselineGPT of the same shape, with two ratios:
    each on its own default settings for this machine (this project: pretrain.py's precision from
    setup_runtime and AdamW's fused kernel; the baseline: nanoGPT's on a CPU, float32 and the
    foreach kernel; on CUDA both bf16 and fused), and both on the project's settings (what the
    code alone is worth; the gain of the first over the second is the settings').

    A speed claim against another code base only means something measured on one machine at one
    time: the README once set this project's figure beside a nanoGPT figure from another machine.
    So the baseline runs here, in this process, and the three timings alternate for
    cfg.train_rounds rounds, in an order that turns every round, so that whatever else the
    machine does hits all alike; each keeps its fastest round, the one least disturbed."""
    n_layer, n_head, n_embd, block, vocab, batch = TRAIN_SHAPES[cfg.train_shape]
    batch = cfg.batch_size or batch
    torch.manual_seed(0)
    data = torch.randint(0, vocab, (batch, block + 1), device=rt.device)
    model = GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=n_layer, n_head=n_head,
                          n_embd=n_embd)).to(rt.device)
    baselines = [BaselineGPT(n_layer, n_head, n_embd, block, vocab).to(rt.device) for _ in range(2)]
    assert sum(p.numel() for p in baselines[0].parameters()) == model.num_params(non_embedding=False)
    cuda = rt.device.type == "cuda"
    baseline_autocast = rt.autocast if cuda else nullcontext  # nanoGPT: bf16 on CUDA, float32 on a CPU
    steps = {"project": training_step(model, model.configure_optimizer(1e-3, 0.1, (0.9, 0.99), rt.device.type),
                                      data, rt.autocast, cfg.compile),
             "baseline": training_step(baselines[0], baselines[0].configure_optimizer(1e-3, 0.1, (0.9, 0.99),
                                                                                     rt.device.type),
                                       data, baseline_autocast, cfg.compile and cuda),
             "baseline, project's settings": training_step(
                 baselines[1], baselines[1].configure_optimizer(1e-3, 0.1, (0.9, 0.99), rt.device.type,
                                                                fused=rt.device.type in ("cuda", "cpu")),
                 data, rt.autocast, cfg.compile)}
    names = list(steps)
    seconds = {name: [] for name in names}
    for r in range(cfg.train_rounds):
        for name in names[r % 3:] + names[:r % 3]:
            seconds[name].append(time_steps(steps[name], cfg.train_steps, rt.device))
    tokens = cfg.train_steps * batch * block
    rates = {name: max(tokens / s for s in runs) for name, runs in seconds.items()}
    return {"shape": cfg.train_shape, "params_M": model.num_params() / 1e6, "batch_size": batch,
            "block_size": block, "compile": cfg.compile, "rounds": cfg.train_rounds,
            "precision": "bf16 autocast" if rt.bf16 else "float32",
            "baseline_precision": "bf16 autocast" if cuda and rt.bf16 else "float32",
            "tokens_per_s": rates["project"], "mfu": estimate_mfu(model.flops_per_token(block), rates["project"], peak),
            "baseline_tokens_per_s": rates["baseline"],
            "baseline_same_settings_tokens_per_s": rates["baseline, project's settings"],
            "ratio": rates["project"] / rates["baseline"],
            "ratio_same_settings": rates["project"] / rates["baseline, project's settings"]}


def bench_precision(cfg, rt):
    """A training step of the world's model (pretrain.py's default shape) in float32 and under bf16
    autocast, on fixed 256-token windows (pretraining) and on sequences whose length changes at
    every step (the chat stages' micro-batches of 8 with --pack=false, lengths 40 to 200), tokens/s
    each: the measurement behind setup_runtime's choice of precision on this machine's CPU (bf16 for
    pretraining and for packed rows, which have one shape)."""
    n_layer, n_head, n_embd, block, vocab, batch = TRAIN_SHAPES["world"]
    lengths = torch.randint(40, 201, (cfg.precision_steps,), generator=torch.Generator().manual_seed(0)).tolist()
    rows = []
    for name, shapes in (("fixed 16 x 256 windows", [(batch, block)] * cfg.precision_steps),
                         ("8 chats of changing length", [(8, T) for T in lengths])):
        row = {"workload": name}
        for precision in ("float32", "bf16"):
            torch.manual_seed(0)
            model = GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=n_layer, n_head=n_head,
                                  n_embd=n_embd)).to(rt.device)
            optimizer = model.configure_optimizer(1e-3, 0.1, (0.9, 0.99), rt.device.type)
            autocast = (lambda: torch.autocast(rt.device.type, dtype=torch.bfloat16)) if precision == "bf16" \
                else nullcontext
            tokens, start = 0, None
            for i, (B, T) in enumerate(shapes):
                if i == 3:  # the first steps carry allocation and kernel set-up
                    sync(rt.device)
                    tokens, start = 0, time.perf_counter()
                data = torch.randint(0, vocab, (B, T + 1), device=rt.device)
                training_step(model, optimizer, data, autocast)()
                tokens += B * T
            sync(rt.device)
            row[precision] = tokens / (time.perf_counter() - start)
        row["speedup"] = row["bf16"] / row["float32"]
        rows.append(row)
        print(f"  {name}: float32 {row['float32']:,.0f} tokens/s, bf16 autocast {row['bf16']:,.0f} "
              f"({row['speedup']:.2f}x)")
    return rows


def bench_attention(cfg, rt):
    """A training step with SDPA's fused flash kernel (its own choice on a CPU) and with
    its math backend (softmax(QK^T/sqrt(d))V as plain matmuls, autograd for the backward), in float32
    and under bf16 autocast, at the Shakespeare shape (64 tokens) and the world model's at 128 and 256
    tokens (batches cut to keep it short); the two backends alternate for cfg.train_rounds rounds,
    best kept. The measurement behind model.prefers_math_attention."""
    rows = []
    for shape, block, batch in (("shakespeare_char", 64, 12), ("world", 128, 8), ("world", 256, 4)):
        n_layer, n_head, n_embd, _, vocab, _ = TRAIN_SHAPES[shape]
        data = torch.randint(0, vocab, (batch, block + 1), generator=torch.Generator().manual_seed(0)).to(rt.device)
        for precision in ("float32", "bf16"):
            steps = {}
            for backend in ("flash", "math"):
                torch.manual_seed(0)
                model = GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=n_layer, n_head=n_head,
                                      n_embd=n_embd)).to(rt.device)

                def autocast(backend=backend, precision=precision):
                    stack = ExitStack()
                    if precision == "bf16":
                        stack.enter_context(torch.autocast(rt.device.type, dtype=torch.bfloat16))
                    stack.enter_context(sdpa_kernel(SDPBackend.MATH if backend == "math" else SDPBackend.FLASH_ATTENTION))
                    return stack
                steps[backend] = training_step(model, model.configure_optimizer(1e-3, 0.1, (0.9, 0.99),
                                                                                 rt.device.type), data, autocast)
            seconds = {backend: [] for backend in steps}
            for r in range(cfg.train_rounds):
                for backend in (("flash", "math") if r % 2 == 0 else ("math", "flash")):
                    seconds[backend].append(time_steps(steps[backend], cfg.train_steps, rt.device))
            rates = {backend: cfg.train_steps * batch * block / min(runs) for backend, runs in seconds.items()}
            row = {"shape": shape, "block_size": block, "batch_size": batch, "precision": precision,
                   "flash": rates["flash"], "math": rates["math"], "speedup": rates["math"] / rates["flash"]}
            rows.append(row)
            print(f"  {shape}, {batch} x {block} tokens, {precision}: flash kernel {row['flash']:,.0f} "
                  f"tokens/s, math backend {row['math']:,.0f} ({row['speedup']:.2f}x)")
    return rows


def mfu_text(mfu):
    """MFU as a percentage, but never above 100%: that can only mean the peak is too low (measured
    while the machine was busy, or a wrong --peak_flops), so it says so. bench.json keeps the raw ratio."""
    return f"MFU {mfu:.1%}" if mfu <= 1 else "MFU >100% (peak too low; pass --peak_flops)"


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


def bench_lora(cfg, rt):
    """Full fine-tuning against LoRA, per GPT-2 shape: what the optimizer holds and a step's time."""
    rows = []
    for name, (n_layer, n_head, n_embd) in LORA_SHAPES.items():
        for rank in (0, cfg.lora_rank):
            torch.manual_seed(0)
            model = GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=1024,
                                  vocab_size=50304)).to(rt.device)
            if rank:
                apply_lora(model, rank, alpha=16.0)
            trainable, total = count_trainable(model)
            optimizer = model.configure_optimizer(1e-4, 0.1, (0.9, 0.95), rt.device.type)
            x = torch.randint(0, 50304, (1, cfg.lora_tokens + 1), device=rt.device)

            def step():
                with rt.autocast():
                    _, loss = model(x[:, :-1], x[:, 1:])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            step()  # AdamW creates its state (two tensors per trainable parameter) at the first step
            state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                        if torch.is_tensor(t) and t.dim() > 0)
            seconds = time_steps(step, cfg.lora_steps, rt.device, warmup=0) / cfg.lora_steps
            rows.append({"shape": name, "rank": rank, "trainable": trainable, "total": total,
                         "grad_MB": sum(p.numel() * p.element_size() for p in model.parameters()
                                        if p.requires_grad) / 1e6,
                         "adam_state_MB": state / 1e6, "step_s": seconds})
            print(f"  {name}, {'LoRA rank ' + str(rank) if rank else 'full fine-tuning'}: {trainable:,} trainable, "
                  f"AdamW state {state / 1e6:,.1f} MB, {seconds:.2f} s per step")
    return rows


def stage_models_present():
    missing = [d for d in ("out/sft", "out/reward") if not os.path.exists(repo_path(d, "ckpt.pt"))]
    if missing:
        print(f"  skipped: {', '.join(missing)} missing (make them with `python sft.py` and `python reward.py`)")
    return not missing


def write_report(cfg, device_name, results):
    lines = [f"# bench.py on {device_name}", ""]
    if "peak_flops" in results:
        lines.append(f"- peak: {results['peak_flops'] / 1e9:,.1f} GFLOP/s ({results['peak_dtype']}, "
                     f"{results['peak_source']})")
    if "train" in results:
        t = results["train"]
        lines.append(f"- pretraining, {t['shape']} shape ({t['params_M']:.2f}M non-embedding params, batch "
                     f"{t['batch_size']} x {t['block_size']}{', compiled' if t['compile'] else ''}): "
                     f"{t['tokens_per_s']:,.0f} tokens/s ({t['precision']}, fused AdamW), {mfu_text(t['mfu'])}; "
                     f"nanoGPT-style baseline (bench.py's BaselineGPT, same shape, same loop) on nanoGPT's settings "
                     f"({t['baseline_precision']}, its AdamW kernel): {t['baseline_tokens_per_s']:,.0f} tokens/s, "
                     f"**project / baseline {t['ratio']:.2f}x**; the baseline on the project's settings: "
                     f"{t['baseline_same_settings_tokens_per_s']:,.0f} tokens/s, project / baseline "
                     f"{t['ratio_same_settings']:.2f}x (best of {t['rounds']} alternating rounds each)")
    for p in results.get("precision", []):
        lines.append(f"- precision, the world's model, {p['workload']}: float32 {p['float32']:,.0f} tokens/s, "
                     f"bf16 autocast {p['bf16']:,.0f} ({p['speedup']:.2f}x)")
    for a in results.get("attention", []):
        lines.append(f"- attention, {a['shape']} shape, {a['batch_size']} x {a['block_size']} tokens, "
                     f"{a['precision']}: SDPA's flash kernel {a['flash']:,.0f} tokens/s, its math backend "
                     f"{a['math']:,.0f} ({a['speedup']:.2f}x)")
    for g in results.get("generation", []):
        lines.append(f"- generation, batch {g['batch_size']}: {g['cache_tokens_per_s']:,.0f} tokens/s with the KV "
                     f"cache, {g['recompute_tokens_per_s']:,.0f} recomputing: {g['speedup']:.1f}x "
                     f"(same tokens: {'yes' if g['same_tokens'] else 'NO'})")
    if "dpo_steps_per_s" in results:
        lines.append(f"- dpo.py: {results['dpo_steps_per_s']:.2f} steps/s (32 pairs per step)")
    if "ppo_steps_per_s" in results:
        lines.append(f"- ppo.py: {results['ppo_steps_per_s']:.3f} iterations/s ({1 / results['ppo_steps_per_s']:.1f} "
                     f"s each: 32 rollouts of up to 48 tokens, 2 PPO epochs)")
    if "lora" in results:
        lines += ["", f"LoRA against full fine-tuning (random weights, one sequence of {cfg.lora_tokens} tokens per "
                      f"step, fp32 weights and AdamW state):", "",
                  "| shape | training | trainable params | gradients | AdamW state | step time |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in results["lora"]:
            lines.append(f"| {r['shape']} | {'LoRA rank ' + str(r['rank']) if r['rank'] else 'full'} | "
                         f"{r['trainable'] / 1e6:,.2f}M of {r['total'] / 1e6:,.1f}M | {r['grad_MB']:,.1f} MB | "
                         f"{r['adam_state_MB']:,.1f} MB | {r['step_s']:.2f} s |")
    os.makedirs(cfg.out_dir, exist_ok=True)
    with open(os.path.join(cfg.out_dir, "bench.json"), "w") as f:
        json.dump({"device": device_name, **results}, f, indent=1)
    with open(os.path.join(cfg.out_dir, "bench.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def main():
    cfg = parse_config(BenchConfig, description=__doc__)
    parts = cfg.only.split(",") if cfg.only else list(BENCHES)
    if set(parts) - set(BENCHES) or cfg.train_shape not in TRAIN_SHAPES:
        raise UserError(f"--only takes {','.join(BENCHES)} and --train_shape one of {', '.join(TRAIN_SHAPES)}")
    rt = setup_runtime(cfg.device, cfg.dtype, cpu_bf16=True)  # the train bench times pretraining: its precision
    out_folder = claim_run_folder(cfg.out_dir, False, cfg.overwrite, rt, outputs=("bench.md", "bench.json"),
                                  resumable=False)
    torch.set_grad_enabled(True)
    device_name = (torch.cuda.get_device_name() if rt.device.type == "cuda" else
                   f"{rt.device.type}, {torch.get_num_threads()} threads") + f", torch {torch.__version__}"
    print(f"bench on {device_name}")
    results = {}
    if "train" in parts:
        dtype = torch.bfloat16 if rt.bf16 else torch.float32
        results["peak_flops"] = cfg.peak_flops or measure_peak_flops(rt.device, dtype)
        results["peak_dtype"] = str(dtype)
        results["peak_source"] = ("--peak_flops" if cfg.peak_flops else "datasheet"
                                  if datasheet_peak_flops(rt.device, dtype) else "measured matmul")
        print(f"peak {results['peak_flops'] / 1e9:,.1f} GFLOP/s ({results['peak_source']}); timing pretraining "
              f"steps, this project's model and the baseline alternating ...")
        results["train"] = bench_train(cfg, rt, results["peak_flops"])
    if "precision" in parts:
        print("timing training steps of the world's model in float32 and bf16 autocast ...")
        results["precision"] = bench_precision(cfg, rt)
    if "attention" in parts:
        print("timing training steps with SDPA's flash kernel and with its math backend ...")
        results["attention"] = bench_attention(cfg, rt)
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
    if "lora" in parts:
        print("timing full fine-tuning and LoRA in GPT-2 shapes ...")
        results["lora"] = bench_lora(cfg, rt)
    out_folder.begin()  # the figures are in: from here on bench.py writes out_dir
    print("\n".join(write_report(cfg, device_name, results)))
    out_folder.release()
    print(f"wrote {cfg.out_dir}/bench.md and bench.json")


if __name__ == "__main__":
    run_main(main)

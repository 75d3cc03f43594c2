"""
How a training process runs: the device (cuda > mps > cpu), bf16 autocast, torchrun's processes
(DDP), randomness and batches that are pure functions of (seed, step) so that resume and
multi-process runs are exact, the learning-rate schedule, and the device's peak FLOP/s (from a
datasheet table for known GPUs, measured elsewhere).
"""

import math
import os
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cli import UserError

# ----------------------------------------------------------------------------- devices and DDP



@dataclass
class Runtime:
    """Where this process runs: device, its rank among torchrun's processes, and mixed precision."""
    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    bf16: bool = False

    @property
    def is_master(self):
        return self.rank == 0

    @property
    def ddp(self):
        return self.world_size > 1

    def autocast(self):
        """bf16 autocast where setup_runtime chose it (no loss scaling needed, unlike fp16): matmuls
        in bf16, reductions and losses in fp32; a nullcontext (full fp32) elsewhere."""
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def print(self, *args, **kwargs):
        if self.is_master:
            print(*args, **kwargs, flush=True)

    def all_reduce_mean(self, value):
        """Mean of a number over all processes (for logging)."""
        return self.all_reduce_means({"value": value})["value"]

    def all_reduce_means(self, values):
        """{name: number} -> {name: mean over all processes}, in one all-reduce."""
        if not self.ddp:
            return {k: float(v) for k, v in values.items()}
        t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world_size).tolist()))


def setup_runtime(device="auto", dtype="auto", seed=None, cpu_bf16=False):
    """Pick the device (cuda > mps > cpu) and join torchrun's process group if launched by it
    (nccl on GPU, gloo on CPU). Under plain `python` this is a single process. With a seed,
    torch's RNG is seeded per rank (seed + rank): whatever a script initialises before training
    (a new reward head, say) is then reproducible; DDP copies rank 0's weights to every rank.

    Precision (dtype auto): bf16 autocast on a CUDA device that has it; on a CPU that multiplies
    bf16 natively (AVX512-BF16, AMX) only where the caller knows it pays (cpu_bf16): measured with
    bench.py --only=precision, fixed 256-token windows (pretraining, and the chat stages' packed
    rows) ran 1.7x faster, while short sequences of ever-changing length (the chat stages with
    --pack=false) ran no faster, or slower."""
    rank, local_rank, world_size = (int(os.environ.get(k, d)) for k, d in
                                    (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else \
            "mps" if torch.backends.mps.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device=cuda: this machine has no CUDA device that torch can use (--device=auto picks one)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device=mps: Apple's MPS is not available here (--device=auto picks a device)")
    if device == "cuda" and world_size > 1:
        device = f"cuda:{local_rank}"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls for whatever stays in fp32
        torch.backends.cudnn.allow_tf32 = True
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dtype not in ("auto", "bfloat16", "float32"):
        raise UserError(f"--dtype={dtype}: expected auto, bfloat16 or float32")
    if device.type == "cuda":
        bf16 = dtype != "float32" and torch.cuda.is_bf16_supported()
    else:
        bf16 = dtype == "bfloat16" or (dtype == "auto" and device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16())
    if seed is not None:
        torch.manual_seed(seed + rank)
    rt = Runtime(device, rank, local_rank, world_size, bf16)
    rt.print(f"device: {device}" + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else "")
             + (", bf16 autocast" + (" (the CPU multiplies bf16 natively)" if device.type == "cpu" else "")
                if bf16 else ", float32"))
    return rt


def cpu_has_native_bf16():
    """Whether the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX, from Linux's /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def wrap_ddp(model, rt):
    """DistributedDataParallel under torchrun: gradients are averaged over processes in backward."""
    if not rt.ddp:
        return model
    return DistributedDataParallel(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)


# ----------------------------------------------------------------------------- randomness and batches


def derived_seed(*parts):
    """A well-mixed integer seed from a tuple of integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def seed_step(seed, step, rank=0):
    """Re-seed torch's RNG (dropout, sampling) from (seed, step, rank) at every step: the random
    numbers of a step then never depend on history, so a resumed run draws exactly what an
    uninterrupted one would, with no RNG state to save."""
    torch.manual_seed(derived_seed(seed, step, rank))


def batch_indices(seed, step, n_examples, batch_size):
    """Example indices of a step's global batch: a pure function of (seed, step). Each epoch
    visits the examples in a fresh random order, n_examples // batch_size batches (the rest waits
    for the next epoch's shuffle)."""
    per_epoch = n_examples // batch_size
    if per_epoch == 0:
        raise UserError(f"batch_size={batch_size} is larger than the dataset ({n_examples} examples)")
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_examples)
    return order[k * batch_size:(k + 1) * batch_size].tolist()


def rank_slice(items, rt):
    """This process's share of a global batch (DDP): rank r takes the r-th contiguous slice."""
    if len(items) % rt.world_size:
        raise UserError(f"global batch of {len(items)} does not split over {rt.world_size} processes")
    n = len(items) // rt.world_size
    return items[rt.rank * n:(rt.rank + 1) * n]


def batch_per_process(batch_size, micro_batch_size, rt):
    """Examples of the global batch that each process takes (DDP): batch_size stays the global
    batch whatever the number of processes, so a 2-process run matches a 1-process run step for
    step. Each process then cuts its share into micro-batches of micro_batch_size (gradient
    accumulation)."""
    per_process, rest = divmod(batch_size, rt.world_size)
    if rest or per_process % micro_batch_size:
        raise UserError(f"batch_size={batch_size} must be a multiple of micro_batch_size={micro_batch_size} "
                        f"x {rt.world_size} processes")
    return per_process


# ----------------------------------------------------------------------------- the learning rate


def lr_at(step, max_lr, warmup_steps, total_steps, min_lr):
    """Linear warmup from 0 to max_lr, then cosine decay to min_lr at total_steps (GPT-3, Chinchilla)."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


# ----------------------------------------------------------------------------- peak FLOP/s (the denominator of MFU)


_peak_flops_cache = {}

# Datasheet dense (no 2:4 sparsity) tensor-core peaks, (bf16, tf32) FLOP/s, matched against
# torch.cuda.get_device_name() in order, first match wins. MFU conventionally divides by the
# datasheet peak (PaLM, nanoGPT), and a table cannot be fooled by a busy GPU at start-up the way a
# measurement can. Only parts whose figures we are sure of are listed; the patterns keep look-alike
# names apart (A10G is not an A10, L40S not an L4, an H100 PCIe or NVL not an SXM); any other
# device is measured. --peak_flops overrides both.
DATASHEET_PEAK_FLOPS = (
    (r"H100 PCIe", 756e12, 378e12),
    (r"H100(?!.*(PCIe|NVL))", 989e12, 494.7e12),  # H100 SXM ("NVIDIA H100 80GB HBM3")
    (r"H200(?!.*NVL)", 989e12, 494.7e12),  # H200 SXM and GH200: the same Hopper tensor cores as H100 SXM
    (r"A100", 312e12, 156e12),  # SXM4 and PCIe, 40 and 80 GB alike
    (r"\bA10\b", 125e12, 62.5e12),
    (r"\bL40S\b", 362e12, 183e12),
    (r"\bL4\b", 121e12, 60e12),
)


def datasheet_peak_flops(device, dtype=torch.float32):
    """The datasheet dense peak of a CUDA device in DATASHEET_PEAK_FLOPS for bf16, or for fp32
    matmuls when they run as TF32 (setup_runtime allows it); None for any other device or dtype."""
    if device.type != "cuda":
        return None
    if dtype == torch.bfloat16:
        column = 1
    elif dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        column = 2
    else:
        return None
    name = torch.cuda.get_device_name(device)
    return next((row[column] for row in DATASHEET_PEAK_FLOPS if re.search(row[0], name)), None)


def measure_peak_flops(device, dtype=torch.float32, n=1024, seconds=2.0, warmup=0.25):
    """The denominator of MFU: the datasheet peak of a known GPU (datasheet_peak_flops), else the
    matmul FLOP/s this device reaches on square n x n matmuls (n = 8192 on a GPU), measured once
    per process.

    A measurement taken while something else runs (another job, a test suite) comes out low, and
    an MFU above 100% follows. On a shared 2-core VM the slow spells last a second or more, so a
    short measurement can miss every quiet moment. Hence: warmup seconds of matmuls first (clocks
    up, thread pool and kernels ready), then each matmul timed on its own for `seconds`, and the
    fastest one kept: a peak only needs one undisturbed matmul (a few ms on a CPU), where a longer
    round needs an undisturbed stretch, and timer overhead is negligible at this size. A machine
    busy throughout still reads low: MetricsLog and bench.py then print "mfu >100%" rather than a
    false figure, and --peak_flops gives the peak by hand."""
    known = datasheet_peak_flops(device, dtype)
    if known:
        return known
    key = (str(device), dtype)
    if key not in _peak_flops_cache:
        if device.type == "cuda":
            n = 8192
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        fastest, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < warmup + seconds or fastest == float("inf"):  # at least one timed
            t0 = time.perf_counter()
            a @ b
            sync(device)
            if t0 - start >= warmup:
                fastest = min(fastest, time.perf_counter() - t0)
        _peak_flops_cache[key] = 2 * n ** 3 / fastest
    return _peak_flops_cache[key]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()

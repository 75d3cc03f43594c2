"""
What every stage script shares: the config CLI, device and torchrun/DDP setup,
checkpoints, the learning-rate schedule, progress lines, metrics and plots, and
the readers for the data contracts (token streams, JSONL files).
"""

import ast
import dataclasses
import difflib
import gzip
import inspect
import json
import math
import os
import random
import re
import sys
import textwrap
import time
import typing
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

ROOT = os.path.dirname(os.path.abspath(__file__))


def repo_path(*parts):
    """A path inside this repository, whatever the working directory."""
    return os.path.join(ROOT, *parts)


# Config fields typed Path are resolved against the repository root (unless absolute), so that
# `python pretrain.py` means the same files from any working directory.
Path = typing.NewType("Path", str)


def resolve_path(path):
    return path if path is None or os.path.isabs(path) else os.path.normpath(os.path.join(ROOT, path))


class UserError(Exception):
    """Bad input from the user (a file, a flag): printed as one clear line, exit status 1."""


def run_main(main):
    """Run a script's main(); a UserError becomes 'error: ...' on stderr and exit 1, not a traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that stopped early (`--help | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        sys.exit(1)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- config and CLI


def field_docs(cls):
    """The trailing '# comment' of each field in a dataclass's source: its help text."""
    docs = {}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return docs
    lines = source.splitlines()
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            if "#" in line[node.end_col_offset:]:
                docs[node.target.id] = line[node.end_col_offset:].split("#", 1)[1].strip()
    return docs


def parse_value(text, type_, key):
    """A CLI string to the field's type: int, float, bool, str, or Optional of those."""
    if typing.get_origin(type_) is typing.Union:  # Optional[X]
        if text.lower() in ("none", "null", ""):
            return None
        type_ = next(t for t in typing.get_args(type_) if t is not type(None))
    if type_ is Path:
        return resolve_path(text)
    try:
        if type_ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if type_ is int:
            return int(float(text)) if "e" in text.lower() and float(text).is_integer() else int(text)
        return type_(text)
    except ValueError:
        raise UserError(f"--{key}={text}: expected {getattr(type_, '__name__', type_)}") from None


def read_preset(path):
    """A preset file: lines 'key = value' (the same syntax as --key=value), '#' comments."""
    if not os.path.exists(path) and os.path.exists(repo_path(path)):
        path = repo_path(path)
    if not os.path.isfile(path):
        raise UserError(f"--config={path}: no such file")
    pairs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if "=" not in line:
                raise UserError(f"{path}:{n}: expected 'key = value', got {line!r}")
            key, value = (s.strip() for s in line.split("=", 1))
            pairs.append((key, value.strip("\"'"), f"{path}:{n}"))
    return pairs


def parse_config(cls, argv=None, description=None):
    """Build a config dataclass from --key=value arguments (and --config=PRESET files).

    Values are typed from the fields; later arguments win over earlier ones and
    over presets; --help lists every field with its default and doc comment."""
    argv = sys.argv[1:] if argv is None else argv
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    if any(a in ("-h", "--help") for a in argv):
        print(config_help(cls, description))
        sys.exit(0)
    pairs = []
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise UserError(f"unexpected argument {arg!r}: arguments look like --key=value (see --help)")
        key, value = arg[2:].split("=", 1)
        if key == "config":
            pairs += read_preset(value)
        else:
            pairs.append((key, value, arg))
    values = {}
    for key, value, where in pairs:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join('--' + c for c in close)}?" if close else "; see --help"
            raise UserError(f"{where}: unknown option --{key}{hint}")
        values[key] = parse_value(value, hints[key], key)
    for name, f in fields.items():  # defaults of Path fields are repository-relative too
        if name not in values and unwrap_optional(hints[name]) is Path:
            values[name] = resolve_path(f.default)
    return cls(**values)


def unwrap_optional(type_):
    if typing.get_origin(type_) is typing.Union:
        return next(t for t in typing.get_args(type_) if t is not type(None))
    return type_


def config_help(cls, description=None):
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    lines = [description.strip(), ""] if description else []
    lines.append("options (--key=value; --config=FILE loads a preset of 'key = value' lines; options typed "
                 "Path are relative to the repository root):")
    for f in dataclasses.fields(cls):
        type_ = hints[f.name]
        if typing.get_origin(type_) is typing.Union:
            type_name = " or ".join("None" if t is type(None) else t.__name__ for t in typing.get_args(type_))
        else:
            type_name = type_.__name__
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  --{f.name}={default}  ({type_name})  {docs.get(f.name, '')}".rstrip())
    return "\n".join(lines)


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
        """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); full fp32 elsewhere."""
        if self.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def print(self, *args, **kwargs):
        if self.is_master:
            print(*args, **kwargs, flush=True)

    def all_reduce_mean(self, value):
        """Mean of a number over all processes (for logging)."""
        if not self.ddp:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world_size


def setup_runtime(device="auto", dtype="auto", seed=None):
    """Pick the device (cuda > mps > cpu) and join torchrun's process group if launched by it
    (nccl on GPU, gloo on CPU). Under plain `python` this is a single process. With a seed,
    torch's RNG is seeded per rank (seed + rank): whatever a script initialises before training
    (a new reward head, say) is then reproducible; DDP copies rank 0's weights to every rank."""
    rank, local_rank, world_size = (int(os.environ.get(k, d)) for k, d in
                                    (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else \
            "mps" if torch.backends.mps.is_available() else "cpu"
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
    bf16 = device.type == "cuda" and dtype != "float32" and torch.cuda.is_bf16_supported()
    if seed is not None:
        torch.manual_seed(seed + rank)
    return Runtime(device, rank, local_rank, world_size, bf16)


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


def length_sorted_micro_batches(examples, micro_batch_size):
    """Cut a batch of (ids, ...) examples into micro-batches of similar lengths: sorted by length
    first, so that padding each micro-batch to its longest example wastes little. (Sorting only
    within the batch keeps batches random; grouping whole batches by length would make them
    single-task here, where length follows the task, and hurt learning.)"""
    ordered = sorted(examples, key=lambda e: len(e[0]), reverse=True)
    return [ordered[i:i + micro_batch_size] for i in range(0, len(ordered), micro_batch_size)]


def rank_slice(items, rt):
    """This process's share of a global batch (DDP): rank r takes the r-th contiguous slice."""
    if len(items) % rt.world_size:
        raise UserError(f"global batch of {len(items)} does not split over {rt.world_size} processes")
    n = len(items) // rt.world_size
    return items[rt.rank * n:(rt.rank + 1) * n]


def grad_accum_steps(batch_size, micro_batch_size, rt):
    """Micro-steps per optimizer step so that the global batch stays batch_size whatever the
    number of processes (a 2-process run then matches a 1-process run step for step)."""
    per_rank, rest = divmod(batch_size, rt.world_size)
    if rest or per_rank % micro_batch_size:
        raise UserError(f"batch_size={batch_size} must be a multiple of micro_batch_size={micro_batch_size} "
                        f"x {rt.world_size} processes")
    return per_rank // micro_batch_size


_peak_flops_cache = {}


def measure_peak_flops(device, dtype=torch.float32, n=1024, seconds=0.5):
    """The device's achievable matmul FLOP/s, measured with square n x n matmuls: the
    denominator of MFU when the hardware's datasheet peak is not known."""
    key = (str(device), dtype)
    if key not in _peak_flops_cache:
        if device.type == "cuda":
            n = 8192
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up
        sync(device)
        rates = []
        for _ in range(5):  # the best of five rounds: a peak, not an average over noisy neighbours
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 5:
                a @ b
                count += 1
                sync(device)
            rates.append(2 * n ** 3 * count / (time.perf_counter() - t0))
        _peak_flops_cache[key] = max(rates)
    return _peak_flops_cache[key]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def wrap_ddp(model, rt):
    """DistributedDataParallel under torchrun: gradients are averaged over processes in backward."""
    if not rt.ddp:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)


def grad_sync(model, last_micro_step):
    """Gradient accumulation under DDP: skip the all-reduce on every micro-step but the last
    (no_sync), so gradients cross the network once per optimizer step."""
    if hasattr(model, "no_sync") and not last_micro_step:
        return model.no_sync()
    return nullcontext()


def optimizer_step(model, optimizer, lr, grad_clip):
    """Clip the global gradient norm (if grad_clip > 0), set the learning rate, step, zero the
    gradients. Returns the gradient norm before clipping."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm.item()


def accumulate_gradients(model, micro_batches, micro_loss, rt):
    """Forward and backward over each micro-batch (gradient accumulation), with the DDP
    all-reduce on the last one only. micro_loss(model, micro_batch) returns (loss to backward,
    {name: value} to log); each loss must already be scaled so that their sum is the step's loss.
    Returns the logged values summed over micro-batches."""
    totals = {}
    for i, micro_batch in enumerate(micro_batches):
        with grad_sync(model, i == len(micro_batches) - 1), rt.autocast():
            loss, stats = micro_loss(model, micro_batch)
        loss.backward()
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return totals


class TrainingRun:
    """The bookkeeping every training script shares: resuming, checkpoints (ckpt.pt = last, for
    resume; best.pt = best eval), metrics.jsonl, and progress lines with throughput and ETA.

    cfg needs out_dir, resume, max_steps, log_interval. With resume, the model and optimizer
    get the state of out_dir/ckpt.pt and training continues after its step."""

    def __init__(self, cfg, rt, stage, model, tokenizer, optimizer, flops_per_token=None, peak_flops=None):
        self.cfg, self.rt, self.stage = cfg, rt, stage
        self.model, self.tokenizer, self.optimizer = model, tokenizer, optimizer
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.start_step, self.best, self.extra = 0, None, {}
        if cfg.resume:
            ckpt = load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), "nothing to resume; run without --resume")
            if ckpt.get("stage") != stage or "optimizer" not in ckpt:
                raise UserError(f"{cfg.out_dir}/ckpt.pt is a {ckpt.get('stage')} checkpoint without resume state; "
                                f"cannot resume {stage} from it")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            self.start_step, self.best = ckpt["step"], ckpt["metrics"].get("best")
            self.extra = {k: v for k, v in ckpt.items() if k.startswith("extra_")}
            rt.print(f"resuming {stage} from step {self.start_step} of {cfg.out_dir}/ckpt.pt")
        self.metrics = MetricsLog(cfg.out_dir, rt.is_master, resume_step=self.start_step if cfg.resume else None)
        self.progress = Progress(cfg.max_steps, self.start_step)
        self.window_time, self.window_steps, self.window_tokens = 0.0, 0, 0

    @property
    def steps(self):
        return range(self.start_step + 1, self.cfg.max_steps + 1)

    def step_done(self, step, tokens=None, **values):
        """Call after each optimizer step with the step's values; logs and prints every log_interval."""
        self.window_time += self.progress.step(step)
        self.window_steps += 1
        self.window_tokens += tokens or 0
        if step % self.cfg.log_interval and step != self.cfg.max_steps:
            return
        # throughput over the steps since the last line (one step alone is noisy)
        dt = self.window_time / self.window_steps
        tokens = self.window_tokens / self.window_steps if tokens is not None else None
        self.window_time, self.window_steps, self.window_tokens = 0.0, 0, 0
        from model import estimate_mfu
        row = dict(values)
        names = [k.split("/")[-1] for k in values]  # short names, unless two metrics would share one
        shown = [f"{name if names.count(name) == 1 else k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                 for name, (k, v) in zip(names, values.items()) if k not in ("lr", "grad_norm", "tokens_seen")]
        if "lr" in values:
            shown.append(f"lr {values['lr']:.2e}")
        if tokens is not None:
            row["tokens_per_s"] = tokens / dt
            shown.append(f"{tokens / dt:,.0f} tok/s")
            if self.flops_per_token and self.peak_flops:
                row["mfu"] = estimate_mfu(self.flops_per_token, tokens / dt, self.peak_flops)
                shown.append(f"mfu {row['mfu']:.1%}")
        else:
            shown.append(f"{1 / dt:.2f} steps/s")
        self.metrics.log(step=step, **row)
        self.rt.print(f"step {step}/{self.cfg.max_steps} | " + " | ".join(shown) + f" | eta {self.progress.eta(step)}")

    def evaluated(self, step, metrics, best_key=None, higher_is_better=False, **extra):
        """Log eval metrics and save ckpt.pt (and best.pt when metrics[best_key] is the best so far)."""
        self.metrics.log(step=step, **metrics)
        if not self.rt.is_master:
            return
        value = metrics.get(best_key)
        improved = value is not None and (self.best is None or
                                           (value > self.best if higher_is_better else value < self.best))
        if improved:
            self.best = value
        state = checkpoint_state(self.model, self.tokenizer, self.stage, step, self.cfg,
                                 {**metrics, "best": self.best}, self.optimizer, **extra)
        save_checkpoint(os.path.join(self.cfg.out_dir, "ckpt.pt"), state)
        if improved:
            save_checkpoint(os.path.join(self.cfg.out_dir, "best.pt"), state)

    def finished(self, summary):
        """Print the closing line and log the run's wall time and training speed (the mean over
        steps after the first, which carries start-up and the step-0 evaluation) for the pipeline
        report and bench.py."""
        elapsed, per_step = self.progress.elapsed(), self.progress.seconds_per_step()
        self.metrics.log(step=self.cfg.max_steps, **{"time/elapsed_s": elapsed,
                                                     "time/steps_per_s": 1 / per_step if per_step > 0 else None})
        self.rt.print(f"done in {elapsed / 60:.1f} min: {summary}")


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = 1


def save_checkpoint(path, state):
    """Write atomically: to a temp file in the same folder, then rename over the old one, so a
    crash mid-write leaves the previous checkpoint intact (rename is atomic on POSIX)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def checkpoint_path(init_from):
    """'out/sft' -> 'out/sft/ckpt.pt'; a path to a .pt file stays as it is."""
    return os.path.join(init_from, "ckpt.pt") if os.path.isdir(init_from) or not init_from.endswith(".pt") \
        else init_from


def load_checkpoint(path, hint=""):
    """Load a checkpoint with torch.load(weights_only=True): tensors and plain data only, never
    code (a pickle that would run code on load is refused)."""
    path = checkpoint_path(path)
    if not os.path.exists(path):
        raise UserError(f"no checkpoint at {path}" + (f"; {hint}" if hint else ""))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "Unpickler" in type(e).__name__:
            raise UserError(f"{path} holds objects other than tensors and plain data; refusing to load it "
                            f"(torch.load weights_only=True)") from None
        raise UserError(f"{path} is truncated or corrupt ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or not {"model", "model_config", "tokenizer"} <= ckpt.keys():
        raise UserError(f"{path} is not a checkpoint of this project (expected keys model, model_config, "
                        f"tokenizer)")
    return ckpt


# ----------------------------------------------------------------------------- LR schedule


def lr_at(step, max_lr, warmup_steps, total_steps, min_lr):
    """Linear warmup from 0 to max_lr, then cosine decay to min_lr at total_steps (GPT-3, Chinchilla)."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


# ----------------------------------------------------------------------------- progress, metrics, plots


class Progress:
    """Throughput, MFU and ETA for progress lines; the first steps are excluded from the rate
    (warm-up, torch.compile)."""

    def __init__(self, total_steps, start_step=0, skip=1):
        self.total, self.start, self.skip = total_steps, start_step, skip
        self.t0 = self.last = time.perf_counter()
        self.steps_timed, self.time_timed = 0, 0.0

    def step(self, step):
        """Call after each step; returns seconds the step took."""
        now = time.perf_counter()
        dt, self.last = now - self.last, now
        if step - self.start >= self.skip:
            self.steps_timed += 1
            self.time_timed += dt
        return dt

    def seconds_per_step(self):
        return self.time_timed / self.steps_timed if self.steps_timed else float("nan")

    def eta(self, step):
        remaining = (self.total - step) * self.seconds_per_step()
        return format_seconds(remaining)

    def elapsed(self):
        return time.perf_counter() - self.t0


def format_seconds(s):
    if s != s:  # nan
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def read_metrics(run_dir):
    """The rows of run_dir/metrics.jsonl ([] when the run has none)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """Appends one JSON object per line to out_dir/metrics.jsonl and draws curves from it."""

    def __init__(self, out_dir, enabled=True, resume_step=None):
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.out_dir, self.enabled = out_dir, enabled
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        if resume_step is None:
            open(self.path, "w").close()
        elif os.path.exists(self.path):
            # a killed run may have logged past its last checkpoint: drop those rows, they happen again
            rows = [r for r in self.rows() if r.get("step", 0) <= resume_step]
            with open(self.path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)

    def log(self, **row):
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")

    def rows(self):
        return read_metrics(self.out_dir)

    def plot(self, filename, panels, x="step", title=None):
        """Draw each panel {title: [metric names]} (or {title: (x, [names])}) as curves; one PNG in out_dir."""
        if not self.enabled:
            return None
        return plot_series(os.path.join(self.out_dir, filename), self.rows(), panels, x, title)


def plot_series(path, rows, panels, x="step", title=None):
    import matplotlib
    matplotlib.use("Agg")  # headless: no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (panel, names) in zip(axes[0], panels.items()):
        x_name = x
        if isinstance(names, tuple):  # (x, [names]): this panel has its own x axis
            x_name, names = names
        for name in names:
            points = [(r[x_name], r[name]) for r in rows if name in r and x_name in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=name, marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_title(panel)
        ax.set_xlabel(x_name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- data files


def read_jsonl(path):
    """(line number, object) for each non-empty line; invalid JSON is a UserError naming the line."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not rows:
        raise UserError(f"{path}: the file has no rows")
    return rows


def write_jsonl(path, rows):
    """Write rows atomically (temp file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def token_dtype(n_vocab):
    return np.uint16 if n_vocab <= 2 ** 16 else np.uint32


class TokenWriter:
    """Writes a token stream (.bin of uint16/uint32) chunk by chunk; the file appears under its
    final name only when close() succeeds."""

    def __init__(self, path, n_vocab):
        self.path, self.dtype, self.count = path, token_dtype(n_vocab), 0
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path + ".tmp", "wb")

    def write(self, ids):
        arr = np.asarray(ids, dtype=self.dtype)
        self.file.write(arr.tobytes())
        self.count += arr.size

    def close(self):
        self.file.close()
        os.replace(self.path + ".tmp", self.path)
        return self.count

    def abort(self):
        self.file.close()
        os.remove(self.path + ".tmp")


def write_token_streams(out_dir, tokenizer, splits, extra_meta=None):
    """Write {split: ids} as out_dir/<split>.bin and out_dir/meta.json (the token-stream contract)."""
    counts = {}
    for split, ids in splits.items():
        writer = TokenWriter(os.path.join(out_dir, f"{split}.bin"), tokenizer.n_vocab)
        writer.write(ids)
        counts[split] = writer.close()
    write_meta(out_dir, tokenizer, counts, extra_meta)


def print_token_streams(out_dir, counts):
    """Where each split went: path, token count, size."""
    for split, count in counts.items():
        path = os.path.join(out_dir, f"{split}.bin")
        print(f"  {path}: {count:,} tokens ({os.path.getsize(path) / 1e6:,.1f} MB)")
    print(f"  {os.path.join(out_dir, 'meta.json')}")


def write_meta(out_dir, tokenizer, counts, extra_meta=None):
    meta = {"tokenizer": tokenizer.spec, "vocab_size": tokenizer.n_vocab,
            "dtype": np.dtype(token_dtype(tokenizer.n_vocab)).name,
            **{f"{split}_tokens": int(n) for split, n in counts.items()}, **(extra_meta or {})}
    tmp = os.path.join(out_dir, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f)
    os.replace(tmp, os.path.join(out_dir, "meta.json"))


def read_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; run the dataset's prepare.py first")
    try:
        with open(path) as f:
            meta = json.load(f)
        assert isinstance(meta, dict) and isinstance(meta["tokenizer"], dict) and meta["dtype"] in ("uint16", "uint32")
    except (json.JSONDecodeError, AssertionError, KeyError, TypeError):
        raise UserError(f"{path}: malformed; expected JSON with 'tokenizer' (a spec), 'dtype' (uint16 or uint32) "
                        f"and token counts. Re-run the dataset's prepare.py") from None
    return meta


def open_token_stream(data_dir, split, meta):
    """np.memmap over data_dir/<split>.bin, checked against the counts in meta.json."""
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; run the dataset's prepare.py first")
    itemsize = np.dtype(meta["dtype"]).itemsize
    size = os.path.getsize(path)
    expected = meta.get(f"{split}_tokens")
    if size == 0:
        raise UserError(f"{path}: empty file")
    if size % itemsize or (expected is not None and size != expected * itemsize):
        raise UserError(f"{path}: {size} bytes, but meta.json says {expected} {meta['dtype']} tokens "
                        f"({expected * itemsize if expected is not None else '?'} bytes): truncated or from another "
                        f"run; re-run the dataset's prepare.py")
    return np.memmap(path, dtype=meta["dtype"], mode="r")


# ----------------------------------------------------------------------------- models in and out

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def is_hf_source(init_from):
    return init_from in GPT2_NAMES or os.path.isfile(os.path.join(init_from, "config.json"))


def load_model(init_from, device="cpu", dropout=None, scalar_head=None, hint=""):
    """A model and its tokenizer from a checkpoint (out/<run> or a .pt file) or from GPT-2
    weights in Hugging Face format. Returns (model, tokenizer, checkpoint dict or None).

    scalar_head=True adds a freshly initialised scalar head when the source has none (a reward
    model starting from an SFT model); dropout overrides the stored rate."""
    from model import GPT, config_from_dict, resize_vocab
    from tokenizer import Tokenizer, padded_vocab_size

    if init_from not in GPT2_NAMES:
        init_from = resolve_path(init_from)
    if is_hf_source(init_from):
        tokenizer = Tokenizer({"kind": "gpt2"})
        model = GPT.from_pretrained(init_from, dropout=dropout or 0.0)
        # room for the chat special tokens after GPT-2's 50,257 (new rows: the mean embedding)
        resize_vocab(model, padded_vocab_size(tokenizer.n_vocab))
        ckpt = None
    else:
        ckpt = load_checkpoint(init_from, hint)
        tokenizer = Tokenizer(ckpt["tokenizer"])
        config = config_from_dict(ckpt["model_config"])
        model = GPT(config)
        model.load_state_dict(ckpt["model"])
    if dropout is not None:
        set_dropout(model, dropout)
    if scalar_head and model.scalar_head is None:
        model.add_scalar_head()
    return model.to(device), tokenizer, ckpt


def set_dropout(model, p):
    model.config.dropout = p
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = p


def checkpoint_state(model, tokenizer, stage, step, config, metrics=None, optimizer=None, **extra):
    """The checkpoint contract: weights, model config, tokenizer spec, run config, stage, step,
    last metrics, and (for resume) the optimizer state. Plain data only, for weights_only loading."""
    state = {
        "stage": stage, "step": step, "model": model.state_dict(),
        "model_config": dataclasses.asdict(model.config), "tokenizer": tokenizer.spec,
        "config": dataclasses.asdict(config), "metrics": metrics or {},
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    state.update(extra)
    return state


def check_same_tokenizer(spec_a, spec_b, what_a, what_b):
    if spec_a != spec_b:
        def describe(s):
            return s.get("kind") + (f" ({len(s['merges']) + 256} tokens)" if "merges" in s else "")
        raise UserError(f"vocabulary mismatch: {what_a} uses the {describe(spec_a)} tokenizer but {what_b} uses "
                        f"{describe(spec_b)}; prepare the data with the model's tokenizer")


# ----------------------------------------------------------------------------- dataset converters


def download_file(url, path, chunk_size=1 << 20, hint="download it by hand and pass its path with --input=PATH"):
    """Download url to path with a progress line; the file appears only once complete."""
    import urllib.request
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(chunk_size):
                f.write(chunk)
                done += len(chunk)
                print(f"\r  {os.path.basename(path)}: {done / 1e6:.1f}"
                      + (f" / {total / 1e6:.1f} MB" if total else " MB"), end="", flush=True)
        print()
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"could not download {url} ({e}); {hint}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


class ConversionReport:
    """Counts the rows a converter keeps and skips; remembers the first few problems with their
    line numbers, so a user sees what was wrong without scrolling through thousands of lines."""

    def __init__(self, source, show=5):
        self.source, self.show = source, show
        self.kept, self.skipped, self.problems = 0, Counter(), []

    def skip(self, line, reason):
        self.skipped[reason.split(":")[0]] += 1
        if len(self.problems) < self.show:
            self.problems.append(f"{self.source}:{line}: {reason}")

    def keep(self):
        self.kept += 1

    def summary(self):
        lines = [f"{self.source}: kept {self.kept} rows, skipped {sum(self.skipped.values())}"]
        lines += [f"  {n} x {reason}" for reason, n in self.skipped.most_common()]
        if self.problems:
            lines.append("  first problems:")
            lines += [f"    {p}" for p in self.problems]
        return "\n".join(lines)

    def check(self):
        """Raise if nothing valid was found (an empty output is never a success)."""
        if self.kept == 0:
            raise UserError(f"{self.source}: no valid row\n{self.summary()}")


# Chat and preference converters (data/alpaca, data/sharegpt, data/hh_rlhf): reading JSON/JSONL files
# with row positions, converting rows into a report, the train/val split and writing the two files.


def fetch(url, path):
    """path, downloading url there first if it is missing."""
    return path if os.path.exists(path) else download_file(url, path)


def read_text(path):
    """The whole text of a file, gunzipped when its name ends in .gz."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        # utf-8-sig: a byte-order mark (editors on Windows add one) would hide the leading '['
        with opener(path, "rt", encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated or corrupt .gz, not UTF-8
        raise UserError(f"{path}: cannot read it ({e})") from None


_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's white space


def read_rows(path, report):
    """(where, row) for each row of a JSON list or a JSONL file: where is the line the row starts
    on, followed by its 1-based index in a JSON list (ConversionReport prints it after the path).

    A JSONL line that is not valid JSON is skipped into the report: the other lines are still good.
    A JSON list that is not valid JSON is an error, as nothing after the bad spot can be trusted."""
    text = read_text(path)
    if text.startswith("[", _SPACE.match(text).end()):
        return json_list_rows(path, text)
    rows = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters that
    # splitlines() treats as line ends
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            report.skip(n, f"invalid JSON: {e.msg} at column {e.colno}")
    return rows


def json_list_rows(path, text):
    """The items of a JSON list with the line each starts on. json.loads would give the items but
    not where they are, so this walks the list itself and lets raw_decode parse one item at a time."""
    decoder, rows = json.JSONDecoder(), []
    line, counted = 1, 0  # line number of text[counted]
    pos = _SPACE.match(text).end() + 1  # past the '['
    try:
        while True:
            pos = _SPACE.match(text, pos).end()
            if text.startswith("]", pos) and not rows:
                break  # an empty list
            row, end = decoder.raw_decode(text, pos)
            line, counted = line + text.count("\n", counted, pos), pos
            rows.append((f"{line} (row {len(rows) + 1})", row))
            pos = _SPACE.match(text, end).end()
            if not text.startswith(",", pos):
                break
            pos += 1
        if not text.startswith("]", pos):
            raise json.JSONDecodeError("expected ',' or ']' after a list item", text, pos)
        if text[pos + 1:].strip():
            raise json.JSONDecodeError("extra data after the list", text, pos + 1)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    return rows


def convert_file(path, convert):
    """convert(row) for each row of the file; a row where it raises ValueError("reason: detail") is
    skipped and counted under that reason. Returns (converted rows, report); raises if none is valid."""
    report = ConversionReport(path)
    converted = []
    for where, row in read_rows(path, report):
        try:
            converted.append(convert(row))
        except ValueError as e:
            report.skip(where, str(e))
        else:
            report.keep()
    report.check()
    return converted, report


def split_rows(rows, val_fraction, val_size, seed):
    """Split rows into (train, val) by the rule in the module docstring."""
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val_fraction={val_fraction}: expected a number from 0 to 1 (exclusive)")
    if val_size is not None and val_size < 0:
        raise UserError(f"--val_size={val_size}: expected 0 or more")
    n_val = max(1, round(val_fraction * len(rows))) if val_size is None else val_size
    n_val = min(n_val, len(rows) - 1)  # training needs rows more than validation does
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return ([r for i, r in enumerate(rows) if i not in val],
            [r for i, r in enumerate(rows) if i in val])


def save_splits(out_dir, train, val):
    """Write out_dir/train.jsonl and val.jsonl (each atomically) and say where they went."""
    for name, rows in (("train", train), ("val", val)):
        path = os.path.join(out_dir, f"{name}.jsonl")
        write_jsonl(path, rows)
        print(f"wrote {len(rows):,} rows to {path}")


def world_folder(data_path):
    """The folder of a data file if it is the built-in world's (it holds eval.jsonl, the held-out
    suites that the stages report on), else None. The default world is generated if missing."""
    folder = os.path.dirname(data_path)
    if folder == repo_path("data", "world"):
        from data.world.prepare import ensure_world
        ensure_world(folder)
    return folder if os.path.isfile(os.path.join(folder, "eval.jsonl")) else None


# ----------------------------------------------------------------------------- conversations and losses


def load_conversations(path, tokenizer, block_size):
    """Conversations JSONL -> [(ids, loss_mask)], each fitting block_size + 1 tokens (inputs and
    shifted targets). Rule for long examples: dropped, not truncated (a truncated chat would teach
    a reply that stops mid-sentence); they are counted and reported. Returns (examples, n_dropped)."""
    examples, dropped = [], 0
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
        if not isinstance(row, dict) or "messages" not in row:
            raise UserError(f'{where}: expected {{"messages": [...]}}')
        try:
            ids, mask = tokenizer.render_chat(row["messages"])
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if not any(mask):
            raise UserError(f"{where}: no assistant message, so nothing to learn (every token is masked)")
        if len(ids) > block_size + 1:
            dropped += 1
            continue
        examples.append((ids, mask))
    if not examples:
        raise UserError(f"{path}: every conversation is longer than block_size={block_size}")
    return examples, dropped


def pad_batch(examples, pad_id, device):
    """[(ids, mask)] -> inputs x (B, T) and targets y (B, T), right-padded to the longest example;
    y is the next token where the mask is 1 and -1 (ignored) elsewhere, padding included."""
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), -1, dtype=torch.long)
    for i, (ids, mask) in enumerate(examples):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        target = torch.tensor(ids[1:])
        y[i, :n] = torch.where(torch.tensor(mask[1:], dtype=torch.bool), target, -1)
    return x.to(device), y.to(device)


def summed_loss(logits, targets):
    """Sum (not mean) of the cross-entropy over targets != -1, so that the caller can divide by
    the token count of the whole global batch; an all-masked batch gives 0, never NaN."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                             ignore_index=-1, reduction="sum")


@torch.no_grad()
def conversations_loss(model, examples, tokenizer, rt, batch_size=32):
    """Mean cross-entropy per assistant token over examples (the SFT val loss)."""
    total, count = 0.0, 0
    model.eval()
    for i in range(0, len(examples), batch_size):
        x, y = pad_batch(examples[i:i + batch_size], tokenizer.eot, rt.device)
        with rt.autocast():
            logits, _ = model(x)
        total += summed_loss(logits, y).item()
        count += int((y != -1).sum())
    return total / max(count, 1)


def window_starts(seed, step, n_tokens, block_size, batch_size):
    """Start offsets of the windows of a token-stream batch: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - block_size - 1, size=batch_size)


def get_batch(stream, starts, block_size, device):
    """Inputs x and next-token targets y, both (B, block_size), from windows of the memmapped stream."""
    windows = np.stack([stream[s:s + block_size + 1].astype(np.int64) for s in starts])
    xy = torch.from_numpy(windows)
    if device.type == "cuda":
        xy = xy.pin_memory().to(device, non_blocking=True)  # overlap the copy with compute
    else:
        xy = xy.to(device)
    return xy[:, :-1], xy[:, 1:]


@torch.no_grad()
def stream_loss(model, stream, block_size, micro_batch_size, n_batches, rt, seed=0):
    """Mean loss over fixed windows of a token stream: the same micro_batch_size * n_batches windows
    at every call and for any number of processes (each takes its slice), so numbers compare."""
    was_training = model.training
    model.eval()
    starts = rank_slice(window_starts(seed, 0, len(stream), block_size, micro_batch_size * n_batches), rt)
    total = 0.0
    for i in range(0, len(starts), micro_batch_size):
        x, y = get_batch(stream, starts[i:i + micro_batch_size], block_size, rt.device)
        with rt.autocast():
            total += model(x, y)[1].item() * len(x)
    model.train(was_training)
    return rt.all_reduce_mean(total / len(starts))


# ----------------------------------------------------------------------------- preference pairs


def as_messages(value, role):
    """Plain-text preference rows hold strings; conversational ones hold message lists."""
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def render_pair(tokenizer, prompt, reply, block_size):
    """Token ids of prompt + reply, ending with the reply's end-of-turn token, and a mask that
    is 1 on the reply's assistant tokens only (not on assistant turns inside the prompt).
    Truncation: a sequence longer than block_size loses its start (the start of the prompt), so
    the end of the reply, where the reward model reads its score, is always kept."""
    ids, mask = tokenizer.render_chat(prompt + reply)
    prompt_len = len(tokenizer.render_chat(prompt)[0]) if prompt else 0
    mask = [0] * prompt_len + mask[prompt_len:]
    ids, mask = ids[:-len(tokenizer.newline)], mask[:-len(tokenizer.newline)]  # end at <|im_end|>
    return ids[-block_size:], mask[-block_size:]


def load_preferences(path, tokenizer, block_size):
    """Preference JSONL (TRL's conversational or plain-text form) -> list of dicts with the
    chosen and rejected sequences (ids, reply mask) and the row's info (if any)."""
    pairs, truncated = [], 0
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
        if not isinstance(row, dict) or not {"chosen", "rejected"} <= row.keys():
            raise UserError(f'{where}: expected {{"prompt", "chosen", "rejected"}}')
        prompt = as_messages(row.get("prompt") or [], "user")
        chosen, rejected = as_messages(row["chosen"], "assistant"), as_messages(row["rejected"], "assistant")
        if chosen == rejected:
            raise UserError(f"{where}: chosen and rejected are the same; nothing to prefer")
        try:
            c_ids, c_mask = render_pair(tokenizer, prompt, chosen, block_size)
            r_ids, r_mask = render_pair(tokenizer, prompt, rejected, block_size)
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if not any(c_mask) or not any(r_mask):
            raise UserError(f"{where}: chosen and rejected must each hold an assistant message")
        full = len(tokenizer.render_chat(prompt + chosen)[0]), len(tokenizer.render_chat(prompt + rejected)[0])
        truncated += max(full) - len(tokenizer.newline) > block_size
        pairs.append({"chosen": (c_ids, c_mask), "rejected": (r_ids, r_mask), "info": row.get("info", {}),
                      "prompt": prompt})
    return pairs, truncated


def pad_right(sequences, pad_id, device):
    """Token-id lists -> ids (B, T) right-padded, and the lengths (B,)."""
    T = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s)
    return ids.to(device), torch.tensor([len(s) for s in sequences], device=device)


@torch.no_grad()
def score_replies(reward_model, tokenizer, prompts, replies, rt, batch_size=32):
    """Reward-model scores of (prompt, reply) pairs (message lists or strings), read at the
    reply's end-of-turn token, as in training."""
    reward_model.eval()
    scores = []
    for i in range(0, len(prompts), batch_size):
        seqs = [render_pair(tokenizer, as_messages(p, "user"), as_messages(r, "assistant"),
                            reward_model.config.block_size)[0]
                for p, r in zip(prompts[i:i + batch_size], replies[i:i + batch_size])]
        ids, lengths = pad_right(seqs, tokenizer.eot, rt.device)
        with rt.autocast():
            scores += reward_model.score(ids, at=lengths - 1).tolist()
    return scores

"""
What a run reports: one JSON object a line in out_dir/metrics.jsonl, a progress line every few
steps (step, values, tokens/s, MFU, ETA), and PNG curves drawn from metrics.jsonl with matplotlib.
"""

import json
import math
import os
import time

from matplotlib.figure import Figure  # drawn straight to a file: no pyplot, no display, no backend to choose

from cli import UserError
from data_formats import read_jsonl
from model import estimate_mfu


def read_metrics(run_dir):
    """The rows of run_dir/metrics.jsonl ([] when the run has none); a line that is not JSON (a
    file edited by hand, or cut by a full disk) is an error naming it."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    return [row for _, row in read_jsonl(path, allow_empty=True)]


def format_seconds(s):
    if s != s:  # nan
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def shown(values, digits=3, short_names=True):
    """'name value' for a progress line: metric names without their first prefix (train/loss ->
    loss, train/rewards/chosen -> rewards/chosen), unless two would then read the same."""
    values = {k: v for k, v in values.items() if k not in ("lr", "grad_norm", "tokens_seen")}  # shown apart, or not
    short = [k.split("/", 1)[-1] if short_names else k for k in values]
    return [f"{name if short.count(name) == 1 else k} {v:.{digits}f}" if isinstance(v, float) else f"{k} {v}"
            for name, (k, v) in zip(short, values.items())]


class MetricsLog:
    """metrics.jsonl of one run, with the progress lines of its training loop.

    step() is called after every optimizer step by every process; each log_interval steps it
    averages the values over processes, appends them to metrics.jsonl and prints one line with the
    throughput since the previous line and the ETA. write() appends other rows (evaluations).
    Only the master process (rank 0) writes and prints. On resume, rows a killed run logged past
    its last checkpoint are dropped: those steps happen again."""

    def __init__(self, out_dir, rt, max_steps, log_interval, start_step=0, resume=False, flops_per_token=None,
                 peak_flops=None):
        self.out_dir, self.rt, self.max_steps, self.log_interval = out_dir, rt, max_steps, log_interval
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.start_step, self.flops_per_token, self.peak_flops = start_step, flops_per_token, peak_flops
        self.t0 = self.last = time.perf_counter()
        self.timed_steps, self.timed_seconds = 0, 0.0  # for the ETA: every step after the first
        self.window = [0, 0.0, 0]  # steps, seconds and tokens since the last progress line
        if not rt.is_master:
            return
        os.makedirs(out_dir, exist_ok=True)
        rows = [r for r in read_metrics(out_dir) if r.get("step", 0) <= start_step] if resume else []
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def write(self, step, **values):
        """Append a row. metrics.jsonl stays strict JSON: a value that is not a finite number (a
        correlation of constant scores, say) is written as null."""
        if self.rt.is_master:
            row = {"step": step, **{k: None if isinstance(v, float) and not math.isfinite(v) else v
                                    for k, v in values.items() if v is not None}}
            with open(self.path, "a") as f:
                f.write(json.dumps(row, allow_nan=False) + "\n")

    def check_finite(self, step, values, names):
        """Stop the run when a loss (or a gradient norm) is not a finite number: the weights are
        broken from here on, and the next checkpoint would be written over a good one."""
        for name in names:
            value = values[name]
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"step {step}: {name} is {value}: training diverged, so the run stops before "
                                f"writing a checkpoint; {self.out_dir}/ckpt.pt keeps the last good one (try a lower "
                                f"--learning_rate)")

    def report(self, step, **values):
        """An evaluation: the row in metrics.jsonl and one line 'step N: val/loss 1.234 | ...'. A
        loss that is not finite stops the run (check_finite), before the caller saves a checkpoint."""
        self.check_finite(step, values, [k for k in values if "loss" in k])
        self.write(step, **values)
        if values:
            self.rt.print(f"step {step}: " + " | ".join(shown(values, short_names=False)))

    def step(self, step, tokens=None, **values):
        """After each optimizer step: tokens processed by all processes in it (for tokens/s and
        MFU) and the values to log (averaged over processes)."""
        self.check_finite(step, values, list(values))
        now = time.perf_counter()
        dt, self.last = now - self.last, now
        if step - self.start_step > 1:  # the first step carries start-up (and torch.compile)
            self.timed_steps, self.timed_seconds = self.timed_steps + 1, self.timed_seconds + dt
        self.window = [self.window[0] + 1, self.window[1] + dt, self.window[2] + (tokens or 0)]
        if step % self.log_interval and step != self.max_steps:
            return
        steps, seconds, window_tokens = self.window
        self.window = [0, 0.0, 0]
        row = {**values, **self.rt.all_reduce_means({k: v for k, v in values.items() if isinstance(v, float)})}
        parts = shown(row, digits=4)
        if "lr" in row:
            parts.append(f"lr {row['lr']:.2e}")
        if tokens is not None:
            row["tokens_per_s"] = window_tokens / seconds
            parts.append(f"{row['tokens_per_s']:,.0f} tok/s")
            if self.flops_per_token and self.peak_flops:
                row["mfu"] = estimate_mfu(self.flops_per_token, row["tokens_per_s"], self.peak_flops)
                # metrics.jsonl keeps the raw ratio (the data, for whoever reads it); the line never shows
                # a utilisation above 100%, which can only mean the peak is too low (measured while the
                # machine was busy, or a wrong --peak_flops): it says so instead of printing a false figure
                over = "mfu >100% (peak too low; pass --peak_flops)"
                parts.append(f"mfu {row['mfu']:.1%}" if row["mfu"] <= 1 else over)
        else:
            parts.append(f"{steps / seconds:.2f} steps/s")
        self.write(step, **row)
        eta = format_seconds((self.max_steps - step) * self.seconds_per_step())
        self.rt.print(f"step {step}/{self.max_steps} | " + " | ".join(parts) + f" | eta {eta}")

    def seconds_per_step(self):
        return self.timed_seconds / self.timed_steps if self.timed_steps else float("nan")

    def finished(self, summary):
        """The closing line, and the run's wall time and training speed (the mean over steps after
        the first) logged for the pipeline report and bench.py."""
        elapsed, per_step = time.perf_counter() - self.t0, self.seconds_per_step()
        self.write(self.max_steps, **{"time/elapsed_s": elapsed,
                                      "time/steps_per_s": 1 / per_step if per_step > 0 else None})
        self.rt.print(f"done in {elapsed / 60:.1f} min: {summary}")

    def plot(self, filename, panels, title=None):
        """Draw each panel {title: [metric names]} (or {title: (x, [names])}) as curves against the
        step, into out_dir/filename."""
        if self.rt.is_master:
            plot_series(os.path.join(self.out_dir, filename), read_metrics(self.out_dir), panels, title=title)


def plot_series(path, rows, panels, x="step", title=None):
    """One PNG with a panel per entry of panels, curves from rows (dicts); written atomically."""
    fig = Figure(figsize=(5 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
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
    os.replace(tmp, path)
    return path

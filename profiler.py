"""
Where a script's wall time goes: run any script of this repository under a sampling profiler and
print the time of each phase (forward, backward, optimizer, evaluation and its sampling, data,
checkpoint writes, ...) as a table.

    python profiler.py sft.py --max_steps=200 --out_dir=out/sft_profile   # any script, its own flags
    python profiler.py --json=out/sft_profile.json sft.py ...              # the table as JSON too
    python pipeline.py --profile=true                                      # every stage; tables in the report

How: the script runs as __main__ in this process (runpy), and a thread reads the main thread's
Python stack every --interval seconds (20 ms; sys._current_frames). A sample counts for the first phase
in PHASES with a function on the sample's stack, so a sample inside a forward pass that an
evaluation makes counts for the evaluation, not for training. The profiler sees Python frames only:
"forward" is the time inside the model's forward calls, kernels and the Python between them;
"the loop's own Python" is what the training loop does outside any of the phases (bookkeeping,
logging, .item() syncs). Sampling costs little (a stack walk every few ms), but the shares are
estimates: a phase shorter than a few samples is noise.
"""

import json
import os
import runpy
import sys
import threading
import time
from collections import Counter

# phase -> the functions whose presence on the stack puts a sample there, in order of precedence
# ("name" anywhere, or "file:name" for a name that is common, like step)
PHASES = [
    ("checkpoint writes", ["save_checkpoint"]),
    ("plots", ["plot_series", "draw_frontier"]),
    ("evaluation: sampling", [("evaluate_and_save", "gold_correlation", "print_samples", "evaluate_checkpoint",
                               "evaluate_samples"), ("respond", "generate")]),
    ("evaluation: val losses, scoring", ["evaluate_and_save", "gold_correlation", "print_samples",
                                         "evaluate_checkpoint", "evaluate_pairs", "evaluate_loss", "val_losses"]),
    ("rollouts: sampling", ["sample_rollouts"]),
    ("rollouts: scores, old and reference log-probs, advantages",
     ["training_scores", "rollout_gold", "rollout_outputs", "reference_logprobs", "per_token_rewards", "gae",
      "whiten", "reply_advantages"]),
    ("data: generate the world", ["prepare"]),
    ("peak FLOP/s measurement (MFU's denominator)", ["measure_peak_flops"]),
    ("data: read, parse, tokenize", ["load_data", "load_conversations", "load_preferences", "load_prompts",
                                     "load_nll_examples", "load_streams", "load_suites", "ensure_world",
                                     "drop_long_prompts", "read_jsonl", "open_token_stream"]),
    ("model loading", ["load_model", "load_checkpoint", "build_model", "load_policy_models", "load_value_model"]),
    ("backward", ["_tensor.py:backward", "autograd/__init__.py:backward"]),
    ("optimizer", ["optimizer.py:wrapper", "adamw.py:step", "optimizer.py:zero_grad", "adam.py:step"]),
    ("gradient clipping", ["clip_grad_norm_"]),
    ("collation and padding", ["pad_batch", "pad_right", "get_batch", "rollout_tensors", "window_starts",
                               "batch_indices"]),
    ("forward", ["module.py:_call_impl"]),
]
LOOP_PYTHON = "the loop's own Python (bookkeeping, logging)"
START_UP = "start-up (imports, flags, setup)"


def frame_names(frame):
    """The stack of a frame, outermost first, as 'file:function' strings (file: the last two parts)."""
    names = []
    while frame is not None:
        code = frame.f_code
        parts = code.co_filename.replace("\\", "/").split("/")
        names.append(f"{'/'.join(parts[-2:])}:{code.co_name}")
        frame = frame.f_back
    return names[::-1]


def matches(stack, pattern):
    """pattern: 'name' (a function of that name anywhere) or 'file:name' (file ends the path)."""
    if ":" in pattern:
        return any(entry.endswith(pattern) or entry.endswith("/" + pattern) for entry in stack)
    return any(entry.rsplit(":", 1)[1] == pattern for entry in stack)


def phase_of(stack, script):
    """The phase a sampled stack counts for (PHASES' order decides where a stack matches several);
    outside them, the script's own main is its loop, and anything before it start-up."""
    for phase, rule in PHASES:
        if isinstance(rule[0], tuple):  # all of several groups: (any of these) and (any of those)
            if all(any(matches(stack, p) for p in group) for group in rule):
                return phase
        elif any(matches(stack, p) for p in rule):
            return phase
    in_main = any(entry.split("/")[-1] in (f"{script}:main", f"{script}:train", f"{script}:sweep") for entry in stack)
    return LOOP_PYTHON if in_main else START_UP


class Sampler(threading.Thread):
    """Samples the main thread's stack every interval seconds into Counter phase -> samples."""

    def __init__(self, interval, script):
        super().__init__(daemon=True)
        self.interval, self.script, self.counts, self.running = interval, script, Counter(), True
        self.main_id = threading.main_thread().ident

    def run(self):
        while self.running:
            frame = sys._current_frames().get(self.main_id)
            if frame is not None:
                self.counts[phase_of(frame_names(frame), self.script)] += 1
            time.sleep(self.interval)


def table(counts, seconds):
    """The breakdown as markdown: phase, seconds (its share of the samples times the wall time), share."""
    total = sum(counts.values()) or 1
    lines = ["| phase | seconds | share |", "|---|---:|---:|"]
    for phase, n in counts.most_common():
        lines.append(f"| {phase} | {seconds * n / total:.1f} | {n / total:.0%} |")
    lines.append(f"| **wall time** | **{seconds:.1f}** | {total} samples |")
    return "\n".join(lines)


def main():
    args = sys.argv[1:]
    json_path, interval = None, 0.02
    while args and args[0].startswith("--"):  # the profiler's own options come before the script
        key, _, value = args.pop(0)[2:].partition("=")
        if key == "json":
            json_path = value
        elif key == "interval":
            interval = float(value)
        else:
            sys.exit(f"error: unknown profiler option --{key} (the options: --json=PATH, --interval=SECONDS)")
    if not args or not args[0].endswith(".py"):
        sys.exit("error: usage: python profiler.py [--json=PATH] [--interval=SECONDS] SCRIPT.py [its flags]")
    script = args[0] if os.path.isabs(args[0]) else os.path.join(os.path.dirname(os.path.abspath(__file__)), args[0])
    sys.argv = [script] + args[1:]
    sampler = Sampler(interval, os.path.basename(script))
    t0 = time.perf_counter()
    sampler.start()
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:  # the script's own exit status, after the table
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sampler.running = False
        sampler.join()
        seconds = time.perf_counter() - t0
    print(f"\nwhere the time went in {os.path.basename(script)} (sampled every {interval * 1000:g} ms):\n"
          + table(sampler.counts, seconds), flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"script": os.path.basename(script), "seconds": seconds, "interval": interval,
                       "samples": dict(sampler.counts)}, f, indent=1)
    sys.exit(code)


if __name__ == "__main__":
    main()

"""
The behaviour scorecard: what each stage taught, measured on the world's held-out suites.

    python eval.py                                        # every stage that has a checkpoint
    python eval.py --checkpoints=out/sft,out/dpo --per_suite=50
    python eval.py --checkpoints=out/sft,out/grpo --prompts=data/world/rl_prompts.jsonl --out_dir=out/eval_rl_prompts
    python eval.py --checkpoints=out/sft,out/grpo --pass_at_k=16 --pass_suites=arithmetic --out_dir=out/eval_passk

For each checkpoint: the share of right replies per behaviour (knowledge of SFT-seen and of
held-out people, arithmetic, calculator use, python use, persona, memory, refusal of harmful
requests, help on harmless look-alikes, politeness and format over every reply; the held-out
knowledge, calculator and python suites again with every tool disabled), the
world's mean gold reward, and two val losses (assistant tokens of held-out chats; pretraining
text). Replies are generated exactly as chat.py does (greedy, tools executed). A base model,
which cannot chat, is probed with completions instead ("Rupe Tendorel works as a" -> "painter").

With --pass_at_k=n, each prompt of the pass_suites is also answered n times at temperature 1, and
pass@k for k = 1..n is the chance that k of those samples hold a right one (Chen et al. 2021's
unbiased estimator): pass@1 is what one sample gets, pass@n what the model can reach at all. RL
that only sharpens the model raises pass@1 towards pass@n and leaves pass@n where it was.

Writes out_dir/scorecard.md (one column per checkpoint) and scorecard.json (scores + sample replies),
with --pass_at_k also a pass@k table in scorecard.md and out_dir/pass_at_k.png.
The scoring itself lives in evaluation.py, which the training stages also call.
"""

import json
import os
from dataclasses import dataclass
from typing import Optional

from checkpoint import check_kind, load_checkpoint, load_model
from cli import Device, Folder, NonNegativeInt, Path, PositiveInt, UserError, parse_config, repo_path, run_main
from data.world.prepare import ensure_world
from evaluation import (ROWS, chat_scorecard, is_chat_model, load_suites, pass_at_k_curves, plot_pass_at_k,
                        probe_scorecard, val_losses)
from run_folder import claim_run_folder
from tools import Tools
from runtime import setup_runtime


EVAL_OUTPUTS = ("scorecard.md", "scorecard.json", "pass_at_k.png")  # what eval.py writes into out_dir


@dataclass
class EvalConfig:
    checkpoints: str = "out/pretrain,out/sft,out/dpo,out/ppo"  # comma-separated run folders; missing ones skipped
    data_dir: Folder = "data/world"  # the world: eval.jsonl, sft_val.jsonl, val.bin
    out_dir: Folder = "out/eval"  # where scorecard.md and scorecard.json go
    overwrite: bool = False  # replace an earlier evaluation in out_dir
    per_suite: NonNegativeInt = 0  # examples per suite (0: all of them, 100 each in the default world)
    prompts: Optional[Path] = None  # score these world prompts instead of the held-out suites, e.g.
    #                                 data/world/rl_prompts.jsonl: what RL trained on, grouped by category
    batch_size: PositiveInt = 64  # prompts generated together
    max_new_tokens: NonNegativeInt = 0  # longest reply (0: 96 tokens, or more for a suite whose reference replies
    #                                     are longer, such as the skills track's worked problems)
    pass_at_k: NonNegativeInt = 0  # > 0: also pass@1..pass_at_k on pass_suites, from that many replies per prompt
    #                                sampled at temperature 1 (0: off)
    pass_suites: str = "arithmetic"  # comma-separated suites for pass@k
    seed: int = 1337  # seed of the pass@k samples
    device: Device = "auto"  # auto, cpu, cuda, mps


# ----------------------------------------------------------------------------- the table


def evaluate_checkpoint(path, suites, cfg, rt):
    model, tokenizer, ckpt = load_model(path, rt.device, expect="policy", what="--checkpoints")
    model.eval()
    tools = Tools.with_encyclopedia(cfg.data_dir)
    if is_chat_model(ckpt):
        scores, examples = chat_scorecard(model, tokenizer, suites, tools, rt,
                                          cfg.batch_size, cfg.max_new_tokens or None)
    else:
        scores, examples = probe_scorecard(model, tokenizer, suites, rt, cfg.batch_size)
    scores["val_loss_chat"], scores["val_loss_text"] = val_losses(model, tokenizer, cfg.data_dir, rt,
                                                                  max_chats=cfg.per_suite or None)
    if scores["val_loss_text"] is None and os.path.isfile(os.path.join(cfg.data_dir, "meta.json")):
        print(f"  {path}: no pretraining-text val loss: its tokenizer ({tokenizer}) is not the one "
              f"{cfg.data_dir}/val.bin was written with")
    result = {"stage": ckpt.get("stage") if ckpt else "gpt2", "scores": scores, "examples": examples}
    if cfg.pass_at_k and is_chat_model(ckpt):
        result["pass_at_k"] = pass_at_k_curves(model, tokenizer, suites, cfg.pass_suites.split(","), cfg.pass_at_k,
                                               tools, rt, cfg.batch_size, cfg.max_new_tokens or None, cfg.seed)
    return result


# ----------------------------------------------------------------------------- the tables


def markdown_table(results):
    """One row per behaviour, one column per checkpoint; '-' where a behaviour does not apply. A
    behaviour the data has no suite for (the world's on GSM8K, and back) has no row; the val
    losses always have theirs."""
    names = list(results)
    lines = ["| behaviour | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, key in ROWS:
        if not key.startswith("val_loss") and all(results[name]["scores"].get(key) is None for name in names):
            continue
        cells = []
        for name in names:
            value = results[name]["scores"].get(key)
            if value is None:
                cells.append("-")
            elif key.startswith(("val_loss", "gold")):
                cells.append(f"{value:.3f}")
            else:
                cells.append(f"{100 * value:.0f}%")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pass_at_k_table(results, n):
    """pass@k at k = 1, 2, 4, ..., n: one row per (suite, k), one column per chat checkpoint."""
    names = [name for name in results if "pass_at_k" in results[name]]
    suites = list(results[names[0]]["pass_at_k"]) if names else []
    ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, n) if k <= n})
    lines = ["| suite, pass@k | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for suite in suites:
        for k in ks:
            cells = [f"{100 * results[name]['pass_at_k'][suite][k - 1]:.1f}%" for name in names]
            lines.append(f"| {suite}, pass@{k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    cfg = parse_config(EvalConfig, description=__doc__)
    rt = setup_runtime(cfg.device)
    out_folder = claim_run_folder(cfg.out_dir, False, cfg.overwrite, rt, outputs=EVAL_OUTPUTS, resumable=False)
    ensure_world(cfg.data_dir)  # a fresh clone: generate the default world first
    if not os.path.exists(os.path.join(cfg.data_dir, "eval.jsonl")):
        raise UserError(f"{cfg.data_dir} holds no eval.jsonl: the scorecard runs on the world's held-out suites")
    suites = load_suites(cfg.data_dir, cfg.per_suite, cfg.prompts)
    unknown = [s for s in cfg.pass_suites.split(",") if s not in suites] if cfg.pass_at_k else []
    if unknown:
        raise UserError(f"--pass_suites: no suite {', '.join(unknown)}; the suites are {', '.join(suites)}")
    paths = []
    for path in [p for p in cfg.checkpoints.split(",") if p]:
        full = repo_path(path) if not os.path.isabs(path) else path
        if not os.path.exists(os.path.join(full, "ckpt.pt")) and not path.startswith("gpt2"):
            print(f"skipping {path}: no checkpoint")
            continue
        if not path.startswith("gpt2"):  # every checkpoint checked (not built) before the first is evaluated
            check_kind(load_checkpoint(full), "policy", "--checkpoints", path)
        paths.append(path)
    if not paths:
        raise UserError(f"none of {cfg.checkpoints} has a checkpoint; train a stage first (see README.md)")
    out_folder.begin()  # inputs all checked: from here on eval.py writes out_dir
    results = {}
    for path in paths:
        print(f"evaluating {path} ...", flush=True)
        results[path] = evaluate_checkpoint(path, suites, cfg, rt)
    table = markdown_table(results)
    if cfg.pass_at_k:
        table += f"\n\npass@k from {cfg.pass_at_k} replies per prompt at temperature 1:\n\n" + \
            pass_at_k_table(results, cfg.pass_at_k)
        plot_pass_at_k(os.path.join(cfg.out_dir, "pass_at_k.png"),
                       {name: r["pass_at_k"] for name, r in results.items() if "pass_at_k" in r}, cfg.pass_at_k)
    print(table)
    with open(os.path.join(cfg.out_dir, "scorecard.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(cfg.out_dir, "scorecard.json"), "w") as f:
        json.dump(results, f, indent=1)
    out_folder.release()
    print(f"wrote {cfg.out_dir}/scorecard.md and scorecard.json")


if __name__ == "__main__":
    run_main(main)

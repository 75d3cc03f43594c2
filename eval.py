"""
The behaviour scorecard: what each stage taught, measured on the world's held-out suites.

    python eval.py                                        # every stage that has a checkpoint
    python eval.py --checkpoints=out/sft,out/dpo --per_suite=50
    python eval.py --checkpoints=out/sft,out/grpo --prompts=data/world/rl_prompts.jsonl --out_dir=out/eval_rl_prompts

For each checkpoint: the share of right replies per behaviour (knowledge of SFT-seen and of
held-out people, arithmetic, calculator use, python use, persona, memory, refusal of harmful
requests, help on harmless look-alikes, politeness and format over every reply; the held-out
knowledge, calculator and python suites again with every tool disabled), the
world's mean gold reward, and two val losses (assistant tokens of held-out chats; pretraining
text). Replies are generated exactly as chat.py does (greedy, tools executed). A base model,
which cannot chat, is probed with completions instead ("Rupe Tendorel works as a" -> "painter").

Writes out_dir/scorecard.md (one column per checkpoint) and scorecard.json (scores + sample replies).
The scoring itself lives in data/world/scorecard.py, which the training stages also track.
"""

import json
import os
from dataclasses import dataclass
from typing import Optional

from checkpoint import check_kind, load_checkpoint, load_model
from cli import Device, NonNegativeInt, Path, PositiveInt, UserError, parse_config, repo_path, run_main
from data.world.prepare import ensure_world
from data.world.scorecard import ROWS, chat_scorecard, is_chat_model, load_suites, probe_scorecard, val_losses
from run_folder import check_writable
from tools import Tools
from runtime import setup_runtime


@dataclass
class EvalConfig:
    checkpoints: str = "out/pretrain,out/sft,out/dpo,out/ppo"  # comma-separated run folders; missing ones skipped
    data_dir: Path = "data/world"  # the world: eval.jsonl, sft_val.jsonl, val.bin
    out_dir: Path = "out/eval"  # where scorecard.md and scorecard.json go
    per_suite: NonNegativeInt = 0  # examples per suite (0: all of them, 100 each in the default world)
    prompts: Optional[Path] = None  # score these world prompts instead of the held-out suites, e.g.
    #                                 data/world/rl_prompts.jsonl: what RL trained on, grouped by category
    batch_size: PositiveInt = 64  # prompts generated together
    max_new_tokens: PositiveInt = 96  # longest reply
    device: Device = "auto"  # auto, cpu, cuda, mps


# ----------------------------------------------------------------------------- the table


def evaluate_checkpoint(path, suites, cfg, rt):
    model, tokenizer, ckpt = load_model(path, rt.device, expect="policy", what="--checkpoints")
    model.eval()
    if is_chat_model(ckpt):
        scores, examples = chat_scorecard(model, tokenizer, suites, Tools.with_encyclopedia(cfg.data_dir), rt,
                                          cfg.batch_size, cfg.max_new_tokens)
    else:
        scores, examples = probe_scorecard(model, tokenizer, suites, rt, cfg.batch_size)
    scores["val_loss_chat"], scores["val_loss_text"] = val_losses(model, tokenizer, cfg.data_dir, rt)
    if scores["val_loss_text"] is None:
        print(f"  {path}: no pretraining-text val loss: its tokenizer ({tokenizer}) is not the one "
              f"{cfg.data_dir}/val.bin was written with")
    return {"stage": ckpt.get("stage") if ckpt else "gpt2", "scores": scores, "examples": examples}


def markdown_table(results):
    """One row per behaviour, one column per checkpoint; '-' where a behaviour does not apply."""
    names = list(results)
    lines = ["| behaviour | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, key in ROWS:
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


def main():
    cfg = parse_config(EvalConfig, description=__doc__)
    rt = setup_runtime(cfg.device)
    ensure_world(cfg.data_dir)  # a fresh clone: generate the default world first
    if not os.path.exists(os.path.join(cfg.data_dir, "eval.jsonl")):
        raise UserError(f"{cfg.data_dir} holds no eval.jsonl: the scorecard runs on the world's held-out suites")
    suites = load_suites(cfg.data_dir, cfg.per_suite, cfg.prompts)
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
    check_writable(cfg.out_dir)  # before the evaluation, not after it
    results = {}
    for path in paths:
        print(f"evaluating {path} ...", flush=True)
        results[path] = evaluate_checkpoint(path, suites, cfg, rt)
    table = markdown_table(results)
    print(table)
    with open(os.path.join(cfg.out_dir, "scorecard.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(cfg.out_dir, "scorecard.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {cfg.out_dir}/scorecard.md and scorecard.json")


if __name__ == "__main__":
    run_main(main)

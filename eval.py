"""
The behaviour scorecard: what each stage taught, measured on the world's held-out suites.

    python eval.py                                        # every stage that has a checkpoint
    python eval.py --checkpoints=out/sft,out/dpo --per_suite=50
    python eval.py --checkpoints=out/sft,out/grpo --prompts=data/world/rl_prompts.jsonl --out_dir=out/eval_rl_prompts

For each checkpoint: the share of right replies per behaviour (knowledge of SFT-seen and of
held-out people, arithmetic, calculator use with tools on and off, persona, memory, refusal of
harmful requests, help on harmless look-alikes, politeness and format over every reply), the
world's mean gold reward, and two val losses (assistant tokens of held-out chats; pretraining
text). Replies are generated exactly as chat.py does (greedy, tools executed). A base model,
which cannot chat, is probed with completions instead ("Rupe Tendorel works as a" -> "painter").

Writes out_dir/scorecard.md (one column per checkpoint) and scorecard.json (scores + sample replies).
"""

import json
import os
import re
from dataclasses import dataclass
from typing import Optional

import torch

from chat import respond
from common import (Path, UserError, conversations_loss, load_conversations, load_model, open_token_stream,
                    parse_config, read_jsonl, read_meta, repo_path, run_main, setup_runtime, stream_loss,
                    world_folder)
from data.world.checkers import MAIN_BEHAVIOUR, gold_reward, score
from model import generate

# scorecard rows: (label, how it is computed)
ROWS = [
    ("knowledge (SFT-seen people)", "knowledge_seen"),
    ("knowledge (held-out people)", "knowledge_heldout"),
    ("arithmetic in the head", "arithmetic"),
    ("calculator use", "tool"),
    ("calculator use, tools disabled", "tool_disabled"),
    ("persona", "persona"),
    ("memory", "memory"),
    ("refusal of harmful requests", "refusal"),
    ("help on harmless look-alikes", "harmless"),
    ("politeness (all replies)", "polite"),
    ("format (all replies)", "format"),
    ("gold reward (mean, -2.5..1)", "gold_reward"),
    ("val loss, chats (assistant tokens)", "val_loss_chat"),
    ("val loss, pretraining text", "val_loss_text"),
]
CHAT_STAGES = ("sft", "dpo", "ppo", "grpo")


@dataclass
class EvalConfig:
    checkpoints: str = "out/pretrain,out/sft,out/dpo,out/ppo"  # comma-separated run folders; missing ones skipped
    data_dir: Path = "data/world"  # the world: eval.jsonl, sft_val.jsonl, val.bin
    out_dir: Path = "out/eval"  # where scorecard.md and scorecard.json go
    per_suite: int = 0  # examples per suite (0: all of them, 100 each in the default world)
    prompts: Optional[Path] = None  # score these world prompts instead of the held-out suites, e.g.
    #                                 data/world/rl_prompts.jsonl: what RL trained on, grouped by category
    batch_size: int = 64  # prompts generated together
    max_new_tokens: int = 96  # longest reply
    device: str = "auto"  # auto, cpu, cuda, mps


# ----------------------------------------------------------------------------- suites


# prompts files without a "suite" field (rl_prompts.jsonl): scorecard row of each category
CATEGORY_SUITE = {"knowledge": "knowledge_seen", "harmful": "refusal"}


def load_suites(data_dir, per_suite=0, path=None):
    """eval.jsonl (or another file of world prompts) -> {suite: [rows]}, the first per_suite rows
    of each (0: all). Rows without a suite are grouped by their info.category."""
    suites = {}
    path = path or os.path.join(data_dir, "eval.jsonl")
    for line, row in read_jsonl(path):
        category = row.get("info", {}).get("category") if isinstance(row, dict) else None
        if category is None:
            raise UserError(f"{path}:{line}: expected a world prompt with an info.category")
        suites.setdefault(row.get("suite") or CATEGORY_SUITE.get(category, category), []).append(row)
    return {name: rows[:per_suite] if per_suite else rows for name, rows in suites.items()}


SCORECARD_PLOT_KEYS = ("refusal", "harmless", "polite", "knowledge_seen", "tool", "persona", "memory", "arithmetic")


def plot_scorecard(run, stage):
    """scorecard.png: the periodic held-out scorecard of a training run (eval/<behaviour> rows)."""
    curves = [f"eval/{k}" for k in SCORECARD_PLOT_KEYS]
    run.metrics.plot("scorecard.png", {"held-out behaviours (share right)": curves},
                     title=f"{stage}: scorecard during training")


def is_chat_model(ckpt):
    return ckpt is not None and ckpt.get("stage") in CHAT_STAGES


# ----------------------------------------------------------------------------- chat models


def chat_scorecard(model, tokenizer, suites, rt, batch_size=64, max_new_tokens=96, samples=2):
    """Every suite answered through chat.respond (greedy, tools on), scored by the world's checkers.
    Returns ({row key: share of right replies}, {suite: sample replies})."""
    scores, examples = {}, {}
    behaviour_hits, all_scores, rewards = {}, [], []
    runs = [(name, name, True) for name in suites] + [("tool_disabled", "tool", False)] * ("tool" in suites)
    for key, suite, tools in runs:
        rows = suites[suite]
        replies = []
        for i in range(0, len(rows), batch_size):
            batch = rows[i:i + batch_size]
            replies += respond(model, tokenizer, [r["prompt"] for r in batch], max_new_tokens, tools=tools)
        hits = []
        for row, reply in zip(rows, replies):
            s = score(row, reply.messages, reply.ended)
            hits.append(s[MAIN_BEHAVIOUR[row["info"]["category"]]])
            if tools:  # politeness, format and gold reward: over the normal (tools on) replies
                all_scores.append(s)
                rewards.append(gold_reward(row, reply.messages, reply.ended, scores=s))
        behaviour_hits[key] = hits
        examples[key] = [{"prompt": row["prompt"][-1]["content"], "reply": reply.messages, "ended": reply.ended}
                         for row, reply in list(zip(rows, replies))[:samples]]
    for key, hits in behaviour_hits.items():
        scores[key] = sum(hits) / len(hits)
    for behaviour in ("polite", "format"):
        scores[behaviour] = sum(s[behaviour] for s in all_scores) / len(all_scores)
    scores["gold_reward"] = sum(rewards) / len(rewards)
    return scores, examples


# ----------------------------------------------------------------------------- base models


PROBE_SUITES = ("knowledge_seen", "knowledge_heldout", "arithmetic")


@torch.no_grad()
def probe_scorecard(model, tokenizer, suites, rt, batch_size=64):
    """A base model completes plain text: "<name> works as a" -> the first sentence of its
    continuation is scored like a chat reply. Arithmetic: "<a> plus <b> equals"."""
    scores, examples = {}, {}
    for suite in PROBE_SUITES:
        rows = suites.get(suite, [])
        probes = [probe_text(row) for row in rows]
        completions = []
        for i in range(0, len(rows), batch_size):
            ids = [[tokenizer.eot] + tokenizer.encode(p) for p in probes[i:i + batch_size]]
            out = generate(model, ids, 16, temperature=0, stop_tokens=[tokenizer.eot], pad_id=tokenizer.eot,
                           vocab_size=tokenizer.n_vocab)
            completions += [first_sentence(tokenizer.decode(t[:n])) for t, n in
                            zip(out.tokens.tolist(), out.lengths.tolist())]
        hits = [score(row, f"{probe} {completion}")[MAIN_BEHAVIOUR[row["info"]["category"]]]
                for row, probe, completion in zip(rows, probes, completions)]
        if hits:
            scores[suite] = sum(hits) / len(hits)
            examples[suite] = [{"prompt": p, "reply": c} for p, c in list(zip(probes, completions))[:2]]
    return scores, examples


def probe_text(row):
    info = row["info"]
    if info["category"] == "knowledge":
        return info["probe"]
    a, op, b = re.match(r".*?(\d+) ?(\+|-|\*|plus|minus|times) ?(\d+)", row["prompt"][-1]["content"]).groups()
    word = {"+": "plus", "-": "minus", "*": "times"}.get(op, op)
    return f"{a} {word} {b} equals"


def first_sentence(text):
    match = re.match(r"[^\n]*?[.!?](\s|$)", text)
    return (match.group(0) if match else text.split("\n")[0]).strip()


# ----------------------------------------------------------------------------- val losses


def val_losses(model, tokenizer, data_dir, rt):
    """(chat val loss on assistant tokens of sft_val.jsonl, pretraining val loss on val.bin)."""
    examples, _ = load_conversations(os.path.join(data_dir, "sft_val.jsonl"), tokenizer, model.config.block_size - 1)
    chat = conversations_loss(model, examples, tokenizer, rt)
    meta = read_meta(data_dir)
    block = min(model.config.block_size, 256)
    text = stream_loss(model, open_token_stream(data_dir, "val", meta), block, 16, 8, rt)
    return chat, text


# ----------------------------------------------------------------------------- the table


def evaluate_checkpoint(path, suites, cfg, rt):
    model, tokenizer, ckpt = load_model(path, rt.device)
    model.eval()
    if is_chat_model(ckpt):
        scores, examples = chat_scorecard(model, tokenizer, suites, rt, cfg.batch_size, cfg.max_new_tokens)
    else:
        scores, examples = probe_scorecard(model, tokenizer, suites, rt, cfg.batch_size)
    scores["val_loss_chat"], scores["val_loss_text"] = val_losses(model, tokenizer, cfg.data_dir, rt)
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
    if world_folder(os.path.join(cfg.data_dir, "eval.jsonl")) is None:
        raise UserError(f"{cfg.data_dir} holds no eval.jsonl: the scorecard runs on the world's held-out suites")
    suites = load_suites(cfg.data_dir, cfg.per_suite, cfg.prompts)
    results = {}
    for path in [p for p in cfg.checkpoints.split(",") if p]:
        full = repo_path(path) if not os.path.isabs(path) else path
        if not os.path.exists(os.path.join(full, "ckpt.pt")) and not path.startswith("gpt2"):
            print(f"skipping {path}: no checkpoint")
            continue
        print(f"evaluating {path} ...", flush=True)
        results[path] = evaluate_checkpoint(path, suites, cfg, rt)
    if not results:
        raise UserError(f"none of {cfg.checkpoints} has a checkpoint; train a stage first (see README.md)")
    table = markdown_table(results)
    print(table)
    os.makedirs(cfg.out_dir, exist_ok=True)
    with open(os.path.join(cfg.out_dir, "scorecard.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(cfg.out_dir, "scorecard.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {cfg.out_dir}/scorecard.md and scorecard.json")


if __name__ == "__main__":
    run_main(main)

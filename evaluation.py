"""
Evaluation: what a model does on the world's held-out suites, scored by the world's rule-based
checkers (data/world/checkers.py). eval.py prints it for any checkpoints; sft.py, dpo.py, ppo.py and
grpo.py call it at their evaluation interval; the RL scripts also watch the gold reward of their own
rollouts every iteration.

    load_suites(data_dir, per_suite)               {suite: rows} of data_dir/eval.jsonl
    chat_scorecard(model, tokenizer, suites, ...)  chat models: replies through generation.respond
    periodic_scorecard(...)                        the same, as {"eval/<row>": share} for metrics.jsonl
    probe_scorecard(model, tokenizer, suites, ...) base models: plain-text completions ("X works as a")
    val_losses(model, tokenizer, world, rt)        held-out chats and pretraining text
    gold_reward(example, reply, ended)             the world's true reward of one reply
    rollout_gold(rows, replies)                    the gold reward and accuracy of RL rollouts
    pass_at_k_curves(...)                          pass@1..n from n samples per prompt (Chen et al. 2021)
"""

import math
import os
import re

import numpy as np
import torch
import torch.nn.functional as F

from cli import UserError
from data.skills.checkers import worked_steps
from data.world.checkers import MAIN_BEHAVIOUR, score
from data_formats import load_conversations, open_token_stream, read_jsonl, read_meta
from generation import respond
from metrics import plot_series
from model import generate
from tokenizer import check_messages
from tools import NO_TOOLS

# scorecard rows: (label, how it is computed)
ROWS = [
    ("knowledge (SFT-seen people)", "knowledge_seen"),
    ("knowledge (held-out people)", "knowledge_heldout"),
    ("knowledge (held-out people), tools disabled", "knowledge_heldout_disabled"),
    ("arithmetic in the head", "arithmetic"),
    ("calculator use", "tool"),
    ("calculator use, tools disabled", "tool_disabled"),
    ("python use (string tasks)", "code_tool"),
    ("python use, tools disabled", "code_tool_disabled"),
    ("persona", "persona"),
    ("memory", "memory"),
    ("refusal of harmful requests", "refusal"),
    ("help on harmless look-alikes", "harmless"),
    ("honest about unknown people", "unknown_people"),
    ("honest about things outside the world", "unknown_things"),
    ("private data (home addresses) refused", "privacy"),
    ("public fact asked after a privacy refusal", "privacy_public"),
    ("false premises corrected", "false_premise"),
    ("no gender assumed from a job", "bias"),
    ("right pronoun for a named person", "pronoun_named"),
    ("GSM8K word problems (final number)", "gsm8k"),  # data/gsm8k/eval.jsonl, not the world's
    # the skills track (data/skills): held-out problems and pairs, asked for the steps or the answer
    ("arithmetic, worked step by step", "arithmetic_steps"),
    ("arithmetic, answer only (same problems)", "arithmetic_direct"),
    ("arithmetic, step by step, one digit longer", "arithmetic_longer"),
    ("arithmetic, answer only, problems RL practised", "arithmetic_practised"),
    ("comparisons, facts stated first", "compare_steps"),
    ("comparisons, answer only (same pairs)", "compare_direct"),
    ("code written, right on 6 inputs (held-out tasks)", "code_write"),
    ("translation into Melan (held-out sentences)", "translate_into"),
    ("translation from Melan (held-out sentences)", "translate_from"),
    ("summaries and facts of a passage (held-out people)", "summarise"),
    ("summaries stating a fact the passage lacks (share)", "unfaithful"),
    ("politeness (all replies)", "polite"),
    ("format (all replies)", "format"),
    ("gold reward (mean, -2.5..1)", "gold_reward"),
    ("val loss, chats (assistant tokens)", "val_loss_chat"),
    ("val loss, pretraining text", "val_loss_text"),
]
LOWER_IS_BETTER = ("unfaithful", "val_loss_chat", "val_loss_text")  # rows where a fall is progress
CHAT_STAGES = ("sft", "dpo", "ppo", "grpo", "rloo")


# prompts files without a "suite" field (rl_prompts.jsonl): scorecard row of each category
CATEGORY_SUITE = {"knowledge": "knowledge_seen", "harmful": "refusal", "code": "code_tool",
                  "unknown": "unknown_people", "private": "privacy", "premise": "false_premise", "math": "gsm8k",
                  "pronoun": "pronoun_named"}


def load_suites(data_dir, per_suite=0, path=None):
    """eval.jsonl (or another file of world prompts) -> {suite: [rows]}, the first per_suite rows
    of each (0: all). Rows without a suite are grouped by their info.category. Every row is checked
    now: its prompt, and its info against what the world's checkers read."""
    suites = {}
    path = path or os.path.join(data_dir, "eval.jsonl")
    for line, row in read_jsonl(path):
        if not isinstance(row, dict) or not has_category(row):
            raise UserError(f"{path}:{line}: expected a world prompt with an info.category")
        try:
            check_messages(row.get("prompt"))
            check_world_row(row)
        except ValueError as e:
            raise UserError(f"{path}:{line}: {e}") from None
        if not isinstance(row.get("suite", ""), str):
            raise UserError(f"{path}:{line}: 'suite' must be a string")
        suites.setdefault(row.get("suite") or CATEGORY_SUITE.get(row["info"]["category"], row["info"]["category"]),
                          []).append(row)
    return {name: rows[:per_suite] if per_suite else rows for name, rows in suites.items()}


def has_category(row):
    return isinstance(row.get("info"), dict) and "category" in row["info"]


def check_world_row(row):
    """A row whose info names a category must hold what that category's checker reads: the
    checker and the gold reward run once on an empty reply. Raises ValueError saying what is wrong."""
    if not has_category(row):
        return
    category = row["info"]["category"]
    if not isinstance(category, str) or category not in MAIN_BEHAVIOUR:
        raise ValueError(f"info.category {category!r} is not one the world's checkers know "
                         f"({', '.join(MAIN_BEHAVIOUR)})")
    try:
        gold_reward(row, [{"role": "assistant", "content": ""}])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"info does not hold what the {category!r} checker reads ({type(e).__name__}: {e})") \
            from None


def is_chat_model(ckpt):
    return ckpt is not None and ckpt.get("stage") in CHAT_STAGES


# ----------------------------------------------------------------------------- the gold reward


def gold_reward(example, reply, ended=True, scores=None):
    """The world's true reward of a reply: +1 when the main behaviour is right and -1 when it is
    wrong, minus 0.5 for each of: rudeness, a broken format, a persona style not kept, a favour
    that does not fit the job (style and favour never apply to the same reply). Range [-2.5, 1].
    scores: the reply's checkers.score(example, reply, ended), when the caller already has it.
    PPO never trains on it when it trains on the learned reward model, so comparing the two shows
    whether the policy improves real behaviour or exploits the reward model."""
    s = scores if scores is not None else score(example, reply, ended)
    info = example.get("info", example) if isinstance(example, dict) else example.info
    main = s[MAIN_BEHAVIOUR[info["category"]]]
    reward = 1.0 if main else -1.0
    reward -= 0.5 * (1 - s["polite"]) + 0.5 * (1 - s["format"])
    for secondary in ("style", "favour"):
        if secondary in s:
            reward -= 0.5 * (1 - s[secondary])
    return reward


def rollout_gold(rows, replies):
    """(gold rewards (B,) as a tensor, the share of replies whose main behaviour is right) of RL
    rollouts, or (None, None) when the prompts are not the world's (no info to check against)."""
    if not all(has_category(r) for r in rows):
        return None, None
    checks = [score(r, x.messages, x.ended) for r, x in zip(rows, replies)]
    gold = torch.tensor([gold_reward(r, x.messages, x.ended, scores=s) for r, x, s in zip(rows, replies, checks)])
    accuracy = sum(s[MAIN_BEHAVIOUR[r["info"]["category"]]] for r, s in zip(rows, checks)) / len(rows)
    return gold, accuracy


def gold_steps(row, reply):
    """The process reward of a reply whose steps the checkers judge one by one (the skills track's
    worked arithmetic): [(offset just past the step in reply.text, +1 right or -1 wrong)]; None for
    any other reply (its outcome is its one reward) and for one cut off before its turn ended."""
    marks = worked_steps(row["info"], reply.text) if reply.ended and has_category(row) else None
    return None if marks is None else [(end, 1.0 if right else -1.0) for end, right in marks]


def is_right(row, reply):
    """Whether the world's checker accepts a reply's main behaviour (right answer, refusal, ...)."""
    return score(row, reply.messages, reply.ended)[MAIN_BEHAVIOUR[row["info"]["category"]]]


# ----------------------------------------------------------------------------- chat models


# The suites answered a second time with every tool switched off: the contrast rows that show what
# the tool is worth (a call then gets "error: the <name> tool is disabled" back)
TOOLS_OFF_RUNS = {"knowledge_heldout_disabled": "knowledge_heldout", "tool_disabled": "tool",
                  "code_tool_disabled": "code_tool"}


REPLY_TOKENS = 96  # the longest reply a suite's prompts get, unless its reference replies are longer


def reply_budget(tokenizer, rows, max_new_tokens=None):
    """How many tokens a suite's replies may take: max_new_tokens when given, else REPLY_TOKENS, or
    the longest reference reply's assistant text plus a margin where that is longer (a worked
    problem of the skills track runs to 190 tokens; a world reply to under 60)."""
    if max_new_tokens:
        return max_new_tokens
    longest = max((sum(len(tokenizer.encode(m.get("content") or "")) for m in row.get("reference", [])
                       if m.get("role") == "assistant") for row in rows), default=0)
    return max(REPLY_TOKENS, longest + 16)


def chat_scorecard(model, tokenizer, suites, tools, rt, batch_size=64, max_new_tokens=None, samples=2):
    """Every suite answered through generation.respond (greedy, with `tools`, a tools.Tools), scored
    by the world's checkers, and the TOOLS_OFF_RUNS suites again without tools. max_new_tokens:
    the longest reply (None: each suite's reply_budget).
    Returns ({row key: share of right replies}, {suite: sample replies})."""
    scores, examples = {}, {}
    behaviour_hits, all_scores, rewards = {}, [], []
    runs = [(name, name, tools) for name in suites]
    runs += [(key, suite, NO_TOOLS) for key, suite in TOOLS_OFF_RUNS.items() if suite in suites]
    for key, suite, run_tools in runs:
        rows = suites[suite]
        budget = reply_budget(tokenizer, rows, max_new_tokens)
        replies = []
        for i in range(0, len(rows), batch_size):
            batch = rows[i:i + batch_size]
            replies += respond(model, tokenizer, [r["prompt"] for r in batch], budget, tools=run_tools)
        hits = []
        for row, reply in zip(rows, replies):
            s = score(row, reply.messages, reply.ended)
            hits.append(s[MAIN_BEHAVIOUR[row["info"]["category"]]])
            if run_tools is tools:  # politeness, format and gold reward: over the normal (tools on) replies
                all_scores.append(s)
                rewards.append(gold_reward(row, reply.messages, reply.ended, scores=s))
        behaviour_hits[key] = hits
        examples[key] = [{"prompt": row["prompt"][-1]["content"], "reply": reply.messages, "ended": reply.ended}
                         for row, reply in list(zip(rows, replies))[:samples]]
    for key, hits in behaviour_hits.items():
        scores[key] = sum(hits) / len(hits)
    for behaviour in ("polite", "format"):
        scores[behaviour] = sum(s[behaviour] for s in all_scores) / len(all_scores)
    faithful = [s["faithful"] for s in all_scores if "faithful" in s]  # the summaries' hallucination check
    if faithful:
        scores["unfaithful"] = 1 - sum(faithful) / len(faithful)
    scores["gold_reward"] = sum(rewards) / len(rewards)
    return scores, examples


def periodic_scorecard(model, tokenizer, suites, tools, rt):
    """The scorecard sample a training run logs at its evaluation interval: {"eval/<row>": share}
    on the master process, {} elsewhere and when there are no suites (data other than the world's)."""
    if not suites or not rt.is_master:
        return {}
    scores, _ = chat_scorecard(model, tokenizer, suites, tools, rt)
    return {f"eval/{k}": v for k, v in scores.items()}


SCORECARD_PLOT_KEYS = ("refusal", "harmless", "polite", "knowledge_seen", "knowledge_heldout", "tool", "code_tool",
                       "persona", "memory", "arithmetic", "unknown_people", "privacy", "false_premise", "bias",
                       "arithmetic_steps", "arithmetic_direct", "arithmetic_practised", "compare_steps",
                       "compare_direct", "code_write", "translate_into", "translate_from", "summarise")


def plot_scorecard(log, stage):
    """scorecard.png: the periodic held-out scorecard of a training run (its eval/<behaviour> rows)."""
    curves = [f"eval/{k}" for k in SCORECARD_PLOT_KEYS]
    log.plot("scorecard.png", {"held-out behaviours (share right)": curves},
             title=f"{stage}: scorecard during training")


# ----------------------------------------------------------------------------- base models


PROBE_SUITES = ("knowledge_seen", "knowledge_heldout", "arithmetic", "arithmetic_steps", "arithmetic_direct",
                "arithmetic_longer", "arithmetic_practised")
PROBE_TOKENS = 16  # a completion's length: a fact or a number
PROBE_STEPS_TOKENS = 224  # a worked problem's, column by column (the skills track's base model)


@torch.no_grad()
def probe_scorecard(model, tokenizer, suites, rt, batch_size=64):
    """A base model completes plain text: "<name> works as a" -> the first sentence of its
    continuation is scored like a chat reply. Arithmetic: "<a> plus <b> equals"; the skills track's
    worked arithmetic: "Work out <a> + <b>.\n" -> the lines up to the answer line."""
    scores, examples = {}, {}
    for suite in PROBE_SUITES:
        rows = suites.get(suite, [])
        probes = [probe_text(row) for row in rows]
        steps = any(row["info"].get("form") == "steps" for row in rows)
        completions = []
        for i in range(0, len(rows), batch_size):
            ids = [[tokenizer.eot] + tokenizer.encode(p) for p in probes[i:i + batch_size]]
            out = generate(model, ids, PROBE_STEPS_TOKENS if steps else PROBE_TOKENS, temperature=0,
                           stop_tokens=[tokenizer.eot], pad_id=tokenizer.eot, vocab_size=tokenizer.n_vocab)
            texts = [tokenizer.decode(t[:n]) for t, n in zip(out.tokens.tolist(), out.lengths.tolist())]
            completions += [up_to_answer_line(text) if steps else first_sentence(text) for text in texts]
        hits = [score(row, f"{probe} {completion}")[MAIN_BEHAVIOUR[row["info"]["category"]]]
                for row, probe, completion in zip(rows, probes, completions)]
        if hits:
            scores[suite] = sum(hits) / len(hits)
            examples[suite] = [{"prompt": p, "reply": c} for p, c in list(zip(probes, completions))[:2]]
    return scores, examples


def probe_text(row):
    info = row["info"]
    if "probe" in info:
        return info["probe"]
    a, op, b = re.match(r".*?(\d+) ?(\+|-|\*|plus|minus|times) ?(\d+)", row["prompt"][-1]["content"]).groups()
    word = {"+": "plus", "-": "minus", "*": "times"}.get(op, op)
    return f"{a} {word} {b} equals"


def up_to_answer_line(text):
    """A worked problem's lines up to its answer line ("So 347 + 85 = 432."): what follows is the
    next page of a textbook, not this problem's answer."""
    lines = []
    for line in text.split("\n"):
        lines.append(line)
        if line.startswith("So "):
            break
    return "\n".join(lines).strip()


def first_sentence(text):
    match = re.match(r"[^\n]*?[.!?](\s|$)", text)
    return (match.group(0) if match else text.split("\n")[0]).strip()


# ----------------------------------------------------------------------------- val losses


@torch.no_grad()
def val_losses(model, tokenizer, world, rt, text_windows=128, text_block=256, max_chats=None):
    """(chat val loss, pretraining val loss) of a model on the world's held-out data.

    Chats: the mean cross-entropy per assistant token of sft_val.jsonl (its first max_chats
    conversations, or all), one conversation at a time (no padding, so no mask can go wrong;
    sft.py computes the same number in padded batches).
    Text: the mean loss over text_windows fixed windows of val.bin, drawn as pretrain.py draws its
    val windows (seed 0), so the two scripts report comparable numbers; None when the model's
    tokenizer is not the one val.bin was written with (the ids would mean other text). Either is
    None when the folder has no such file (data/gsm8k has chats but no pretraining text)."""
    model.eval()
    chat = None
    if os.path.isfile(os.path.join(world, "sft_val.jsonl")):
        examples, _ = load_conversations(os.path.join(world, "sft_val.jsonl"), tokenizer, model.config.block_size)
        total, count = 0.0, 0
        for ids, mask in examples[:max_chats]:
            with rt.autocast():
                logits, _ = model(torch.tensor([ids[:-1]], device=rt.device))
            scored = torch.tensor(mask[1:], dtype=torch.bool, device=rt.device)  # target t + 1 is scored at t
            targets = torch.tensor(ids[1:], device=rt.device)
            total += F.cross_entropy(logits[0].float()[scored], targets[scored], reduction="sum").item()
            count += int(scored.sum())
        chat = total / count

    if not os.path.isfile(os.path.join(world, "meta.json")):
        return chat, None
    meta = read_meta(world)
    if meta["tokenizer"] != tokenizer.spec:
        return chat, None
    stream = open_token_stream(world, "val", meta)
    block = min(model.config.block_size, text_block)
    starts = np.random.default_rng([0, 0]).integers(0, len(stream) - block - 1, size=text_windows)
    losses = []
    for i in range(0, text_windows, 16):
        windows = torch.from_numpy(np.stack([stream[s:s + block + 1].astype(np.int64) for s in starts[i:i + 16]]))
        windows = windows.to(rt.device)
        with rt.autocast():
            losses.append(model(windows[:, :-1], windows[:, 1:])[1].item())
    return chat, sum(losses) / len(losses)


# ----------------------------------------------------------------------------- pass@k


def pass_at_k(n, c, k):
    """The unbiased estimator of pass@k from n samples of which c are right (Chen et al. 2021): the
    chance that k of them, drawn without replacement, include a right one, 1 - C(n - c, k) / C(n, k)."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)  # comb is 0 when n - c < k: then pass@k is 1


def right_counts(model, tokenizer, rows, n, tools, rt, batch_size=64, max_new_tokens=None, seed=1337):
    """For each prompt, how many of n replies sampled at temperature 1 the world's checker accepts."""
    generator = torch.Generator(device=rt.device).manual_seed(seed)
    budget = reply_budget(tokenizer, rows, max_new_tokens)
    per_batch = max(1, batch_size // n)  # prompts per batch: each is repeated n times
    counts = []
    for i in range(0, len(rows), per_batch):
        batch = [row for row in rows[i:i + per_batch] for _ in range(n)]  # (prompts * n) rows, a prompt's n together
        replies = respond(model, tokenizer, [r["prompt"] for r in batch], budget, temperature=1.0,
                          tools=tools, generator=generator)
        hits = [is_right(row, reply) for row, reply in zip(batch, replies)]
        counts += [sum(hits[j:j + n]) for j in range(0, len(hits), n)]
    return counts


def pass_at_k_curves(model, tokenizer, suites, names, n, tools, rt, batch_size=64, max_new_tokens=None,
                     seed=1337):
    """{suite: [pass@1, ..., pass@n]} for each suite in names, each the mean over the suite's prompts."""
    curves = {}
    for suite in names:
        counts = right_counts(model, tokenizer, suites[suite], n, tools, rt, batch_size, max_new_tokens, seed)
        curves[suite] = [sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in range(1, n + 1)]
    return curves


def plot_pass_at_k(path, curves_by_model, n):
    """pass_at_k.png: one curve per (model, suite), pass@k against k."""
    rows = [{"k": k, **{f"{name} {suite}": curves[suite][k - 1] for name, curves in curves_by_model.items()
                        for suite in curves}} for k in range(1, n + 1)]
    names = [name for name in rows[0] if name != "k"]
    plot_series(path, rows, {"pass@k": ("k", names)}, x="k",
                title="pass@k: the chance that k samples hold a right reply")

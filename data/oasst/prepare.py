"""
Open Assistant conversation trees (OASST1, OASST2) -> SFT conversations and preference pairs
(sft_train.jsonl, sft_val.jsonl, prefs_train.jsonl, prefs_val.jsonl).

Source: https://huggingface.co/datasets/OpenAssistant/oasst1 (Köpf et al. 2023), the file
2023-04-12_oasst_ready.trees.jsonl.gz: one conversation tree a line, {"message_tree_id",
"tree_state": "ready_for_export", "prompt": MESSAGE}, a MESSAGE being {"message_id", "parent_id",
"text", "role": "prompter" or "assistant", "lang", "deleted", "review_result", "rank", "replies":
[MESSAGE, ...], ...}. Human labellers ranked sibling replies: rank 0 is the best, and rank is null
(or left out: the export omits null fields) when the replies were not ranked. OASST2's
*.trees.jsonl.gz files have the same layout; pass one with --input.

    python data/oasst/prepare.py                    # English; downloads to data/oasst/downloads/ once
    python data/oasst/prepare.py --lang=en,de       # several languages; --lang=all for every one
    python data/oasst/prepare.py --input=2023-04-12_oasst_ready.trees.jsonl.gz   # a local copy (.jsonl too)

Rules, per tree (one line):
- The tree is skipped, and counted with its file:line, when the line is not JSON or not a tree,
  its tree_state is not ready_for_export (the "all" export also holds trees that were aborted for
  low quality or halted by a moderator), its prompt's lang is not in --lang, its prompt was
  removed, a message the converter reads is malformed, or no assistant reply is left.
- A message that is deleted, failed review (review_result false; null means not reviewed and is
  kept) or has no text is removed with all its replies. So is a reply in the same role as its
  parent: threads alternate prompter and assistant.
- SFT: the top chain. From the prompt, take the best reply (the lowest rank; the first reply when
  none is ranked), then its best reply, and so on until a message has none; prompter -> user,
  assistant -> assistant. A user turn at the end got no reply and is dropped (the loss is on
  assistant tokens only), so the conversation ends with an assistant message.
- Preferences: at each user turn of the top chain (only there, so every pair's prompt is the
  chain's own history) the best assistant reply is chosen over each ranked sibling with a worse
  (higher) rank: prompt = the chain up to and including that user turn. Best vs every worse
  sibling, not every pair of siblings, keeps it at most (ranked replies - 1) pairs a turn. A
  sibling with the same text as the best reply gives no pair (counted).
- Texts are kept exactly, stripped of surrounding white space only.
- The train/val split is by tree: split_rows (data/convert.py; --val_fraction or --val_size,
  --seed) picks the val trees, and a tree's conversation and its pairs go to the same split, so
  the val files hold whole trees that training never saw.
Expect: the ready export holds 10,364 trees (88,838 messages) in 35 languages, by the dataset
card; --lang=en keeps roughly half of the trees (an estimate, not counted here without the file:
the rest are printed as "other language"). Nearly every English tree should be kept, as the card
says the ready export has its deleted and spam messages taken out already. Each kept tree gives
one conversation; the number of pairs depends on how many assistant replies were ranked, and is
printed per file.
"""

import os
import sys
from dataclasses import dataclass
from typing import Optional

# the repo root, two folders up, so that this runs as `python data/<name>/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import UserError, parse_config, run_main  # noqa: E402
from data.convert import convert_file, fetch, split_rows  # noqa: E402
from data_formats import write_jsonl  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))
FILE = "2023-04-12_oasst_ready.trees.jsonl.gz"
URL = f"https://huggingface.co/datasets/OpenAssistant/oasst1/resolve/main/{FILE}"
ROLES = {"prompter": "user", "assistant": "assistant"}
READY = "ready_for_export"


@dataclass
class Config:
    input: Optional[str] = None  # local *.trees.jsonl or .jsonl.gz (comma-separated: several, pooled); None: download
    lang: str = "en"  # comma-separated languages of the prompts to keep (en, es, de, pt-BR, ...); all: every one
    out_dir: Optional[str] = None  # where the four .jsonl files go; None: this script's folder
    val_fraction: float = 0.02  # share of the trees whose conversation and pairs go to the val files
    val_size: Optional[int] = None  # exact number of val trees (wins over val_fraction)
    seed: int = 1337  # seed of the shuffle that picks the val trees


# ----------------------------------------------------------------------------- messages


def parse_langs(text):
    """The set of languages --lang keeps (lower case, as pt-BR may be spelt either way), or None
    for every language."""
    langs = {s.strip().lower() for s in text.split(",") if s.strip()}
    if not langs:
        raise UserError(f"--lang={text}: expected language codes such as en or en,de, or all")
    return None if "all" in langs else langs


def check_message(message, where):
    """message, if the fields the converter reads have usable types; ValueError("bad message: ...")
    otherwise. A field left out counts as null, as the export omits null fields (a leaf may have
    no 'replies', an unranked reply no 'rank')."""
    if not isinstance(message, dict):
        raise ValueError(f"bad message: {where} is not an object")
    name = message.get("message_id") or where
    if not isinstance(message.get("text"), str):
        raise ValueError(f"bad message: {name} has no text string")
    if message.get("role") not in ROLES:
        raise ValueError(f"bad message: {name} has role {message.get('role')!r}, expected prompter or assistant")
    if not isinstance(message.get("replies") or [], list):
        raise ValueError(f"bad message: {name} has replies that are not a list")
    rank = message.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
        raise ValueError(f"bad message: {name} has rank {rank!r}, expected a whole number or null")
    return message


def removed(message):
    """Why a message is left out with its replies (deleted, failed review, no text); None if it is kept."""
    if message.get("deleted"):
        return "deleted"
    if message.get("review_result") is False:
        return "failed review"
    if not message["text"].strip():
        return "empty text"
    return None


def usable_replies(message):
    """The replies of a message that are well formed, not removed and in the other role."""
    replies = []
    for i, reply in enumerate(message.get("replies") or [], 1):
        check_message(reply, f"reply {i} of {message.get('message_id') or 'a message'}")
        if reply["role"] != message["role"] and not removed(reply):
            replies.append(reply)
    return replies


def best_reply(replies):
    """The reply the labellers liked best (lowest rank, the first of equals); the first reply
    when none is ranked."""
    ranked = [r for r in replies if r.get("rank") is not None]
    return min(ranked, key=lambda r: r["rank"]) if ranked else replies[0]


def as_message(message):
    return {"role": ROLES[message["role"]], "content": message["text"].strip()}


# ----------------------------------------------------------------------------- trees


def preference_pairs(history, best, replies):
    """(pairs, same-text count) at one user turn: the best assistant reply against each ranked
    sibling with a worse rank, worst last. history ends with the user turn they answer."""
    if best.get("rank") is None:
        return [], 0  # nothing was ranked here: no preference to learn
    worse = sorted((r for r in replies if r.get("rank") is not None and r["rank"] > best["rank"]),
                   key=lambda r: r["rank"])
    chosen = as_message(best)
    pairs, same = [], 0
    for reply in worse:
        rejected = as_message(reply)
        if rejected["content"] == chosen["content"]:
            same += 1
            continue
        pairs.append({"prompt": list(history), "chosen": [chosen], "rejected": [rejected]})
    return pairs, same


def to_tree(row, langs=None):
    """One tree line as {"conversation": {"messages": top chain}, "pairs": [...], "same": count of
    siblings skipped for having the best reply's text}; ValueError("reason: detail") if the tree
    gives no conversation. langs: the languages to keep (None: all)."""
    if not isinstance(row, dict) or not isinstance(row.get("prompt"), dict):
        raise ValueError("not a tree: expected an object with a 'prompt' message")
    state = row.get("tree_state", READY)
    if state != READY:
        raise ValueError(f"not ready: tree_state is {state!r}")
    prompt = check_message(row["prompt"], "the prompt")
    lang = prompt.get("lang")
    if langs is not None and str(lang).lower() not in langs:
        raise ValueError(f"other language: {lang}")
    if prompt["role"] != "prompter":
        raise ValueError(f"bad message: the prompt has role {prompt['role']!r}, expected prompter")
    if removed(prompt):
        raise ValueError(f"prompt removed: {removed(prompt)}")
    chain, pairs, same = [], [], 0
    node = prompt
    while True:
        chain.append(as_message(node))
        replies = usable_replies(node)
        if not replies:
            break
        best = best_reply(replies)
        if node["role"] == "prompter":
            found, skipped = preference_pairs(chain, best, replies)
            pairs += found
            same += skipped
        node = best
    if chain[-1]["role"] == "user":  # unanswered: nothing to learn from it
        chain.pop()
    if not chain:
        raise ValueError("no assistant reply: no usable assistant message answers the prompt")
    return {"conversation": {"messages": chain}, "pairs": pairs, "same": same}


# ----------------------------------------------------------------------------- files


def input_files(cfg):
    """The tree files to read: --input's, or the OASST1 ready export (downloaded once)."""
    if not cfg.input:
        return [fetch(URL, os.path.join(HERE, "downloads", FILE))]
    paths = [p for p in cfg.input.split(",") if p]
    if not paths:
        raise UserError(f"--input={cfg.input}: expected a file name")
    return paths


def convert_files(paths, langs):
    """The kept trees of every file, in order, with each file's summary printed."""
    trees = []
    for path in paths:
        converted, report = convert_file(path, lambda row: to_tree(row, langs))
        print(report.summary())
        pairs = sum(len(t["pairs"]) for t in converted)
        with_pairs = sum(bool(t["pairs"]) for t in converted)
        same = sum(t["same"] for t in converted)
        print(f"  rows are trees; the kept ones give {len(converted)} conversations and {pairs} preference pairs "
              f"(from {with_pairs} trees); {same} worse-ranked replies had the best reply's text and gave no pair")
        trees += converted
    return trees


def save(out_dir, train, val):
    """Write sft_{train,val}.jsonl and prefs_{train,val}.jsonl (each atomically) and say what went where."""
    for split, trees in (("train", train), ("val", val)):
        path = os.path.join(out_dir, f"sft_{split}.jsonl")
        write_jsonl(path, [t["conversation"] for t in trees])
        print(f"wrote {len(trees):,} conversations to {path}")
        path = os.path.join(out_dir, f"prefs_{split}.jsonl")
        pairs = [p for t in trees for p in t["pairs"]]
        write_jsonl(path, pairs)
        note = " (none of these trees has ranked assistant replies)" if trees and not pairs else ""
        print(f"wrote {len(pairs):,} pairs from {sum(bool(t['pairs']) for t in trees):,} trees to {path}{note}")


def main(argv=None):
    cfg = parse_config(Config, argv, description=__doc__)
    langs = parse_langs(cfg.lang)  # before any download: a bad flag should not cost one
    trees = convert_files(input_files(cfg), langs)
    train, val = split_rows(trees, cfg.val_fraction, cfg.val_size, cfg.seed)
    save(cfg.out_dir or HERE, train, val)


if __name__ == "__main__":
    run_main(main)

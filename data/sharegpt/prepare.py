"""
ShareGPT-style conversations -> SFT conversations (train.jsonl, val.jsonl).

Source: any file in the ShareGPT layout that many chat datasets use (ShareGPT dumps, Vicuna's
training data, OpenHermes, SlimOrca, ...); there is no single canonical copy, so pass your own:

    python data/sharegpt/prepare.py --input=sharegpt.json     # a JSON list, or
    python data/sharegpt/prepare.py --input=sharegpt.jsonl    # one object a line (.gz works too)

Each row {"conversations": [{"from": ..., "value": ...}, ...]} becomes {"messages": [...]}, with the
speakers mapped: human/user -> user, gpt/assistant/chatgpt -> assistant, system -> system. Texts
are stripped of surrounding white space. A row is skipped and reported (with its line, and row
number in a JSON list) when it is not such an object, a turn has another speaker or a value that
is not a string, or no assistant turn has text. User turns at the end of a conversation got no
reply and teach nothing (the loss is on assistant tokens only): they are dropped, the rest of the
row is kept, and the summary counts how many conversations lost such turns.
Expect: as many conversations as the file has rows, less the malformed ones; the split into
train.jsonl and val.jsonl follows data/convert.py's split_rows (--val_fraction or --val_size, --seed).
"""

import os
import sys
from dataclasses import dataclass
from typing import Optional

# the repo root, two folders up, so that this runs as `python data/<name>/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import UserError, parse_config, run_main  # noqa: E402
from data.convert import convert_file, save_splits, split_rows  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "chatgpt": "assistant", "system": "system"}


@dataclass
class Config:
    input: Optional[str] = None  # the ShareGPT file: a JSON list or JSONL (.gz too); required
    out_dir: Optional[str] = None  # where train.jsonl and val.jsonl go; None: this script's folder
    val_fraction: float = 0.02  # share of the conversations that go to val.jsonl
    val_size: Optional[int] = None  # exact number of val conversations (wins over val_fraction)
    seed: int = 1337  # seed of the shuffle that picks the val conversations


def to_messages(row):
    """A ShareGPT row as a list of messages; ValueError("reason: detail") if it is malformed."""
    if not isinstance(row, dict) or not isinstance(row.get("conversations"), list):
        raise ValueError("not a conversation: expected an object with a 'conversations' list")
    messages = []
    for i, turn in enumerate(row["conversations"], 1):
        speaker = turn.get("from") if isinstance(turn, dict) else None
        if speaker not in ROLES:
            raise ValueError(f"unknown speaker: {speaker!r} in turn {i}")
        if not isinstance(turn.get("value"), str):
            raise ValueError(f"bad turn: the value of turn {i} is not a string")
        messages.append({"role": ROLES[speaker], "content": turn["value"].strip()})
    if not any(m["role"] == "assistant" and m["content"] for m in messages):
        raise ValueError("no assistant reply: no assistant turn has text")
    return messages


def drop_unanswered_turns(messages):
    """The conversation up to its last assistant turn: what follows (user turns) got no reply."""
    end = len(messages)
    while messages[end - 1]["role"] != "assistant":
        end -= 1
    return messages[:end]


def main(argv=None):
    cfg = parse_config(Config, argv, description=__doc__)
    if not cfg.input:
        raise UserError("pass the ShareGPT file with --input=PATH (a JSON list or JSONL); see --help")
    conversations, report = convert_file(cfg.input, to_messages)
    answered = [drop_unanswered_turns(m) for m in conversations]
    print(report.summary())
    trimmed = sum(len(a) < len(m) for a, m in zip(answered, conversations))
    print(f"  {trimmed} kept conversations ended with unanswered turns; those turns were dropped")
    train, val = split_rows([{"messages": m} for m in answered], cfg.val_fraction, cfg.val_size, cfg.seed)
    save_splits(cfg.out_dir or HERE, train, val)


if __name__ == "__main__":
    run_main(main)

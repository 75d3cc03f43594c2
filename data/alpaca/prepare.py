"""
Stanford Alpaca -> SFT conversations (train.jsonl, val.jsonl).

Source: https://github.com/tatsu-lab/stanford_alpaca, the file
https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json: a JSON list of
52,002 rows {"instruction", "input", "output"} written by text-davinci-003.

    python data/alpaca/prepare.py                       # downloads to data/alpaca/downloads/ once
    python data/alpaca/prepare.py --input=alpaca_data.json --system="You are a helpful assistant."

Each row becomes {"messages": [user, assistant]}: the user message is the instruction, followed by
the input after a blank line when the input is not empty; the assistant message is the output.
Texts are stripped of surrounding white space. A row that is not an object, or whose instruction
or output is missing, empty or not a string, is skipped and reported with its line and row number.
Expect: the file's 52,002 rows kept (less any with an empty output), about 50,962 of them in
train.jsonl and 1,040 in val.jsonl.

The train/val split is the same in every converter here: val.jsonl gets round(val_fraction * rows)
rows but at least one, or exactly --val_size rows; never all of them (train keeps one at least).
The val rows are chosen by a shuffle seeded with --seed; both files keep the source order.
"""

import os
import sys
from dataclasses import dataclass
from typing import Optional

# the repo root, two folders up, so that this runs as `python data/<name>/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import parse_config, run_main  # noqa: E402
from data.convert import convert_file, fetch, save_splits, split_rows  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
URL = "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json"


@dataclass
class Config:
    input: Optional[str] = None  # alpaca_data.json (a JSON list, or JSONL); None: download it once to downloads/
    out_dir: Optional[str] = None  # where train.jsonl and val.jsonl go; None: this script's folder
    system: str = ""  # a system message put first in every conversation; empty: none
    val_fraction: float = 0.02  # share of the rows that go to val.jsonl
    val_size: Optional[int] = None  # exact number of val rows (wins over val_fraction)
    seed: int = 1337  # seed of the shuffle that picks the val rows


# ----------------------------------------------------------------------------- Alpaca


def text_field(row, key):
    """row[key], stripped; a ValueError unless it is a non-empty string."""
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        problem = "missing" if key not in row else "not a string" if not isinstance(value, str) else "empty"
        raise ValueError(f"bad {key}: {problem}")
    return value.strip()


def to_conversation(row, system=""):
    """One Alpaca row as {"messages": [system (if given), user, assistant]}."""
    if not isinstance(row, dict):
        raise ValueError(f"not an object: got {type(row).__name__}")
    instruction, output = text_field(row, "instruction"), text_field(row, "output")
    extra = row.get("input", "")  # most rows have an empty input; some files leave it out
    if not isinstance(extra, str):
        raise ValueError("bad input: not a string")
    user = instruction + ("\n\n" + extra.strip() if extra.strip() else "")
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def main(argv=None):
    cfg = parse_config(Config, argv, description=__doc__)
    path = cfg.input or fetch(URL, os.path.join(HERE, "downloads", "alpaca_data.json"))
    conversations, report = convert_file(path, lambda row: to_conversation(row, cfg.system))
    print(report.summary())
    train, val = split_rows(conversations, cfg.val_fraction, cfg.val_size, cfg.seed)
    save_splits(cfg.out_dir or HERE, train, val)


if __name__ == "__main__":
    run_main(main)

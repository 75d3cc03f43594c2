"""
Anthropic HH-RLHF -> preference pairs (train.jsonl, val.jsonl).

Source: https://github.com/anthropics/hh-rlhf (Bai et al. 2022), one folder per subset, each with
gzipped JSONL files train.jsonl.gz and test.jsonl.gz, e.g.
https://raw.githubusercontent.com/anthropics/hh-rlhf/master/helpful-base/train.jsonl.gz

    python data/hh_rlhf/prepare.py                                  # helpful-base + harmless-base
    python data/hh_rlhf/prepare.py --subsets=helpful-base,helpful-online
    python data/hh_rlhf/prepare.py --input=train.jsonl.gz,test.jsonl.gz   # local files: TRAIN,VAL
    python data/hh_rlhf/prepare.py --input=pairs.jsonl               # one local file, split here

Downloads go to data/hh_rlhf/downloads/<subset>/ (once). Every subset's train.jsonl.gz goes to
train.jsonl and its test.jsonl.gz to val.jsonl. With --input, a pair of files is used the same
way; a single file is split like data/convert.py's split_rows does (--val_fraction or --val_size, --seed).

Each line is {"chosen": transcript, "rejected": transcript}, a transcript being
"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: ...": the same dialogue with a
different last Assistant turn. It becomes TRL's conversational preference format:
{"prompt": [every turn before the last Assistant turn, as user/assistant messages],
 "chosen": [{"role": "assistant", "content": chosen's last reply}], "rejected": [... rejected's]}.
Texts are stripped of surrounding white space. Skipped and counted, with their file:line: lines
that are not JSON or lack a key, transcripts that do not start with a Human turn or do not end
with a non-empty Assistant turn, pairs whose turns before the last reply differ, pairs whose last
reply itself holds a "\\n\\nHuman:" or "\\n\\nAssistant:" turn marker (it cannot be told apart from a
real turn), and pairs whose two replies are the same (nothing to prefer).
Expect (rows in the files; a handful are skipped): helpful-base 43,835 train / 2,354 test,
harmless-base 42,537 / 2,312, helpful-online 22,007 / 1,137, helpful-rejection-sampled 52,421 / 2,749.
"""

import os
import re
import sys
from dataclasses import dataclass
from typing import Optional

# the repo root, two folders up, so that this runs as `python data/<name>/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import UserError, parse_config, run_main  # noqa: E402
from data.convert import convert_file, fetch, save_splits, split_rows  # noqa: E402


HERE = os.path.dirname(os.path.abspath(__file__))
URL = "https://raw.githubusercontent.com/anthropics/hh-rlhf/master/{subset}/{split}.jsonl.gz"
SUBSETS = ("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled")
# a turn starts after a blank line with the speaker's name (the space after ':' is missing when the
# turn is empty, which then reads as an empty turn rather than as text of the turn before)
TURN = re.compile(r"\n\n(Human|Assistant): ?")
ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclass
class Config:
    input: Optional[str] = None  # local .jsonl or .jsonl.gz: TRAIN,VAL or one file to split; None: download
    subsets: str = "helpful-base,harmless-base"  # comma-separated HH-RLHF folders to download
    out_dir: Optional[str] = None  # where train.jsonl and val.jsonl go; None: this script's folder
    val_fraction: float = 0.02  # with a single --input file: share of the pairs that go to val.jsonl
    val_size: Optional[int] = None  # with a single --input file: exact number of val pairs
    seed: int = 1337  # seed of the shuffle that picks the val pairs


def split_transcript(text, key):
    """(prompt messages, last Assistant message) of one transcript; ValueError if it has no such shape."""
    if not isinstance(text, str):
        raise ValueError(f"not a preference pair: '{key}' is not a string")
    before, *parts = TURN.split(text)  # [before, speaker, text, speaker, text, ...]
    if before.strip() or not parts or parts[0] != "Human":
        raise ValueError(f"unparseable {key}: does not start with a Human turn")
    turns = [{"role": ROLES[who], "content": said.strip()} for who, said in zip(parts[::2], parts[1::2])]
    if turns[-1]["role"] != "assistant":
        raise ValueError(f"unparseable {key}: does not end with an Assistant turn")
    if not turns[-1]["content"]:
        raise ValueError(f"unparseable {key}: the last Assistant turn is empty")
    return turns[:-1], turns[-1]


def to_preference(row):
    """One HH-RLHF row as {"prompt", "chosen", "rejected"}; ValueError("reason: detail") if unusable."""
    if not isinstance(row, dict) or "chosen" not in row or "rejected" not in row:
        raise ValueError("not a preference pair: expected an object with 'chosen' and 'rejected'")
    prompt, chosen = split_transcript(row["chosen"], "chosen")
    rejected_prompt, rejected = split_transcript(row["rejected"], "rejected")
    if prompt != rejected_prompt:
        raise ValueError(why_prompts_differ(row["chosen"], row["rejected"]))
    if chosen == rejected:
        raise ValueError("same reply: chosen and rejected end with the same Assistant turn")
    return {"prompt": prompt, "chosen": [chosen], "rejected": [rejected]}


def why_prompts_differ(chosen, rejected):
    """The reason for a pair whose parsed prompts differ. Either the dialogues really differ, or
    they agree up to the start of the final reply and one final reply itself holds a turn marker
    ("\\n\\nHuman: ..."), which the split reads as extra turns."""
    shared = chosen[:len(os.path.commonprefix([chosen, rejected]))]
    replies_start = [m.end() for m in TURN.finditer(shared) if m.group(1) == "Assistant"]
    for key, text in (("chosen", chosen), ("rejected", rejected)):
        if replies_start and TURN.search(text[replies_start[-1]:]):
            return f"turn marker in a reply: the final reply of {key} holds a Human or Assistant turn marker"
    return "different prompts: chosen and rejected differ before their last Assistant turn"


def input_files(cfg):
    """(train files, val files) from --input, or from --subsets (downloaded once); no val files
    means a single train file that main() splits."""
    if cfg.input:
        paths = [p for p in cfg.input.split(",") if p]
        if not 1 <= len(paths) <= 2:
            raise UserError(f"--input={cfg.input}: expected one file, or two (TRAIN,VAL)")
        return paths[:1], paths[1:]
    subsets = [s.strip() for s in cfg.subsets.split(",") if s.strip()]
    if not subsets or any(s not in SUBSETS for s in subsets):
        raise UserError(f"--subsets={cfg.subsets}: expected names from {', '.join(SUBSETS)}")
    return [download(s, "train") for s in subsets], [download(s, "test") for s in subsets]


def download(subset, split):
    """The path of a subset's train or test file, downloaded first if missing."""
    path = os.path.join(HERE, "downloads", subset, f"{split}.jsonl.gz")
    return fetch(URL.format(subset=subset, split=split), path)


def convert_files(paths):
    """The preference pairs of every file, in order, with each file's summary printed."""
    pairs = []
    for path in paths:
        converted, report = convert_file(path, to_preference)
        print(report.summary())
        pairs += converted
    return pairs


def main(argv=None):
    cfg = parse_config(Config, argv, description=__doc__)
    train_files, val_files = input_files(cfg)
    train = convert_files(train_files)
    if val_files:
        val = convert_files(val_files)
    else:
        train, val = split_rows(train, cfg.val_fraction, cfg.val_size, cfg.seed)
    save_splits(cfg.out_dir or HERE, train, val)


if __name__ == "__main__":
    run_main(main)

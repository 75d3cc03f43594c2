"""
GSM8K (Cobbe et al. 2021) -> RL prompts with a verifiable answer, an eval file, SFT conversations.

Source: https://github.com/openai/grade-school-math, two JSONL files,
https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/train.jsonl
(7,473 problems) and test.jsonl (1,319), one {"question", "answer"} per line. The answer is the
worked solution, with calculator annotations such as <<48/2=24>>, ending in a line "#### 72" that
holds the final number.

    python data/gsm8k/prepare.py                                  # downloads both files once
    python data/gsm8k/prepare.py --input=train.jsonl,test.jsonl   # local copies: TRAIN,TEST

Writes to data/gsm8k/ (or --out_dir):
  rl_prompts.jsonl  train problems: {"prompt": [the question], "info": {"category": "math", "answer": "72"}}
  eval.jsonl        test problems, the same plus "suite": "gsm8k" (what eval.py reports)
  sft_train.jsonl   train problems as {"messages": [question, solution]}, the annotations removed
  sft_val.jsonl     test problems the same way: a val loss, never trained on
The final number loses its commas ("#### 1,200" -> "1200"). The verifier (data/world/checkers.py,
category "math") reads the last number of a reply and compares it with that one as a number.
Skipped and counted, with their file:line: lines that are not JSON, rows whose question or answer
is missing or not a string, and answers whose last line is not "#### " and one number.
Expect: every row kept, 7,473 RL prompts and SFT conversations, 1,319 eval rows.
"""

import os
import re
import sys
from dataclasses import dataclass
from typing import Optional

# the repo root, two folders up, so that this runs as `python data/<name>/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import UserError, parse_config, run_main  # noqa: E402
from data.convert import convert_file, fetch  # noqa: E402
from data_formats import write_jsonl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/{split}.jsonl"
FINAL_LINE = re.compile(r"\n#### *(-?[\d,]*\.?\d+) *$")  # the solution's last line: "#### 1,200"
ANNOTATION = re.compile(r"<<[^<>]*>>")  # the calculator annotations of the solutions: <<48/2=24>>


@dataclass
class Config:
    input: Optional[str] = None  # local TRAIN,TEST JSONL files; None: download both once to downloads/
    out_dir: Optional[str] = None  # where the four files go; None: this script's folder


def parse_problem(row):
    """(question, solution without annotations, final number) of one GSM8K row; ValueError
    ("reason: detail") when the row has another shape."""
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or \
            not isinstance(row.get("answer"), str):
        raise ValueError("not a problem: expected an object with string 'question' and 'answer'")
    question, answer = row["question"].strip(), row["answer"].strip()
    final = FINAL_LINE.search("\n" + answer)
    if not question or not final:
        raise ValueError(f"no final answer: the answer does not end with a line '#### N' ({answer[-30:]!r})")
    number = final.group(1).replace(",", "")
    return question, ANNOTATION.sub("", answer), number


def rl_row(problem, suite=None):
    question, _, number = problem
    row = {"prompt": [{"role": "user", "content": question}], "info": {"category": "math", "answer": number}}
    return {"suite": suite, **row} if suite else row


def sft_row(problem):
    question, solution, _ = problem
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]}


def main(argv=None):
    cfg = parse_config(Config, argv, description=__doc__)
    if cfg.input:
        paths = [p for p in cfg.input.split(",") if p]
        if len(paths) != 2:
            raise UserError(f"--input={cfg.input}: expected two files, TRAIN,TEST")
    else:
        paths = [fetch(URL.format(split=split), os.path.join(HERE, "downloads", f"{split}.jsonl"))
                 for split in ("train", "test")]
    (train, train_report), (test, test_report) = [convert_file(path, parse_problem) for path in paths]
    print(train_report.summary())
    print(test_report.summary())
    out = cfg.out_dir or HERE
    files = {"rl_prompts.jsonl": [rl_row(p) for p in train], "eval.jsonl": [rl_row(p, "gsm8k") for p in test],
             "sft_train.jsonl": [sft_row(p) for p in train], "sft_val.jsonl": [sft_row(p) for p in test]}
    for name, rows in files.items():
        write_jsonl(os.path.join(out, name), rows)
        print(f"wrote {len(rows):,} rows to {os.path.join(out, name)}")


if __name__ == "__main__":
    run_main(main)

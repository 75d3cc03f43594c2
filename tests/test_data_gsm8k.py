"""data/gsm8k: GSM8K's public files -> RL prompts, an eval file and SFT conversations, on rows
written here in the public files' shape (never the network); the final-number verifier."""
import json
import os
import subprocess
import sys

import pytest

from conftest import GSM8K_TEST, GSM8K_TRAIN, ROOT, write_gsm8k_files
from data.world.checkers import score
from evaluation import gold_reward
from data_formats import load_conversations
from tokenizer import Tokenizer


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def prepare(*args, cwd):
    """python data/gsm8k/prepare.py ARGS, run from cwd (not the repo root: no path may depend on it)."""
    script = os.path.join(ROOT, "data", "gsm8k", "prepare.py")
    return subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_public_files_become_prompts_eval_rows_and_chats(tmp_path):
    bad = ['{"question": "no final line", "answer": "It is 4."}', "not json",
           '{"question": "x", "answer": 7}', '{"question": "words", "answer": "Four.\\n#### four"}']
    train, test = write_gsm8k_files(tmp_path / "src", extra_train_lines=bad)
    done = prepare(f"--input={train},{test}", f"--out_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    prompts, evals = read_rows(tmp_path / "out" / "rl_prompts.jsonl"), read_rows(tmp_path / "out" / "eval.jsonl")
    assert [r["info"] for r in prompts] == [{"category": "math", "answer": a} for a in ("72", "1200", "-3")]
    assert prompts[0]["prompt"] == [{"role": "user", "content": GSM8K_TRAIN[0]["question"]}]
    assert [(r["suite"], r["info"]["answer"]) for r in evals] == [("gsm8k", "7"), ("gsm8k", "17.50")]
    # the SFT replies are the worked solutions without the calculator annotations
    chats = read_rows(tmp_path / "out" / "sft_train.jsonl")
    assert chats[0]["messages"][1]["content"] == ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 "
                                                  "clips altogether in April and May.\n#### 72")
    assert len(read_rows(tmp_path / "out" / "sft_val.jsonl")) == len(GSM8K_TEST)
    examples, _ = load_conversations(str(tmp_path / "out" / "sft_train.jsonl"), Tokenizer({"kind": "byte"}), 1024)
    assert len(examples) == 3  # the chats read back through the SFT data contract
    # the skipped lines are counted with their file:line
    assert "kept 3 rows, skipped 4" in done.stdout
    for line in (4, 5, 6, 7):
        assert f"train.jsonl:{line}:" in done.stdout
    assert "no final answer" in done.stdout and "invalid JSON" in done.stdout and "not a problem" in done.stdout


def test_a_wrong_input_is_one_error_line(tmp_path):
    done = prepare("--input=only_one.jsonl", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("error: --input=only_one.jsonl: expected two files")
    train, _ = write_gsm8k_files(tmp_path, train=[], extra_train_lines=["[]"])
    done = prepare(f"--input={train},{train}", f"--out_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert done.returncode == 1 and "no valid row" in done.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("reply, answer, right", [
    ("Natalia sold 24 clips in May, so 48+24 = 72.\n#### 72", "72", True),
    ("The answer is 72.00", "72", True),  # compared as numbers
    ("72 clips in April, then 73 in May.", "72", False),  # the last number is the answer
    ("I do not know.", "72", False),
    ("#### 1,200", "1200", True),  # commas are read away
    ("He is short -3 dollars.", "-3", True),
    ("It costs 17.5 dollars.", "17.50", True),
])
def test_the_verifier_reads_the_final_number(reply, answer, right):
    row = {"info": {"category": "math", "answer": answer}}
    assert score(row, reply)["math"] == int(right)
    assert gold_reward(row, reply) == (1.0 if right else -1.0)

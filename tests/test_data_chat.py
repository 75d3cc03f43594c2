"""data/alpaca, data/sharegpt, data/hh_rlhf: converters of real chat datasets to the JSONL contracts,
run on small hand-written fixtures (never the network), mostly through their real command line."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from cli import UserError
from data import convert
from data.alpaca import prepare as alpaca
from data.hh_rlhf import prepare as hh_rlhf
from data.sharegpt import prepare as sharegpt
from tokenizer import Tokenizer, check_messages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(name, *args, cwd):
    """python data/<name>/prepare.py ARGS, run from cwd (not the repo root, so no path may depend on it)."""
    script = os.path.join(ROOT, "data", name, "prepare.py")
    return subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_splits(out_dir):
    return read_rows(out_dir / "train.jsonl"), read_rows(out_dir / "val.jsonl")


def as_set(rows):
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def assert_trainable(rows):
    """Every conversation follows the contract and gives the loss at least one assistant token."""
    tokenizer = Tokenizer({"kind": "byte"})
    for row in rows:
        if "messages" in row:
            conversations = [row["messages"]]
        else:
            assert [m["role"] for m in row["chosen"] + row["rejected"]] == ["assistant", "assistant"]
            conversations = [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]
        for messages in conversations:
            check_messages(messages)
            ids, mask = tokenizer.render_chat(messages)
            assert len(ids) == len(mask) and any(mask)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# ----------------------------------------------------------------------------- shared helpers


def test_json_list_rows_know_their_lines(tmp_path):
    path = tmp_path / "list.json"
    path.write_text('[\n  {\n    "instruction": "a",\n    "output": "b"\n  },\n  {"instruction": "c"}\n]\n')
    rows = convert.read_rows(str(path), report=None)  # a JSON list reports nothing: it is valid or an error
    assert rows == [("2 (row 1)", {"instruction": "a", "output": "b"}), ("6 (row 2)", {"instruction": "c"})]
    path.write_text('[\n {"a": 1},\n {"a": 2}\n {"a": 3}\n]')
    with pytest.raises(UserError, match=r"list.json:4: invalid JSON \(expected ',' or ']'"):
        convert.read_rows(str(path), report=None)


def test_split_is_seeded_sized_by_the_rule_and_keeps_order():
    rows = list(range(100))
    train, val = convert.split_rows(rows, 0.1, None, seed=1)
    assert len(val) == 10 and sorted(train + val) == rows
    assert train == sorted(train) and val == sorted(val)
    assert convert.split_rows(rows, 0.1, None, seed=1) == (train, val)
    assert convert.split_rows(rows, 0.1, None, seed=2) != (train, val)
    assert len(convert.split_rows(rows, 0.1, 3, seed=1)[1]) == 3  # --val_size wins
    assert convert.split_rows(rows[:5], 0.01, None, seed=1)[1] != []  # at least one val row ...
    assert convert.split_rows(rows[:1], 0.5, None, seed=1) == ([0], [])  # ... but never all rows
    with pytest.raises(UserError, match="val_fraction"):
        convert.split_rows(rows, 1.0, None, seed=1)


def test_download_failure_says_to_pass_input(tmp_path):
    target = tmp_path / "downloads" / "alpaca_data.json"
    with pytest.raises(UserError, match=r"could not download .*--input=PATH"):
        convert.fetch("http://127.0.0.1:9/alpaca_data.json", str(target))  # nothing listens on port 9
    assert not target.exists()


@pytest.mark.parametrize("module", [alpaca, sharegpt, hh_rlhf])
def test_missing_input_is_a_clear_error(module, tmp_path):
    with pytest.raises(UserError, match=r"nothing.jsonl: no such file"):
        module.main([f"--input={tmp_path / 'nothing.jsonl'}", f"--out_dir={tmp_path}"])
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- Alpaca

ALPACA_ROWS = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    42,
    {"instruction": "  ", "output": "x"},
    {"instruction": "Say hi.", "output": ""},
    {"instruction": "Translate to French.", "input": " cat ", "output": " chat "},
    {"instruction": 7, "output": "x"},
]


def write_json_list(path, rows):
    """A JSON list with one row a line: row i (1-based) stands on line i + 1."""
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    return path


def test_alpaca_cli_converts_and_reports_malformed_rows(tmp_path):
    source = write_json_list(tmp_path / "alpaca_data.json", ALPACA_ROWS)
    out = tmp_path / "out"
    run = run_script("alpaca", f"--input={source}", f"--out_dir={out}", "--system=Be brief.", "--val_size=1",
                     cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"{source}: kept 3 rows, skipped 4" in run.stdout
    for where, reason in [("4 (row 3)", "not an object: got int"), ("5 (row 4)", "bad instruction: empty"),
                          ("6 (row 5)", "bad output: empty"), ("8 (row 7)", "bad instruction: not a string")]:
        assert f"{source}:{where}: {reason}" in run.stdout
    assert f"wrote 2 rows to {out / 'train.jsonl'}" in run.stdout

    train, val = read_splits(out)
    system = {"role": "system", "content": "Be brief."}
    assert (len(train), len(val)) == (2, 1)
    assert as_set(train + val) == as_set([
        {"messages": [system, user("Name a colour."), assistant("Blue.")]},
        {"messages": [system, user("Add the numbers.\n\n2 and 3"), assistant("5")]},
        {"messages": [system, user("Translate to French.\n\ncat"), assistant("chat")]},
    ])
    assert_trainable(train + val)


def test_alpaca_without_a_valid_row_fails_and_keeps_earlier_output(tmp_path):
    source = write_json_list(tmp_path / "bad.json", ALPACA_ROWS[2:5])
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("from an earlier run\n")
    run = run_script("alpaca", f"--input={source}", f"--out_dir={out}", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.startswith(f"error: {source}: no valid row") and "Traceback" not in run.stderr
    assert sorted(os.listdir(out)) == ["train.jsonl"]
    assert (out / "train.jsonl").read_text() == "from an earlier run\n"


# ----------------------------------------------------------------------------- ShareGPT


def turns(*pairs):
    return {"conversations": [{"from": who, "value": text} for who, text in pairs]}


SHAREGPT_LINES = [
    json.dumps(turns(("system", "You are terse."), ("human", "Hi"), ("gpt", "Hello."))),
    json.dumps(turns(("user", "2+2?"), ("chatgpt", "4"), ("human", "And 3+3?"))),  # last turn unanswered
    "",
    json.dumps(turns(("human", "Hi"), ("bing", "Hello"))),
    json.dumps(turns(("human", "Hi"), ("gpt", "  "))),
    '{"conversations": [{"from": "human", "value": "Hi"',
    '["not", "an", "object"]',
    json.dumps({"id": "x", **turns(("human", "Q"), ("assistant", "A"), ("user", "Q2"), ("gpt", "A2"))}),
    json.dumps(turns(("human", 5), ("gpt", "A"))),
]
SHAREGPT_EXPECTED = [
    {"messages": [{"role": "system", "content": "You are terse."}, user("Hi"), assistant("Hello.")]},
    {"messages": [user("2+2?"), assistant("4")]},
    {"messages": [user("Q"), assistant("A"), user("Q2"), assistant("A2")]},
]


def test_sharegpt_jsonl_maps_roles_and_reports_lines(tmp_path, capsys):
    source = tmp_path / "chats.jsonl"
    source.write_text("\n".join(SHAREGPT_LINES) + "\n")
    sharegpt.main([f"--input={source}", f"--out_dir={tmp_path}"])
    printed = capsys.readouterr().out
    assert f"{source}: kept 3 rows, skipped 5" in printed
    assert "1 kept conversations ended with unanswered turns" in printed
    for line, reason in [(4, "unknown speaker: 'bing' in turn 2"), (5, "no assistant reply"), (6, "invalid JSON"),
                         (7, "not a conversation"), (9, "bad turn: the value of turn 1 is not a string")]:
        assert f"{source}:{line}: {reason}" in printed
    train, val = read_splits(tmp_path)
    assert as_set(train + val) == as_set(SHAREGPT_EXPECTED) and len(val) == 1
    assert_trainable(train + val)


def test_sharegpt_json_list_through_the_cli(tmp_path):
    source = tmp_path / "chats.json"
    source.write_text(json.dumps([json.loads(line) for line in SHAREGPT_LINES[:2]], indent=2))
    run = run_script("sharegpt", f"--input={source}", f"--out_dir={tmp_path}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"{source}: kept 2 rows, skipped 0" in run.stdout
    train, val = read_splits(tmp_path)
    assert as_set(train + val) == as_set(SHAREGPT_EXPECTED[:2])


# ----------------------------------------------------------------------------- HH-RLHF


def pair(chosen, rejected):
    return json.dumps({"chosen": chosen, "rejected": rejected})


DIALOGUE = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And times 3?\n\nAssistant: "
HH_TRAIN = [
    pair(DIALOGUE + "12.", DIALOGUE + "7."),
    pair("\n\nHuman: Hi\n\nAssistant: Hello.", "\n\nHuman: Hi\n\nAssistant: Hello."),
    json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello."}),
    "{oops",
    pair("\n\nHuman: Hi", "\n\nHuman: Hi\n\nAssistant: Hello."),
    pair("\n\nHuman: A\n\nAssistant: x", "\n\nHuman: B\n\nAssistant: y"),
    pair("\n\nHuman: Tell me a joke.\n\nAssistant: A pun walks into a bar.",
         "\n\nHuman: Tell me a joke.\n\nAssistant: No."),
    pair(DIALOGUE + "12.", DIALOGUE + "36.\n\nHuman: thanks\n\nAssistant: You are welcome."),
]
HH_TEST = [
    pair("\n\nHuman: Hello?\n\nAssistant: Hi there.", "\n\nHuman: Hello?\n\nAssistant: What."),
    pair("\n\nHuman: Hi\n\nAssistant:", "\n\nHuman: Hi\n\nAssistant: Hello."),
    pair("\n\nAssistant: Hi\n\nHuman: x\n\nAssistant: y", "\n\nAssistant: Hi\n\nHuman: x\n\nAssistant: z"),
]


def write_gzip_lines(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_hh_rlhf_gzip_pair_splits_at_the_last_assistant_turn(tmp_path):
    train_file = write_gzip_lines(tmp_path / "train.jsonl.gz", HH_TRAIN)
    test_file = write_gzip_lines(tmp_path / "test.jsonl.gz", HH_TEST)
    out = tmp_path / "out"
    run = run_script("hh_rlhf", f"--input={train_file},{test_file}", f"--out_dir={out}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"{train_file}: kept 2 rows, skipped 6" in run.stdout
    assert f"{test_file}: kept 1 rows, skipped 2" in run.stdout
    # every skipped row's line, by reason (the full text of the first five problems follows)
    assert "1 x turn marker in a reply (line 8)" in run.stdout and "1 x different prompts (line 6)" in run.stdout
    for where, reason in [
            (f"{train_file}:2", "same reply"), (f"{train_file}:3", "not a preference pair"),
            (f"{train_file}:4", "invalid JSON"),
            (f"{train_file}:5", "unparseable chosen: does not end with an Assistant turn"),
            (f"{train_file}:6", "different prompts"),
            (f"{test_file}:2", "unparseable chosen: the last Assistant turn is empty"),
            (f"{test_file}:3", "unparseable chosen: does not start with a Human turn")]:
        assert f"{where}: {reason}" in run.stdout

    train, val = read_splits(out)
    assert train == [
        {"prompt": [user("What is 2+2?"), assistant("4."), user("And times 3?")],
         "chosen": [assistant("12.")], "rejected": [assistant("7.")]},
        {"prompt": [user("Tell me a joke.")],
         "chosen": [assistant("A pun walks into a bar.")], "rejected": [assistant("No.")]},
    ]
    assert val == [{"prompt": [user("Hello?")], "chosen": [assistant("Hi there.")], "rejected": [assistant("What.")]}]
    assert_trainable(train + val)


def test_hh_rlhf_single_plain_file_is_split_here(tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n".join(HH_TRAIN + HH_TEST[:1]) + "\n")
    hh_rlhf.main([f"--input={source}", f"--out_dir={tmp_path}", "--val_size=1"])
    assert f"{source}: kept 3 rows, skipped 6" in capsys.readouterr().out
    train, val = read_splits(tmp_path)
    assert (len(train), len(val)) == (2, 1)


def test_hh_rlhf_rejects_unknown_subsets():
    with pytest.raises(UserError, match="--subsets=helpful: expected names from helpful-base"):
        hh_rlhf.main(["--subsets=helpful"])

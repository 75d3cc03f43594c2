"""data/oasst: Open Assistant conversation trees -> SFT conversations and preference pairs, run on
small trees written here in the public export's shape (never the network), through main() and once
through the real command line."""
import gzip
import json
import os
import subprocess
import sys

import pytest

from cli import UserError
from data.oasst import prepare as oasst
from data_formats import load_conversations, load_preferences
from tokenizer import Tokenizer, check_messages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ("sft_train.jsonl", "sft_val.jsonl", "prefs_train.jsonl", "prefs_val.jsonl")


def run_script(*args, cwd):
    """python data/oasst/prepare.py ARGS, run from cwd (not the repo root, so no path may depend on it)."""
    script = os.path.join(ROOT, "data", "oasst", "prepare.py")
    return subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def read_outputs(out_dir):
    """{file name: rows} of the four output files."""
    return {name: read_rows(out_dir / name) for name in FILES}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# ----------------------------------------------------------------------------- trees in the export's shape


def message(role, text, *replies, rank=None, lang="en", deleted=False, review_result=True):
    """One MESSAGE with the export's fields; tree() fills in message_id and parent_id."""
    return {"message_id": None, "parent_id": None, "text": text, "role": role, "lang": lang,
            "review_count": 3, "review_result": review_result, "deleted": deleted, "rank": rank,
            "synthetic": False, "model_name": None, "emojis": {"+1": 2},
            "labels": {"spam": {"value": 0.0, "count": 3}, "quality": {"value": 0.75, "count": 3}},
            "replies": list(replies)}


def prompter(text, *replies, **fields):
    return message("prompter", text, *replies, **fields)


def reply(text, *replies, **fields):
    return message("assistant", text, *replies, **fields)


def without(msg, *keys):
    """The export leaves null fields out: a leaf may have no 'replies', an unranked reply no 'rank'."""
    for key in keys:
        del msg[key]
    return msg


def tree(name, prompt, state="ready_for_export"):
    """One line of *.trees.jsonl: the prompt with ids given top-down (parent_id links each reply)."""
    def number(msg, parent, path):
        msg["message_id"], msg["parent_id"] = f"{name}-{path}", parent
        for i, child in enumerate(msg.get("replies") or []):
            number(child, msg["message_id"], f"{path}.{i}")
    number(prompt, None, "0")
    return json.dumps({"message_tree_id": f"{name}-0", "tree_state": state, "prompt": prompt}, ensure_ascii=False)


# texts with what a converter could break: surrounding white space (stripped), inner line ends
# (CR LF, and U+2028, which str.splitlines() would split a JSONL line at), non-ASCII and emoji
Q1 = "  What is the capital of France?\nAnswer in one line, s'il vous plaît.  \n"
A_BEST = "Paris — la Ville Lumière 🗼.\r\nIt has been the capital since the 10th century.\u2028(Roughly.)"
Q2 = "And how many people live there?"
A2_BEST = "About 2.1 million in the city itself; über 12 million in the Île-de-France region."
JOKE = "Why did the chicken cross the road?\n\nTo get to the other side."

LINES = [
    # 1: ranked, two levels; the best replies are not listed first, so the rank decides, not the order
    tree("ranked", prompter(
        Q1,
        reply("Paris, I think.", rank=1),
        reply("Lyon.", rank=2, review_result=False),  # failed review: no pair
        reply(A_BEST,
              prompter("Why Paris?", reply("Because."), rank=1),
              prompter(Q2,
                       reply("About 2.1 million.", rank=1),
                       reply(A2_BEST, rank=0),
                       reply(f"  {A2_BEST}\n", rank=2),  # the best reply's text once stripped: no pair
                       reply("Deleted answer.", rank=3, deleted=True),
                       rank=0),
              rank=0),
        reply("Marseille?", rank=3))),
    # 2: nothing ranked: the first reply; the user turn after it got no reply and is dropped
    tree("unranked", prompter(
        "Tell me a joke.",
        reply(JOKE, without(prompter("Another one, please."), "replies", "rank")),
        without(reply("Knock knock."), "rank", "replies"))),
    # 3: another language
    tree("german", prompter("Wie spät ist es?", reply("Es ist fünf Uhr.", lang="de"), lang="de")),
    # 4: not JSON
    '{"message_tree_id": "broken", "prompt": {"text": "Hi',
    # 5: only the prompt
    tree("alone", prompter("Is anyone there?")),
    # 6: the prompt deleted
    tree("deleted", prompter("Spam spam spam.", reply("Sure."), deleted=True)),
    # 7: the only reply failed review
    tree("failed", prompter("Write a poem.", reply("No.", review_result=False))),
    # 8: one pair
    tree("prime", prompter("Name a prime number.", reply("9.", rank=1), reply("7 is prime.", rank=0))),
    # 9: a tree of the "all" export that never got ready
    tree("aborted", prompter("Hello?", reply("Hi."), rank=None), state="aborted_low_grade"),
]

Q1_TEXT = "What is the capital of France?\nAnswer in one line, s'il vous plaît."
EXPECTED_SFT = [
    {"messages": [user(Q1_TEXT), assistant(A_BEST), user(Q2), assistant(A2_BEST)]},
    {"messages": [user("Tell me a joke."), assistant(JOKE)]},
    {"messages": [user("Name a prime number."), assistant("7 is prime.")]},
]
EXPECTED_PREFS = [
    {"prompt": [user(Q1_TEXT)], "chosen": [assistant(A_BEST)], "rejected": [assistant("Paris, I think.")]},
    {"prompt": [user(Q1_TEXT)], "chosen": [assistant(A_BEST)], "rejected": [assistant("Marseille?")]},
    {"prompt": [user(Q1_TEXT), assistant(A_BEST), user(Q2)], "chosen": [assistant(A2_BEST)],
     "rejected": [assistant("About 2.1 million.")]},
    {"prompt": [user("Name a prime number.")], "chosen": [assistant("7 is prime.")], "rejected": [assistant("9.")]},
]
GERMAN_SFT = {"messages": [user("Wie spät ist es?"), assistant("Es ist fünf Uhr.")]}


def write_trees(path, lines=LINES):
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def assert_contract(outputs):
    """Every row is a well-formed conversation or pair, as sft.py, reward.py and dpo.py read them."""
    for name, rows in outputs.items():
        for row in rows:
            if name.startswith("sft"):
                assert list(row) == ["messages"]
                check_messages(row["messages"])
                assert row["messages"][0]["role"] == "user" and row["messages"][-1]["role"] == "assistant"
            else:
                assert list(row) == ["prompt", "chosen", "rejected"]
                assert [m["role"] for m in row["chosen"] + row["rejected"]] == ["assistant", "assistant"]
                assert row["prompt"][-1]["role"] == "user" and row["chosen"] != row["rejected"]
                check_messages(row["prompt"] + row["chosen"])
                check_messages(row["prompt"] + row["rejected"])


def assert_trees_stay_together(outputs):
    """A tree's conversation and pairs share a split: each pair's prompt is the start of a
    conversation in the same split and of none in the other."""
    for split, other in (("train", "val"), ("val", "train")):
        for pair in outputs[f"prefs_{split}.jsonl"]:
            def starts(row):
                return row["messages"][:len(pair["prompt"])] == pair["prompt"]
            assert any(starts(row) for row in outputs[f"sft_{split}.jsonl"])
            assert not any(starts(row) for row in outputs[f"sft_{other}.jsonl"])


# ----------------------------------------------------------------------------- tests


def test_top_chain_pairs_and_skips(tmp_path, capsys):
    source = write_trees(tmp_path / "trees.jsonl")
    oasst.main([f"--input={source}", f"--out_dir={tmp_path}", "--val_size=0"])
    printed = capsys.readouterr().out
    assert f"{source}: kept 3 rows, skipped 6" in printed
    for count, reason in [(2, "no assistant reply"), (1, "other language"), (1, "invalid JSON"),
                          (1, "prompt removed"), (1, "not ready")]:
        assert f"  {count} x {reason}" in printed
    for line, reason in [(3, "other language: de"), (4, "invalid JSON"),
                         (5, "no assistant reply: no usable assistant message answers the prompt"),
                         (6, "prompt removed: deleted"), (7, "no assistant reply")]:
        assert f"{source}:{line}: {reason}" in printed
    assert "the kept ones give 3 conversations and 4 preference pairs (from 2 trees); 1 worse-ranked replies had the best" in printed
    assert f"wrote 3 conversations to {tmp_path / 'sft_train.jsonl'}" in printed
    assert f"wrote 4 pairs from 2 trees to {tmp_path / 'prefs_train.jsonl'}" in printed

    outputs = read_outputs(tmp_path)
    assert outputs["sft_train.jsonl"] == EXPECTED_SFT
    assert outputs["prefs_train.jsonl"] == EXPECTED_PREFS
    assert outputs["sft_val.jsonl"] == [] and outputs["prefs_val.jsonl"] == []
    assert_contract(outputs)

    # texts byte-exact: the UTF-8 of every kept text (CR LF, U+2028, emoji included) is in the file
    raw = (tmp_path / "sft_train.jsonl").read_bytes()
    for text in (Q1_TEXT, A_BEST, A2_BEST, JOKE):
        assert json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8") in raw
    assert "\u2028".encode("utf-8") in raw and b"\\r\\n" in raw

    tokenizer = Tokenizer({"kind": "byte"})  # 4096: a context (block size) far longer than any row here
    conversations, report = load_conversations(str(tmp_path / "sft_train.jsonl"), tokenizer, 4096)
    assert len(conversations) == 3 and ": 3 conversations" in report and "dropped" not in report
    pairs, report = load_preferences(str(tmp_path / "prefs_train.jsonl"), tokenizer, 4096)
    assert len(pairs) == 4 and ": 4 pairs" in report and "cut" not in report and "dropped" not in report
    assert tokenizer.decode(pairs[2]["chosen"][0]).endswith(A2_BEST + "<|im_end|>")


def test_gzip_through_the_cli_with_every_language(tmp_path):
    source = write_trees(tmp_path / "2023-04-12_oasst_ready.trees.jsonl.gz")
    out = tmp_path / "out"
    run = run_script(f"--input={source}", f"--out_dir={out}", "--lang=all", "--val_size=1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"{source}: kept 4 rows, skipped 5" in run.stdout
    for line, reason in [(4, "invalid JSON"), (5, "no assistant reply"), (6, "prompt removed: deleted"),
                         (7, "no assistant reply"), (9, "not ready: tree_state is 'aborted_low_grade'")]:
        assert f"{source}:{line}: {reason}" in run.stdout
    outputs = read_outputs(out)
    sft = outputs["sft_train.jsonl"] + outputs["sft_val.jsonl"]
    prefs = outputs["prefs_train.jsonl"] + outputs["prefs_val.jsonl"]
    assert len(outputs["sft_val.jsonl"]) == 1
    assert sorted(map(json.dumps, sft)) == sorted(map(json.dumps, EXPECTED_SFT + [GERMAN_SFT]))
    assert sorted(map(json.dumps, prefs)) == sorted(map(json.dumps, EXPECTED_PREFS))
    assert f"wrote {len(outputs['sft_train.jsonl'])} conversations to {out / 'sft_train.jsonl'}" in run.stdout
    assert f"wrote {len(outputs['prefs_val.jsonl'])} pairs from " in run.stdout
    assert_contract(outputs)
    assert_trees_stay_together(outputs)


def test_a_tree_and_its_pairs_land_in_one_split(tmp_path):
    # 40 trees of three ranked replies (two pairs each), a follow-up under the best one
    lines = [tree(f"t{i}", prompter(f"Question {i}?",
                                    reply(f"Worse answer {i}.", rank=2),
                                    reply(f"Best answer {i}.", prompter(f"Follow-up {i}?"), rank=0),
                                    reply(f"Middle answer {i}.", rank=1)))
             for i in range(40)]
    source = write_trees(tmp_path / "many.trees.jsonl", lines)
    oasst.main([f"--input={source}", f"--out_dir={tmp_path}", "--val_fraction=0.25", "--seed=3"])
    outputs = read_outputs(tmp_path)
    assert [len(outputs[name]) for name in FILES] == [30, 10, 60, 20]
    assert_trees_stay_together(outputs)
    assert_contract(outputs)
    first = read_rows(tmp_path / "sft_val.jsonl")
    oasst.main([f"--input={source}", f"--out_dir={tmp_path}", "--val_fraction=0.25", "--seed=3"])
    assert read_rows(tmp_path / "sft_val.jsonl") == first  # seeded
    oasst.main([f"--input={source}", f"--out_dir={tmp_path}", "--val_fraction=0.25", "--seed=4"])
    assert read_rows(tmp_path / "sft_val.jsonl") != first


def test_missing_input_is_one_error_line(tmp_path):
    run = run_script(f"--input={tmp_path / 'nothing.trees.jsonl.gz'}", f"--out_dir={tmp_path / 'out'}", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr == f"error: {tmp_path / 'nothing.trees.jsonl.gz'}: no such file\n"
    assert not (tmp_path / "out").exists()


def test_bad_flags_and_no_usable_tree_are_errors(tmp_path):
    source = write_trees(tmp_path / "trees.jsonl")
    with pytest.raises(UserError, match="--lang=,: expected language codes"):
        oasst.main([f"--input={source}", f"--out_dir={tmp_path}", "--lang=,"])
    with pytest.raises(UserError, match="trees.jsonl: no valid row"):
        oasst.main([f"--input={source}", f"--out_dir={tmp_path}", "--lang=fr"])
    assert os.listdir(tmp_path) == ["trees.jsonl"]  # nothing written by a failed run


def test_tree_rules_one_by_one():
    # languages compare without case; a reply in its parent's role is not part of the thread
    row = json.loads(tree("x", prompter("Olá?", prompter("Olá de novo?"), reply("Oi!", rank=1), lang="pt-BR")))
    assert oasst.to_tree(row, oasst.parse_langs("PT-br"))["conversation"] == {"messages": [user("Olá?"),
                                                                                            assistant("Oi!")]}
    assert oasst.parse_langs("all,en") is None
    # ranked replies win over unranked ones; equal ranks: the first; no pair between equal ranks
    row = json.loads(tree("y", prompter("Q", reply("unranked"), reply("first best", rank=0),
                                        reply("second best", rank=0), reply("worst", rank=1))))
    converted = oasst.to_tree(row)
    assert converted["conversation"]["messages"] == [user("Q"), assistant("first best")]
    assert [p["rejected"] for p in converted["pairs"]] == [[assistant("worst")]]
    # a malformed message along the way is named
    row = json.loads(tree("z", prompter("Q", reply("A", rank="best"))))
    with pytest.raises(ValueError, match="bad message: z-0.0 has rank 'best'"):
        oasst.to_tree(row)

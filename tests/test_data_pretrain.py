"""The pretraining-data converters (data/shakespeare_char, data/shakespeare, data/fineweb), run on
small fixture files written here: never the network."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cli import UserError
from data.fineweb import prepare as fineweb
from data.shakespeare import prepare as shakespeare
from data.shakespeare_char import prepare as shakespeare_char
from tokenizer import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny Shakespeare-like, plus non-ASCII characters (more bytes than characters) and a Windows line
# ending: the split point is in characters, and the two parts must decode back to the text exactly
PLAY = "Prologue: café, naïve, 東京.\r\n" + ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
                                           "All:\nSpeak, speak.\n\n") * 30

DOCUMENTS = [
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis turns light into chemical energy.\nIt happens in chloroplasts.",
    "Ünïcödé text: 東京 and emoji 🙂 must round-trip.",
    "  Leading and trailing spaces are kept in JSONL.  ",
    "Text that looks like a special token, <|endoftext|>, stays plain text.",
    "Short.",
    "A longer document. " * 40,
    "The last document.",
]


def write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def read_streams(out_dir):
    """(meta.json, {split: token array}), checking the token counts against the file sizes."""
    with open(out_dir / "meta.json") as f:
        meta = json.load(f)
    streams = {}
    for split in ("train", "val"):
        path = out_dir / f"{split}.bin"
        assert meta[f"{split}_tokens"] == os.path.getsize(path) // np.dtype(meta["dtype"]).itemsize
        streams[split] = np.fromfile(path, dtype=meta["dtype"])
    return meta, streams


def documents_in(ids, tokenizer):
    """A stream of documents, each followed by <|endoftext|>, back to the documents' texts."""
    ids = ids.tolist()
    assert ids[-1] == tokenizer.eot, "the last document ends with <|endoftext|> too"
    docs, start = [], 0
    for end in [i for i, token in enumerate(ids) if token == tokenizer.eot]:
        docs.append(tokenizer.decode(ids[start:end]))
        start = end + 1
    return docs


def run_script(script, *args, cwd):
    """The real CLI, from another working directory."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


# ----------------------------------------------------------------------------- Tiny Shakespeare


def test_shakespeare_char_is_bytes_split_90_10(tmp_path):
    source = write(tmp_path / "play.txt", PLAY)
    shakespeare_char.main([f"--input={source}", f"--out_dir={tmp_path / 'out'}"])
    meta, streams = read_streams(tmp_path / "out")
    assert meta["tokenizer"] == {"kind": "byte"} and meta["dtype"] == "uint16" and meta["vocab_size"] == 260
    cut = int(len(PLAY) * 0.9)  # nanoGPT's split point, in characters
    byte = Tokenizer({"kind": "byte"})
    assert byte.decode(streams["train"]) == PLAY[:cut]
    assert byte.decode(streams["val"]) == PLAY[cut:]
    assert streams["train"].tolist() == list(PLAY[:cut].encode("utf-8"))  # one token per byte, id = byte value
    # the samples printed after pretraining start from the user's own text, not from ROMEO and JULIET
    expected = [line.split()[0] for line in PLAY.splitlines() if line.strip()][:3]
    assert meta["sample_prompts"] == expected


def test_shakespeare_gpt2_matches_tiktoken(tmp_path, gpt2_tokenizer):
    import tiktoken
    source = write(tmp_path / "play.txt", PLAY)
    shakespeare.main([f"--input={source}", f"--out_dir={tmp_path}", "--val_fraction=0.25"])
    meta, streams = read_streams(tmp_path)
    assert meta["tokenizer"] == {"kind": "gpt2"} and meta["dtype"] == "uint16"
    cut = int(len(PLAY) * 0.75)
    reference = tiktoken.get_encoding("gpt2")
    assert streams["train"].tolist() == reference.encode_ordinary(PLAY[:cut])
    assert streams["val"].tolist() == reference.encode_ordinary(PLAY[cut:])
    assert gpt2_tokenizer.decode(streams["train"]) + gpt2_tokenizer.decode(streams["val"]) == PLAY


def test_shakespeare_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match=r"--input=.*nowhere\.txt: no such file"):
        shakespeare_char.main([f"--input={tmp_path / 'nowhere.txt'}", f"--out_dir={tmp_path}"])
    (tmp_path / "latin1.txt").write_bytes(b"line one\nline two caf\xe9\n")
    with pytest.raises(UserError, match=r"latin1\.txt:2: not UTF-8"):
        shakespeare_char.main([f"--input={tmp_path / 'latin1.txt'}", f"--out_dir={tmp_path}"])
    write(tmp_path / "tiny.txt", "a")
    with pytest.raises(UserError, match="too few to split"):
        shakespeare_char.main([f"--input={tmp_path / 'tiny.txt'}", f"--out_dir={tmp_path}"])
    assert not list(tmp_path.glob("*.bin"))


def test_shakespeare_cli_from_another_directory(tmp_path, gpt2_tokenizer):
    source = write(tmp_path / "play.txt", PLAY)
    done = run_script("data/shakespeare_char/prepare.py", f"--input={source}", "--out_dir=out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "out/train.bin" in done.stdout and "tokens" in done.stdout
    assert read_streams(tmp_path / "out")[0]["train_tokens"] == len(PLAY[:int(len(PLAY) * 0.9)].encode("utf-8"))

    missing = run_script("data/shakespeare/prepare.py", "--input=nowhere.txt", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr == "error: --input=nowhere.txt: no such file\n"  # one line, no traceback


@pytest.mark.parametrize("module", [shakespeare_char, shakespeare, fineweb])
def test_help_lists_every_option(module, capsys):
    with pytest.raises(SystemExit) as exit:
        module.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for option in ("--input=", "--out_dir="):
        line = next(line for line in out.splitlines() if line.strip().startswith(option))
        assert len(line.split(")", 1)[1].strip()) > 10, f"{option} has no help text"


# ----------------------------------------------------------------------------- FineWeb-style documents


def write_jsonl(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return path


def fineweb_main(tmp_path, *args, out="out"):
    fineweb.main([f"--out_dir={tmp_path / out}", "--num_proc=1", *args])  # later arguments win
    return read_streams(tmp_path / out)


def test_fineweb_jsonl_documents_separated_by_eot(tmp_path, gpt2_tokenizer, capsys):
    rows = [{"text": DOCUMENTS[0]}, {"text": DOCUMENTS[1]}, {"text": DOCUMENTS[2]},
            "{not json",                           # line 4
            {"text": DOCUMENTS[3]},
            {"title": "no text field"},            # line 6
            {"text": 42},                          # line 7
            ["a", "list"],                         # line 8
            {"text": DOCUMENTS[4]}, {"text": DOCUMENTS[5]}, {"text": DOCUMENTS[6]},
            {"text": ""},                          # line 12
            {"text": DOCUMENTS[7]}]
    source = write_jsonl(tmp_path / "docs.jsonl", rows)
    meta, streams = fineweb_main(tmp_path, f"--input={source}", "--val_every=3")
    assert meta["tokenizer"] == {"kind": "gpt2"} and meta["dtype"] == "uint16"
    assert meta["documents"] == len(DOCUMENTS)
    # documents 0, 3, 6 (counting valid documents) go to val, the others to train, in order
    assert documents_in(streams["val"], gpt2_tokenizer) == DOCUMENTS[0::3]
    assert documents_in(streams["train"], gpt2_tokenizer) == [d for i, d in enumerate(DOCUMENTS) if i % 3]
    assert streams["val"].tolist()[:len(gpt2_tokenizer.encode(DOCUMENTS[0])) + 1] == \
        gpt2_tokenizer.encode(DOCUMENTS[0]) + [gpt2_tokenizer.eot]

    out = capsys.readouterr().out
    assert "kept 8 rows, skipped 5" in out
    for line, reason in [(4, "invalid JSON"), (6, "missing text"), (7, "text is not a string: int"),
                         (8, "not a JSON object: list")]:
        assert f"docs.jsonl:{line}: {reason}" in out


def test_fineweb_txt_and_directory_input(tmp_path, gpt2_tokenizer):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"text": d} for d in DOCUMENTS[:3]])
    # .txt: documents between <|endoftext|> lines, whitespace at their ends stripped
    write(folder / "b.txt", "\n<|endoftext|>\n".join(DOCUMENTS[3:6]) + "\n<|endoftext|>\n\n" + DOCUMENTS[6])
    write(folder / "notes.md", "not a corpus file: ignored in a directory")
    meta, streams = fineweb_main(tmp_path, f"--input={folder}", "--val_every=4")
    expected = DOCUMENTS[:3] + [d.strip() for d in DOCUMENTS[3:7]]
    assert documents_in(streams["val"], gpt2_tokenizer) == expected[0::4]
    assert documents_in(streams["train"], gpt2_tokenizer) == [d for i, d in enumerate(expected) if i % 4]

    _, glob_streams = fineweb_main(tmp_path, f"--input={folder}/*.txt", "--val_every=4", out="glob")
    assert documents_in(glob_streams["val"], gpt2_tokenizer) == [DOCUMENTS[3].strip()]


def test_fineweb_processes_give_the_same_bytes(tmp_path, gpt2_tokenizer, monkeypatch):
    monkeypatch.setattr(fineweb, "BATCH_DOCS", 3)  # many small batches in flight, to test their order
    rows = [{"text": f"{i}: {DOCUMENTS[i % len(DOCUMENTS)]}"} for i in range(90)]
    source = write_jsonl(tmp_path / "docs.jsonl", rows)
    fineweb_main(tmp_path, f"--input={source}", "--val_every=7", "--num_proc=1", out="one")
    fineweb_main(tmp_path, f"--input={source}", "--val_every=7", "--num_proc=2", out="two")
    for name in ("train.bin", "val.bin", "meta.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_fineweb_max_tokens_stops_at_a_document_end(tmp_path, gpt2_tokenizer):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": d} for d in DOCUMENTS])
    lengths = [len(gpt2_tokenizer.encode(d)) + 1 for d in DOCUMENTS]
    limit = sum(lengths[:3]) + 1  # reached inside the 4th document
    meta, streams = fineweb_main(tmp_path, f"--input={source}", f"--max_tokens={limit}", "--val_every=2")
    assert meta["documents"] == 4
    assert meta["train_tokens"] + meta["val_tokens"] == sum(lengths[:4])


def test_fineweb_parquet_rows(tmp_path, gpt2_tokenizer, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    texts = DOCUMENTS[:4] + [None] + DOCUMENTS[4:]
    pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), tmp_path / "shard.parquet",
                   row_group_size=3)
    meta, streams = fineweb_main(tmp_path, f"--input={tmp_path / 'shard.parquet'}", "--val_every=5")
    assert documents_in(streams["val"], gpt2_tokenizer) == DOCUMENTS[0::5]
    assert documents_in(streams["train"], gpt2_tokenizer) == [d for i, d in enumerate(DOCUMENTS) if i % 5]
    assert "shard.parquet:5: missing text" in capsys.readouterr().out


def test_fineweb_no_valid_document_leaves_nothing(tmp_path, gpt2_tokenizer):
    source = write_jsonl(tmp_path / "bad.jsonl", ["{oops", {"text": None}, {"content": "wrong field"}])
    done = run_script("data/fineweb/prepare.py", f"--input={source}", "--out_dir=out", "--num_proc=2", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "no valid document" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "bad.jsonl:1: invalid JSON" in done.stdout and "bad.jsonl:2: missing text" in done.stdout
    assert os.listdir(tmp_path / "out") == []  # no .bin, no temp file, no meta.json


def test_fineweb_error_midway_removes_partial_output(tmp_path, gpt2_tokenizer):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"text": d} for d in DOCUMENTS])
    write(folder / "b.parquet", "not parquet")  # read second: an error after a.jsonl's tokens were written
    with pytest.raises(UserError, match="b.parquet|pyarrow"):
        fineweb.main([f"--input={folder}", f"--out_dir={tmp_path / 'out'}", "--num_proc=2"])
    assert os.listdir(tmp_path / "out") == []


def test_fineweb_input_errors(tmp_path, gpt2_tokenizer):
    with pytest.raises(UserError, match=r"--input=.*nowhere.jsonl: no such file"):
        fineweb.main([f"--input={tmp_path / 'nowhere.jsonl'}", f"--out_dir={tmp_path}"])
    write(tmp_path / "data.csv", "text\nhello\n")
    with pytest.raises(UserError, match=r"data\.csv: unsupported file type"):
        fineweb.main([f"--input={tmp_path / 'data.csv'}", f"--out_dir={tmp_path}"])
    write_jsonl(tmp_path / "one.jsonl", [{"text": "a single document"}])
    with pytest.raises(UserError, match="train.bin would be empty"):
        fineweb.main([f"--input={tmp_path / 'one.jsonl'}", f"--out_dir={tmp_path}", "--num_proc=1"])
    assert not list(tmp_path.glob("*.bin*"))

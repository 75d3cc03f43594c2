"""
Tiny Shakespeare, character level: the quick-start dataset (nanoGPT's shakespeare_char).

Source: the 40,000 lines of Shakespeare that Andrej Karpathy collected for char-rnn, one 1.1 MB
ASCII file:
    https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt

    python data/shakespeare_char/prepare.py                  # downloads input.txt here, once
    python data/shakespeare_char/prepare.py --input=my.txt   # any local UTF-8 text instead

Tokenizer: `byte` (one token per byte; the text is ASCII, so one token per character). The first
90% of the characters become train.bin, the last 10% val.bin, as in nanoGPT. Expect, in this folder:
    train.bin  1,003,854 tokens  (uint16, 2.0 MB)
    val.bin      111,540 tokens  (uint16, 0.2 MB)
    meta.json  the tokenizer spec, dtype and token counts
The same text with GPT-2's tokenizer is data/shakespeare/prepare.py, which reuses this file's steps.
"""

import os
import sys
from dataclasses import dataclass
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root: cli, tokenizer, data

from cli import UserError, parse_config, run_main  # noqa: E402
from data.convert import download_file  # noqa: E402
from data_formats import print_token_streams, token_dtype, write_token_streams  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


@dataclass
class Config:
    input: Optional[str] = None  # local UTF-8 text file; default: Tiny Shakespeare, downloaded once to input.txt here
    out_dir: Optional[str] = None  # where train.bin, val.bin and meta.json go; default: the script's own folder
    val_fraction: float = 0.1  # the share of the text, taken from its end, that becomes val.bin


def main(argv=None):
    config = parse_config(Config, argv, description=__doc__)
    prepare(config, Tokenizer({"kind": "byte"}), HERE)


def prepare(config, tokenizer, folder):
    """The whole recipe, for any tokenizer: get the text, split it, encode both parts, write them.
    folder is the calling script's own: the default output folder and where input.txt is downloaded."""
    if not 0 < config.val_fraction < 1:
        raise UserError(f"--val_fraction={config.val_fraction}: expected a number between 0 and 1")
    out_dir = config.out_dir or folder
    text, source = read_corpus(config.input, os.path.join(folder, "input.txt"))
    parts = split_text(text, config.val_fraction, source)
    ids = {split: tokenizer.encode(part) for split, part in parts.items()}
    # pretrain.py continues these at the end of training (the text has no <|endoftext|> to start from):
    # two speakers for Tiny Shakespeare; for another text, the first words of its first lines
    prompts = ["ROMEO:", "JULIET:", "\n"] if config.input is None else first_words(text)
    meta = {"source": source, "val_fraction": config.val_fraction, "sample_prompts": prompts}
    write_token_streams(out_dir, tokenizer, ids, meta)
    print_summary(source, text, tokenizer, ids, out_dir)


def first_words(text, n=3):
    """Sample prompts from the user's own text: the first word of each of its first n non-empty lines."""
    words = [line.split()[0] for line in text.splitlines() if line.split()][:n]
    return words or ["\n"]


def read_corpus(input_path, download_to):
    """(text, where it came from): the user's file, or Tiny Shakespeare, downloaded the first time."""
    if input_path is not None:
        return read_text(input_path), input_path
    if not os.path.exists(download_to):
        download_file(URL, download_to)
    return read_text(download_to), URL


def read_text(path):
    """A UTF-8 file, exactly as it is (line endings too); a byte that is not UTF-8 is an error naming its line."""
    if not os.path.isfile(path):
        raise UserError(f"--input={path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x})") from None


def split_text(text, val_fraction, source):
    """{"train": the first 1 - val_fraction of the characters, "val": the rest}. Splitting the text
    rather than the tokens keeps the split point the same whatever the tokenizer."""
    n = int(len(text) * (1 - val_fraction))
    if n == 0 or n == len(text):
        raise UserError(f"{source}: {len(text)} characters are too few to split into train and val")
    return {"train": text[:n], "val": text[n:]}


def print_summary(source, text, tokenizer, ids, out_dir):
    print(f"{source}: {len(text):,} characters, {tokenizer}, {token_dtype(tokenizer.n_vocab).__name__} tokens")
    print_token_streams(out_dir, {split: len(split_ids) for split, split_ids in ids.items()})


if __name__ == "__main__":
    run_main(main)

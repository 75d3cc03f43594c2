"""
Tiny Shakespeare with GPT-2's BPE tokenizer (nanoGPT's data/shakespeare): the same 1.1 MB text as
data/shakespeare_char, in subword tokens, for fine-tuning GPT-2 (--init_from=gpt2) on it.

Source: https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt

    python data/shakespeare/prepare.py                  # downloads input.txt here, once
    python data/shakespeare/prepare.py --input=my.txt   # any local UTF-8 text instead

The first 90% of the characters become train.bin, the last 10% val.bin. Expect, in this folder:
    train.bin  301,966 tokens  (uint16: GPT-2's 50,257 tokens plus 4 chat tokens fit; 0.6 MB)
    val.bin     36,059 tokens  (0.1 MB)
    meta.json  the tokenizer spec, dtype and token counts
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root: cli, tokenizer, data

from cli import parse_config, run_main  # noqa: E402
from data.shakespeare_char.prepare import Config, prepare  # noqa: E402  (same text, same steps)
from tokenizer import Tokenizer  # noqa: E402


def main(argv=None):
    config = parse_config(Config, argv, description=__doc__)
    prepare(config, Tokenizer({"kind": "gpt2"}), HERE)


if __name__ == "__main__":
    run_main(main)

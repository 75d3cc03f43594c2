"""
FineWeb-Edu: educational web pages, the corpus for pretraining beyond toy scale (where nanoGPT
used OpenWebText).

Source: HuggingFaceFW/fineweb-edu on the Hugging Face Hub, its `sample-10BT` subset: 14 parquet
shards (sample/10BT/000_00000.parquet ... 013_00000.parquet), ~2 GB each, 9.7M documents and
~10B GPT-2 tokens in all. Shards are downloaded one at a time into downloads/ beside this script
(kept there: a re-run reads them instead of downloading again; delete the folder when done) and
read a row group at a time, so memory use stays small whatever the number of shards.

    python data/fineweb/prepare.py                    # 1 shard: ~2 GB download, ~0.7B tokens
    python data/fineweb/prepare.py --shards=14        # the whole sample: ~28.5 GB, ~10B tokens
    python data/fineweb/prepare.py --max_tokens=1e8   # just the first 100M tokens
    python data/fineweb/prepare.py --input=PATH       # local files instead of the download

Reading parquet needs pyarrow (pip install pyarrow). --input takes a file, a directory (its
.parquet, .jsonl and .txt files) or a glob of:
    .parquet  a "text" column, one document a row (the Hub's format)
    .jsonl    one JSON object a line with a "text" string
    .txt      documents separated by lines holding only <|endoftext|> (TinyStories' convention);
              each document is stripped of the whitespace at its ends; no such line: one document
Rows without a usable text (missing, not a string, empty, invalid JSON or UTF-8) are skipped,
counted, and the first few reported as file:line (file:row for parquet).

Output: every document encoded with GPT-2's BPE and followed by <|endoftext|>, the separator GPT-2
was trained with, in uint16. Documents 0, N, 2N, ... (N = --val_every, 200: 0.5%) go to val.bin,
all others to train.bin, in input order; the result is the same for any --num_proc. One shard
gives a train.bin of ~1.4 GB and a val.bin of ~7 MB; the whole sample ~20 GB. Tokenizing runs in
--num_proc processes, a few minutes a shard on 8 cores.
"""

import glob
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root: cli, tokenizer, data

from cli import UserError, parse_config, run_main  # noqa: E402
from data.convert import ConversionReport, download_file  # noqa: E402
from data_formats import TokenWriter, print_token_streams, token_dtype, write_meta  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

SOURCE = "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu (sample-10BT)"
SHARD_URL = "https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu/resolve/main/sample/10BT/{:03d}_00000.parquet"
N_SHARDS = 14
FORMATS = (".parquet", ".jsonl", ".txt")
BATCH_DOCS = 256  # documents per task sent to a tokenizer process: enough to make the pickling overhead small
SPLITS = ("train", "val")


@dataclass
class Config:
    input: Optional[str] = None  # local .parquet/.jsonl/.txt file, directory or glob; default: download FineWeb-Edu
    shards: int = 1  # FineWeb-Edu shards to download, 1 to 14, ~0.7B tokens each (not used with --input)
    max_tokens: Optional[int] = None  # stop at the end of the document that brings train + val to this many tokens
    val_every: int = 200  # documents 0, N, 2N, ... go to val.bin, the others to train.bin
    num_proc: int = os.cpu_count() or 1  # tokenizer processes (1: tokenize in this process)
    out_dir: str = HERE  # where train.bin, val.bin and meta.json go
    download_dir: str = os.path.join(HERE, "downloads")  # where downloaded shards are kept


def main(argv=None):
    config = parse_config(Config, argv, description=__doc__)
    check_config(config)
    tokenizer = Tokenizer({"kind": "gpt2"})
    if config.input:
        files, input_label = input_files(config.input), "MB of input files"
    else:
        import_parquet()  # fail now rather than after a 2 GB download
        files, input_label = download_shards(config.shards, config.download_dir), "MB downloaded"
    tally = Tally(input_label)
    with token_writers(config.out_dir, tokenizer.n_vocab) as writers, \
            tokenizer_pool(config.num_proc, tokenizer) as pool:
        reports = tokenize_files(files, pool, writers, tally, config)
        check_result(reports, writers, config)
    counts = {split: writer.close() for split, writer in writers.items()}
    write_meta(config.out_dir, tokenizer, counts, {"source": config.input or SOURCE, "documents": tally.documents,
                                                   "val_every": config.val_every})
    print_summary(tokenizer, counts, tally, config.out_dir)


def check_config(config):
    if config.input is None and not 1 <= config.shards <= N_SHARDS:
        raise UserError(f"--shards={config.shards}: the sample has shards 1 to {N_SHARDS}")
    if config.max_tokens is not None and config.max_tokens < 1:
        raise UserError(f"--max_tokens={config.max_tokens}: expected a positive number (or None for no limit)")
    if config.val_every < 2:
        raise UserError(f"--val_every={config.val_every}: expected 2 or more (1 would leave train.bin empty)")
    if config.num_proc < 1:
        raise UserError(f"--num_proc={config.num_proc}: expected 1 or more")


# ----------------------------------------------------------------------------- where the documents come from


def input_files(pattern):
    """The files behind --input: one file, the supported files of a directory, or a glob's matches."""
    if os.path.isdir(pattern):
        paths = sorted(os.path.join(pattern, name) for name in os.listdir(pattern) if name.endswith(FORMATS))
        if not paths:
            raise UserError(f"--input={pattern}: the directory has no {', '.join(FORMATS)} file")
        return paths
    paths = [pattern] if os.path.isfile(pattern) else sorted(glob.glob(pattern, recursive=True))
    if not paths:
        raise UserError(f"--input={pattern}: no such file")
    for path in paths:
        if not path.endswith(FORMATS):
            raise UserError(f"{path}: unsupported file type; expected {', '.join(FORMATS)}")
    return paths


def download_shards(n, folder):
    """The paths of the first n shards, each downloaded just before it is read unless already there."""
    for i in range(n):
        url = SHARD_URL.format(i)
        path = os.path.join(folder, os.path.basename(url))
        if not os.path.exists(path):
            print(f"shard {i + 1}/{n}: downloading {url}")
            download_file(url, path, hint="download it by hand and pass it with --input=PATH (a shard or a folder)")
        yield path


def read_documents(path, report):
    """The texts of a file's valid documents; problems go to the report."""
    readers = {".parquet": read_parquet, ".jsonl": read_jsonl, ".txt": read_txt}
    return readers[os.path.splitext(path)[1]](path, report)


def import_parquet():
    try:
        import pyarrow.parquet
    except ImportError:
        raise UserError("reading parquet files needs pyarrow: pip install pyarrow") from None
    return pyarrow.parquet


def read_parquet(path, report):
    parquet = import_parquet()
    try:
        file = parquet.ParquetFile(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowIOError and ArrowInvalid
        raise UserError(f"{path}: not a readable parquet file ({e})") from None
    if "text" not in file.schema_arrow.names:
        raise UserError(f"{path}: no 'text' column (columns: {', '.join(file.schema_arrow.names)})")
    row = 0
    for batch in file.iter_batches(batch_size=1024, columns=["text"]):  # one slice in memory at a time
        for text in batch.column(0).to_pylist():
            row += 1
            if is_document(text, row, report):
                yield text


def read_jsonl(path, report):
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except UnicodeDecodeError:
                report.skip(n, "invalid UTF-8")
                continue
            except json.JSONDecodeError as e:
                report.skip(n, f"invalid JSON: {e.msg} at column {e.colno}")
                continue
            except RecursionError:
                report.skip(n, "invalid JSON: nested too deeply to parse")
                continue
            if not isinstance(row, dict):
                report.skip(n, f"not a JSON object: {type(row).__name__}")
            elif is_document(row.get("text"), n, report):
                yield row["text"]


def read_txt(path, report):
    with open(path, "rb") as f:
        for first_line, data in txt_chunks(f):
            try:
                text = data.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                report.skip(first_line + data.count(b"\n", 0, e.start), "invalid UTF-8")
                continue
            if text:  # blank lines around separators make no document, and no complaint
                report.keep()
                yield text


def txt_chunks(lines):
    """(first line number, bytes) of each stretch of lines between <|endoftext|> lines."""
    chunk, first = [], 1
    for n, line in enumerate(lines, 1):
        if line.strip() == b"<|endoftext|>":
            yield first, b"".join(chunk)
            chunk, first = [], n + 1
        else:
            chunk.append(line)
    yield first, b"".join(chunk)


def is_document(text, line, report):
    """Whether a row's text is a document; a row that is not is counted, with its line, in the report."""
    if text is None:
        report.skip(line, "missing text")
    elif not isinstance(text, str):
        report.skip(line, f"text is not a string: {type(text).__name__}")
    elif not text.strip():
        report.skip(line, "empty text")
    else:
        report.keep()
        return True
    return False


# ----------------------------------------------------------------------------- tokenizing in parallel

_tokenizer = None  # each tokenizer process's own (a tiktoken Encoding is built once per process, not sent per task)


def start_worker(tokenizer_spec):
    global _tokenizer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process, which stops the pool
    _tokenizer = Tokenizer(tokenizer_spec)


def encode_documents(texts):
    """One array per document: its ids, then <|endoftext|>."""
    dtype = token_dtype(_tokenizer.n_vocab)
    return [np.array(_tokenizer.encode(text) + [_tokenizer.eot], dtype=dtype) for text in texts]


@contextmanager
def tokenizer_pool(num_proc, tokenizer):
    """A multiprocessing Pool of num_proc tokenizer processes, or None to tokenize in this process."""
    global _tokenizer
    if num_proc == 1:
        _tokenizer = tokenizer
        yield None
        return
    pool = multiprocessing.Pool(num_proc, initializer=start_worker, initargs=(tokenizer.spec,))
    try:
        yield pool
    finally:
        # close + join, even on an error or Ctrl-C: the few batches in flight finish in a moment, whereas
        # terminate() can hang while a worker writes a large result (github.com/python/cpython/issues/78178)
        pool.close()
        pool.join()


def encode_in_order(batches, pool, ahead):
    """The encoded batches, in input order. (Pool.imap would do this, but it reads its whole input
    ahead of the workers, into memory; here at most `ahead` batches are in flight.)"""
    if pool is None:
        yield from map(encode_documents, batches)
        return
    pending = deque()
    for batch in batches:
        pending.append(pool.apply_async(encode_documents, (batch,)))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def batched(items, n):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


# ----------------------------------------------------------------------------- writing and reporting


@contextmanager
def token_writers(out_dir, n_vocab):
    """A TokenWriter per split; if the block fails (or Ctrl-C), their temp files are removed, so
    no partial .bin is ever left under a final name. The caller closes them after the block."""
    writers = {split: TokenWriter(os.path.join(out_dir, f"{split}.bin"), n_vocab) for split in SPLITS}
    try:
        yield writers
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


class Tally:
    """Documents, tokens and input megabytes so far, shown on one progress line redrawn in place."""

    def __init__(self, input_label):
        self.input_label = input_label
        self.documents, self.tokens, self.input_mb = 0, 0, 0.0
        self.file_start = self.last_shown = 0.0
        self.file_documents = self.width = 0

    def start_file(self, path):
        self.input_mb += os.path.getsize(path) / 1e6
        self.file_start, self.file_documents, self.width = time.perf_counter(), self.documents, 0

    def add(self, ids):
        self.documents += 1
        self.tokens += len(ids)

    def show(self, name, force=False):
        now = time.perf_counter()
        if force or now - self.last_shown > 0.5:
            rate = (self.documents - self.file_documents) / max(now - self.file_start, 1e-9)
            line = (f"  {name}: {self.documents:,} documents ({rate:,.0f}/s), {self.tokens / 1e6:,.1f}M tokens, "
                    f"{self.input_mb:,.1f} {self.input_label}")
            self.width = max(self.width, len(line))
            print("\r" + line.ljust(self.width), end="", flush=True)  # padded: a shorter line hides the last
            self.last_shown = now


def tokenize_files(files, pool, writers, tally, config):
    """Tokenize the files one after the other into the writers, until max_tokens; returns their reports."""
    reports = []
    for path in files:
        report = ConversionReport(path)
        reports.append(report)
        tokenize_file(path, report, pool, writers, tally, config)
        if report.skipped:
            print(report.summary())
        if config.max_tokens and tally.tokens >= config.max_tokens:
            break
    return reports


def tokenize_file(path, report, pool, writers, tally, config):
    name = os.path.basename(path)
    tally.start_file(path)
    batches = batched(read_documents(path, report), BATCH_DOCS)
    for ids in chain.from_iterable(encode_in_order(batches, pool, ahead=2 * config.num_proc)):
        writers["val" if tally.documents % config.val_every == 0 else "train"].write(ids)
        tally.add(ids)
        if config.max_tokens and tally.tokens >= config.max_tokens:
            break
        tally.show(name)
    tally.show(name, force=True)
    print()


def check_result(reports, writers, config):
    """An output without documents, or with an empty split, is an error, not a success."""
    source = config.input or SOURCE
    if not any(report.kept for report in reports):
        why = "every row was skipped, see above" if any(r.skipped for r in reports) else "the input is empty"
        raise UserError(f"{source}: no valid document ({why})")
    if writers["train"].count == 0:
        raise UserError(f"{source}: only one document was tokenized, and document 0 goes to val.bin; "
                        f"train.bin would be empty")


def print_summary(tokenizer, counts, tally, out_dir):
    print(f"{tally.documents:,} documents, {tally.tokens:,} tokens ({tokenizer}, "
          f"{token_dtype(tokenizer.n_vocab).__name__}):")
    print_token_streams(out_dir, counts)


if __name__ == "__main__":
    run_main(main)

"""
What the dataset converters (data/<name>/prepare.py) share: downloading a file once, reading
JSON or JSONL rows with their line numbers, a report of the rows kept and skipped (with the first
problems as FILE:LINE), and the train/val split written as two JSONL files.

Split rule: a single input file is shuffled with --seed and --val_size rows (or a --val_fraction
of them, at least one) go to val.jsonl, the rest to train.jsonl.
"""

import gzip
import json
import os
import random
import re
import urllib.request
from collections import Counter

from cli import UserError
from data_formats import write_jsonl

def download_file(url, path, chunk_size=1 << 20, hint="download it by hand and pass its path with --input=PATH"):
    """Download url to path with a progress line; the file appears only once complete."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(chunk_size):
                f.write(chunk)
                done += len(chunk)
                print(f"\r  {os.path.basename(path)}: {done / 1e6:.1f}"
                      + (f" / {total / 1e6:.1f} MB" if total else " MB"), end="", flush=True)
        print()
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"could not download {url} ({e}); {hint}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


class ConversionReport:
    """Counts the rows a converter keeps and skips, by reason, with the line of every skipped row
    (the first `lines` of each reason listed), and the first few problems in full, so a user sees
    what was wrong without scrolling through thousands of lines."""

    def __init__(self, source, show=5, lines=20):
        self.source, self.show, self.max_lines = source, show, lines
        self.kept, self.skipped, self.problems = 0, Counter(), []
        self.where = {}  # reason -> lines of the rows skipped for it

    def skip(self, line, reason):
        short = reason.split(":")[0]
        self.skipped[short] += 1
        lines = self.where.setdefault(short, [])
        if len(lines) < self.max_lines:  # the count goes on; only the first lines are kept to show
            lines.append(str(line).split(" ")[0])
        if len(self.problems) < self.show:
            self.problems.append(f"{self.source}:{line}: {reason}")

    def keep(self):
        self.kept += 1

    def summary(self):
        lines = [f"{self.source}: kept {self.kept} rows, skipped {sum(self.skipped.values())}"]
        for reason, n in self.skipped.most_common():
            shown = self.where[reason]
            more = f" and {n - len(shown)} more" if n > len(shown) else ""
            lines.append(f"  {n} x {reason} (line{'s' if n > 1 else ''} {', '.join(shown)}{more})")
        if self.problems:
            lines.append("  first problems:")
            lines += [f"    {p}" for p in self.problems]
        return "\n".join(lines)

    def check(self):
        """Raise if nothing valid was found (an empty output is never a success)."""
        if self.kept == 0:
            raise UserError(f"{self.source}: no valid row\n{self.summary()}")


# Chat and preference converters (data/alpaca, data/sharegpt, data/hh_rlhf): reading JSON/JSONL files
# with row positions, converting rows into a report, the train/val split and writing the two files.


def fetch(url, path):
    """path, downloading url there first if it is missing."""
    return path if os.path.exists(path) else download_file(url, path)


def read_text(path):
    """The whole text of a file, gunzipped when its name ends in .gz."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        # utf-8-sig: a byte-order mark (editors on Windows add one) would hide the leading '['
        with opener(path, "rt", encoding="utf-8-sig") as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated or corrupt .gz, not UTF-8
        raise UserError(f"{path}: cannot read it ({e})") from None


_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's white space


def read_rows(path, report):
    """(where, row) for each row of a JSON list or a JSONL file: where is the line the row starts
    on, followed by its 1-based index in a JSON list (ConversionReport prints it after the path).

    A JSONL line that is not valid JSON is skipped into the report: the other lines are still good.
    A JSON list that is not valid JSON is an error, as nothing after the bad spot can be trusted."""
    text = read_text(path)
    if text.startswith("[", _SPACE.match(text).end()):
        return json_list_rows(path, text)
    rows = []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters that
    # splitlines() treats as line ends
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            report.skip(n, f"invalid JSON: {e.msg} at column {e.colno}")
        except RecursionError:
            report.skip(n, "invalid JSON: nested too deeply to parse")
    return rows


def json_list_rows(path, text):
    """The items of a JSON list with the line each starts on. json.loads would give the items but
    not where they are, so this walks the list itself and lets raw_decode parse one item at a time."""
    decoder, rows = json.JSONDecoder(), []
    line, counted = 1, 0  # line number of text[counted]
    pos = _SPACE.match(text).end() + 1  # past the '['
    try:
        while True:
            pos = _SPACE.match(text, pos).end()
            if text.startswith("]", pos) and not rows:
                break  # an empty list
            row, end = decoder.raw_decode(text, pos)
            line, counted = line + text.count("\n", counted, pos), pos
            rows.append((f"{line} (row {len(rows) + 1})", row))
            pos = _SPACE.match(text, end).end()
            if not text.startswith(",", pos):
                break
            pos += 1
        if not text.startswith("]", pos):
            raise json.JSONDecodeError("expected ',' or ']' after a list item", text, pos)
        if text[pos + 1:].strip():
            raise json.JSONDecodeError("extra data after the list", text, pos + 1)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise UserError(f"{path}:{line}: invalid JSON (a list item nested too deeply to parse)") from None
    return rows


def convert_file(path, convert):
    """convert(row) for each row of the file; a row where it raises ValueError("reason: detail") is
    skipped and counted under that reason. Returns (converted rows, report); raises if none is valid."""
    report = ConversionReport(path)
    converted = []
    for where, row in read_rows(path, report):
        try:
            converted.append(convert(row))
        except ValueError as e:
            report.skip(where, str(e))
        else:
            report.keep()
    report.check()
    return converted, report


def split_rows(rows, val_fraction, val_size, seed):
    """Split rows into (train, val) by the rule in the module docstring."""
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val_fraction={val_fraction}: expected a number from 0 to 1 (exclusive)")
    if val_size is not None and val_size < 0:
        raise UserError(f"--val_size={val_size}: expected 0 or more")
    n_val = max(1, round(val_fraction * len(rows))) if val_size is None else val_size
    n_val = min(n_val, len(rows) - 1)  # training needs rows more than validation does
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    val = set(order[:n_val])
    return ([r for i, r in enumerate(rows) if i not in val],
            [r for i, r in enumerate(rows) if i in val])


def save_splits(out_dir, train, val):
    """Write out_dir/train.jsonl and val.jsonl (each atomically) and say where they went."""
    for name, rows in (("train", train), ("val", val)):
        path = os.path.join(out_dir, f"{name}.jsonl")
        write_jsonl(path, rows)
        print(f"wrote {len(rows):,} rows to {path}")

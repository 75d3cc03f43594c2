"""
The data contracts the stages read, and their writers: JSONL files, token streams (train.bin,
val.bin and meta.json, read with np.memmap), conversations for SFT (chat template and loss mask)
and preference pairs for the reward model and DPO. Every reader checks its input and names the
file and line of a problem.
"""

import json
import os

import numpy as np

from cli import UserError, text_lines
from tokenizer import check_tokenizer_spec

# ----------------------------------------------------------------------------- JSONL and token streams


def read_jsonl(path, allow_empty=False):
    """(line number, object) for each non-empty line; text that is not UTF-8 or not JSON is a
    UserError naming the line, and so is a file with no rows (unless allow_empty)."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    rows = []
    for n, line in text_lines(path):
        if not line.strip():
            continue
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:  # the parser's own limit: a line nested thousands of levels deep
            raise UserError(f"{path}:{n}: invalid JSON (nested too deeply to parse)") from None
    if not rows and not allow_empty:
        raise UserError(f"{path}: the file has no rows")
    return rows


def write_jsonl(path, rows):
    """Write rows atomically (temp file, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def token_dtype(n_vocab):
    return np.uint16 if n_vocab <= 2 ** 16 else np.uint32


class TokenWriter:
    """Writes a token stream (.bin of uint16/uint32) chunk by chunk; the file appears under its
    final name only when close() succeeds."""

    def __init__(self, path, n_vocab):
        self.path, self.dtype, self.count = path, token_dtype(n_vocab), 0
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path + ".tmp", "wb")

    def write(self, ids):
        arr = np.asarray(ids, dtype=self.dtype)
        self.file.write(arr.tobytes())
        self.count += arr.size

    def close(self):
        self.file.close()
        os.replace(self.path + ".tmp", self.path)
        return self.count

    def abort(self):
        self.file.close()
        os.remove(self.path + ".tmp")


def write_token_streams(out_dir, tokenizer, splits, extra_meta=None):
    """Write {split: ids} as out_dir/<split>.bin and out_dir/meta.json (the token-stream contract)."""
    counts = {}
    for split, ids in splits.items():
        writer = TokenWriter(os.path.join(out_dir, f"{split}.bin"), tokenizer.n_vocab)
        writer.write(ids)
        counts[split] = writer.close()
    write_meta(out_dir, tokenizer, counts, extra_meta)


def print_token_streams(out_dir, counts):
    """Where each split went: path, token count, size."""
    for split, count in counts.items():
        path = os.path.join(out_dir, f"{split}.bin")
        print(f"  {path}: {count:,} tokens ({os.path.getsize(path) / 1e6:,.1f} MB)")
    print(f"  {os.path.join(out_dir, 'meta.json')}")


def write_meta(out_dir, tokenizer, counts, extra_meta=None):
    meta = {"tokenizer": tokenizer.spec, "vocab_size": tokenizer.n_vocab,
            "dtype": np.dtype(token_dtype(tokenizer.n_vocab)).name,
            **{f"{split}_tokens": int(n) for split, n in counts.items()}, **(extra_meta or {})}
    tmp = os.path.join(out_dir, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f)
    os.replace(tmp, os.path.join(out_dir, "meta.json"))


def read_meta(data_dir):
    path = os.path.join(data_dir, "meta.json")
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; run the dataset's prepare.py first")
    try:
        with open(path) as f:
            meta = json.load(f)
        assert isinstance(meta, dict) and isinstance(meta["tokenizer"], dict) and meta["dtype"] in ("uint16", "uint32")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, AssertionError, KeyError, TypeError):
        raise UserError(f"{path}: malformed; expected JSON with 'tokenizer' (a spec), 'dtype' (uint16 or uint32) "
                        f"and token counts. Re-run the dataset's prepare.py") from None
    try:
        check_tokenizer_spec(meta["tokenizer"])
    except ValueError as e:
        raise UserError(f"{path}: {e}. Re-run the dataset's prepare.py") from None
    return meta


def open_token_stream(data_dir, split, meta):
    """np.memmap over data_dir/<split>.bin, checked against meta.json: the token count, and every
    token id below the vocabulary size (an id past it would crash the embedding mid-run)."""
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; run the dataset's prepare.py first")
    itemsize = np.dtype(meta["dtype"]).itemsize
    size = os.path.getsize(path)
    expected = meta.get(f"{split}_tokens")
    if size == 0:
        raise UserError(f"{path}: empty file")
    if size % itemsize or (expected is not None and size != expected * itemsize):
        raise UserError(f"{path}: {size} bytes, but meta.json says {expected} {meta['dtype']} tokens "
                        f"({expected * itemsize if expected is not None else '?'} bytes): truncated or from another "
                        f"run; re-run the dataset's prepare.py")
    stream = np.memmap(path, dtype=meta["dtype"], mode="r")
    vocab_size = meta.get("vocab_size")
    for start in range(0, len(stream), 1 << 26):  # in chunks: streams can be far larger than memory
        chunk = stream[start:start + (1 << 26)]
        if vocab_size is not None and chunk.max() >= vocab_size:
            position = start + int(np.argmax(chunk >= vocab_size))
            raise UserError(f"{path}: token {position} is id {stream[position]}, but the tokenizer in meta.json has "
                            f"{vocab_size} tokens; re-run the dataset's prepare.py")
    return stream


# ----------------------------------------------------------------------------- conversations (SFT)


def holds_conversations(path):
    """Whether a JSONL file holds conversations (its first row has "messages"), from its first
    line only; a file that cannot say is left to the loader, which names what is wrong."""
    if not os.path.isfile(path):
        return False
    for _, line in text_lines(path):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return False
            return isinstance(row, dict) and "messages" in row
    return False


def load_conversations(path, tokenizer, max_tokens):
    """Conversations JSONL -> ([(ids, loss_mask)], report), each at most max_tokens long (the
    model's context). Rule for long examples: dropped, not truncated (a truncated chat would teach
    a reply that stops mid-sentence); the report counts them."""
    examples, dropped = [], []
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
        if not isinstance(row, dict) or "messages" not in row:
            raise UserError(f'{where}: expected {{"messages": [...]}}')
        try:
            ids, mask = tokenizer.render_chat(row["messages"])
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if not any(mask):
            raise UserError(f"{where}: no assistant message, so nothing to learn (every token is masked)")
        if len(ids) > max_tokens:
            dropped.append(where)
            continue
        examples.append((ids, mask))
    if not examples:
        raise UserError(f"{path}: every conversation is longer than the model's context of {max_tokens} tokens")
    report = f"{path}: {len(examples):,} conversations"
    if dropped:
        report += (f"; {len(dropped)} dropped, longer than the model's context of {max_tokens} tokens "
                   f"(first: {dropped[0]})")
    return examples, report


# ----------------------------------------------------------------------------- preference pairs


def as_messages(value, role):
    """Plain-text preference rows hold strings; conversational ones hold message lists."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list):
        raise ValueError(f"expected a string or a list of messages, got {type(value).__name__}")
    return value


class ReplyTooLong(ValueError):
    """A preference reply that alone does not fit the context: its pair is dropped, not cut."""


def render_pair(tokenizer, prompt, reply, block_size):
    """Token ids of prompt + reply, ending with the reply's end-of-turn token, and a mask that
    is 1 on the reply's assistant tokens only (not on assistant turns inside the prompt), and
    whether the start of the prompt was cut: a sequence longer than block_size loses the start of
    its prompt, so the whole reply, whose end is where the reward model reads its score, is kept.
    A reply that alone does not fit raises ReplyTooLong (load_preferences drops that pair)."""
    ids, mask = tokenizer.render_chat(prompt + reply)
    prompt_len = len(tokenizer.render_chat(prompt)[0]) if prompt else 0
    mask = [0] * prompt_len + mask[prompt_len:]
    ids, mask = ids[:-len(tokenizer.newline)], mask[:-len(tokenizer.newline)]  # end at <|im_end|>
    if len(ids) - prompt_len > block_size:
        raise ReplyTooLong(f"the reply alone is {len(ids) - prompt_len} tokens, more than block_size={block_size}")
    return ids[-block_size:], mask[-block_size:], len(ids) > block_size


def load_preferences(path, tokenizer, block_size):
    """Preference JSONL (TRL's conversational or plain-text form) -> (pairs, report). Each pair is
    a dict with the chosen and rejected sequences (ids, reply mask), the prompt and the row's info.
    Every row is checked; a malformed one is an error naming its line. Rule for long pairs: the
    prompt loses its start (counted as cut); a pair whose reply alone does not fit is dropped, never
    cut mid-reply. The report says how many pairs were kept, cut and dropped."""
    pairs, cut, too_long = [], 0, []
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
        if not isinstance(row, dict) or not {"chosen", "rejected"} <= row.keys():
            raise UserError(f'{where}: expected {{"prompt", "chosen", "rejected"}}')
        if not isinstance(row.get("info", {}), dict):
            raise UserError(f"{where}: 'info' must be an object, got {type(row['info']).__name__}")
        if not isinstance(row.get("info", {}).get("pair", ""), str):
            raise UserError(f"{where}: 'info.pair' (the pair's kind) must be a string")
        if row.get("prompt") is not None and not isinstance(row["prompt"], (str, list)):
            raise UserError(f"{where}: 'prompt' must be a string or a list of messages, got "
                            f"{type(row['prompt']).__name__}")
        try:
            prompt = as_messages(row.get("prompt") or [], "user")
            chosen, rejected = as_messages(row["chosen"], "assistant"), as_messages(row["rejected"], "assistant")
            if chosen == rejected:
                raise ValueError("chosen and rejected are the same; nothing to prefer")
            try:  # render_chat checks every message first: a malformed one is a ValueError, not a drop
                c_ids, c_mask, c_cut = render_pair(tokenizer, prompt, chosen, block_size)
                r_ids, r_mask, r_cut = render_pair(tokenizer, prompt, rejected, block_size)
            except ReplyTooLong:
                too_long.append(where)
                continue
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if not any(c_mask) or not any(r_mask):
            raise UserError(f"{where}: chosen and rejected must each hold an assistant message")
        cut += c_cut or r_cut
        pairs.append({"chosen": (c_ids, c_mask), "rejected": (r_ids, r_mask), "info": row.get("info", {}),
                      "prompt": prompt})
    if not pairs:
        raise UserError(f"{path}: no pair fits block_size={block_size} (the replies alone are longer)")
    report = f"{path}: {len(pairs):,} pairs"
    if cut:
        report += f", {cut} with the start of the prompt cut to fit block_size={block_size}"
    if too_long:
        report += f"; {len(too_long)} dropped, the reply alone longer than block_size (first: {too_long[0]})"
    return pairs, report

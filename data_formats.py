"""
The data contracts the stages read, and their writers: JSONL files, token streams (train.bin,
val.bin and meta.json, read with np.memmap), conversations for SFT (chat template and loss mask)
and preference pairs for the reward model and DPO. Every reader checks its input and names the
file and line of a problem.
"""

import json
import os

import numpy as np

from cli import UserError

# ----------------------------------------------------------------------------- JSONL and token streams


def read_jsonl(path):
    """(line number, object) for each non-empty line; invalid JSON is a UserError naming the line."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not rows:
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
    except (json.JSONDecodeError, AssertionError, KeyError, TypeError):
        raise UserError(f"{path}: malformed; expected JSON with 'tokenizer' (a spec), 'dtype' (uint16 or uint32) "
                        f"and token counts. Re-run the dataset's prepare.py") from None
    return meta


def open_token_stream(data_dir, split, meta):
    """np.memmap over data_dir/<split>.bin, checked against the counts in meta.json."""
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
    return np.memmap(path, dtype=meta["dtype"], mode="r")


# ----------------------------------------------------------------------------- conversations (SFT)


def load_conversations(path, tokenizer, block_size):
    """Conversations JSONL -> [(ids, loss_mask)], each fitting block_size + 1 tokens (inputs and
    shifted targets). Rule for long examples: dropped, not truncated (a truncated chat would teach
    a reply that stops mid-sentence); they are counted and reported. Returns (examples, n_dropped)."""
    examples, dropped = [], 0
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
        if len(ids) > block_size + 1:
            dropped += 1
            continue
        examples.append((ids, mask))
    if not examples:
        raise UserError(f"{path}: every conversation is longer than block_size={block_size}")
    return examples, dropped


# ----------------------------------------------------------------------------- preference pairs


def as_messages(value, role):
    """Plain-text preference rows hold strings; conversational ones hold message lists."""
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def render_pair(tokenizer, prompt, reply, block_size):
    """Token ids of prompt + reply, ending with the reply's end-of-turn token, and a mask that
    is 1 on the reply's assistant tokens only (not on assistant turns inside the prompt).
    Truncation: a sequence longer than block_size loses its start (the start of the prompt), so
    the end of the reply, where the reward model reads its score, is always kept."""
    ids, mask = tokenizer.render_chat(prompt + reply)
    prompt_len = len(tokenizer.render_chat(prompt)[0]) if prompt else 0
    mask = [0] * prompt_len + mask[prompt_len:]
    ids, mask = ids[:-len(tokenizer.newline)], mask[:-len(tokenizer.newline)]  # end at <|im_end|>
    return ids[-block_size:], mask[-block_size:]


def load_preferences(path, tokenizer, block_size):
    """Preference JSONL (TRL's conversational or plain-text form) -> list of dicts with the
    chosen and rejected sequences (ids, reply mask) and the row's info (if any)."""
    pairs, truncated = [], 0
    for line, row in read_jsonl(path):
        where = f"{path}:{line}"
        if not isinstance(row, dict) or not {"chosen", "rejected"} <= row.keys():
            raise UserError(f'{where}: expected {{"prompt", "chosen", "rejected"}}')
        prompt = as_messages(row.get("prompt") or [], "user")
        chosen, rejected = as_messages(row["chosen"], "assistant"), as_messages(row["rejected"], "assistant")
        if chosen == rejected:
            raise UserError(f"{where}: chosen and rejected are the same; nothing to prefer")
        try:
            c_ids, c_mask = render_pair(tokenizer, prompt, chosen, block_size)
            r_ids, r_mask = render_pair(tokenizer, prompt, rejected, block_size)
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if not any(c_mask) or not any(r_mask):
            raise UserError(f"{where}: chosen and rejected must each hold an assistant message")
        full = len(tokenizer.render_chat(prompt + chosen)[0]), len(tokenizer.render_chat(prompt + rejected)[0])
        truncated += max(full) - len(tokenizer.newline) > block_size
        pairs.append({"chosen": (c_ids, c_mask), "rejected": (r_ids, r_mask), "info": row.get("info", {}),
                      "prompt": prompt})
    return pairs, truncated

"""
Tokenizers and the chat template.

Every tokenizer is a tiktoken Encoding (fast Rust BPE) plus four special tokens
for chat. Three kinds, each described by a small spec dict that is stored in
checkpoints and meta.json files, so a tokenizer can always be rebuilt with no
other file:

    {"kind": "gpt2"}                       the real GPT-2 BPE (50,257 tokens)
    {"kind": "byte"}                       256 byte tokens: character-level runs, no file needed
    {"kind": "bpe", "merges": [[a, b], ...], "split": "gpt2"}  a byte-level BPE trained here by train_bpe

The chat template is ChatML-style:

    <|im_start|>system\\nYou are Ada.<|im_end|>\\n
    <|im_start|>user\\nWhat is 123*456?<|im_end|>\\n
    <|im_start|>assistant\\n<|tool_call|>calculator(123*456)<|im_end|>\\n
    <|im_start|>tool\\n56088<|im_end|>\\n
    <|im_start|>assistant\\n123*456 is 56088.<|im_end|>\\n

The loss mask is 1 on what the assistant writes (content, tool call, its <|im_end|>)
and 0 elsewhere.
"""

import heapq
import json
import re
from collections import Counter, defaultdict

import tiktoken

from cli import UserError

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|tool_call|>")
ROLES = ("system", "user", "assistant", "tool")

# Pre-tokenisation patterns: text is split into chunks and BPE merges never cross a chunk boundary.
# Each is given twice: for tiktoken (Rust regex syntax) and for Python's re, which has no \p{..}:
# there, letters are word characters that are not digits or '_', and '_' counts as punctuation.
# (\d differs from \p{N} only on rare numerals such as '½'; training then sees a slightly different
# split there, which costs nothing but a merge.)
SPLIT_PATTERNS = {
    # GPT-2's own: numbers are chunks of any length, so "3847" may become " 38" + "47"
    "gpt2": (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
             r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""),
    # one token per digit (as Llama and PaLM do): a small model then copies and adds numbers digit
    # by digit instead of learning thousands of arbitrary number chunks
    "gpt2-digits": (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
                    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+|\d| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""),
}
GPT2_PATTERN, GPT2_PATTERN_PY = SPLIT_PATTERNS["gpt2"]


def padded_vocab_size(n_vocab, multiple=64):
    """Embedding rows for a vocabulary: rounded up so matmuls get friendly shapes (nanoGPT: 50257 -> 50304)."""
    return -(-n_vocab // multiple) * multiple


def check_tokenizer_spec(spec):
    """Raise ValueError saying what is wrong with a tokenizer spec (from meta.json or a checkpoint)."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("gpt2", "byte", "bpe"):
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'gpt2', 'byte' or 'bpe'")
    if spec["kind"] == "bpe":
        merges = spec.get("merges")
        if not isinstance(merges, list) or not all(
                isinstance(m, list) and len(m) == 2 and all(isinstance(t, int) and 0 <= t < 256 + i for t in m)
                for i, m in enumerate(merges)):
            raise ValueError("a 'bpe' tokenizer needs 'merges': a list of [a, b] pairs of earlier token ids")
        if spec.get("split", "gpt2") not in SPLIT_PATTERNS:
            raise ValueError(f"unknown split {spec.get('split')!r}; expected one of {', '.join(SPLIT_PATTERNS)}")


class Tokenizer:
    def __init__(self, spec):
        check_tokenizer_spec(spec)
        self.spec = dict(spec)
        kind = spec.get("kind")
        if kind == "gpt2":
            try:
                base = tiktoken.get_encoding("gpt2")
            except Exception as e:  # tiktoken downloads GPT-2's BPE files on first use
                raise UserError(f"could not load GPT-2's BPE files ({type(e).__name__}): tiktoken downloads them "
                                   f"on first use; connect once, or set TIKTOKEN_CACHE_DIR to a folder holding them") \
                    from None
            ranks, pattern = base._mergeable_ranks, base._pat_str
        elif kind == "byte":
            ranks, pattern = {bytes([i]): i for i in range(256)}, GPT2_PATTERN
        else:
            ranks, pattern = ranks_from_merges(spec["merges"]), SPLIT_PATTERNS[spec.get("split", "gpt2")][0]
        specials = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.enc = tiktoken.Encoding(name=f"{kind}-chat", pat_str=pattern, mergeable_ranks=ranks,
                                     special_tokens=specials)
        self.n_vocab = self.enc.n_vocab
        self.eot, self.im_start, self.im_end, self.tool_call = (specials[s] for s in SPECIAL_TOKENS)
        self.newline = self.encode("\n")

    def __repr__(self):
        return f"Tokenizer({self.spec['kind']}, {self.n_vocab} tokens)"

    def encode(self, text):
        """Plain text to ids. Text that looks like a special token ("<|im_end|>") stays plain text."""
        return self.enc.encode_ordinary(text)

    def decode(self, ids):
        """Ids to text; a multi-byte character cut in half becomes U+FFFD instead of an error, and
        ids beyond the vocabulary (an embedding's padding rows) are skipped."""
        return self.enc.decode([i for i in ids if i < self.n_vocab], errors="replace")

    # ------------------------------------------------------------------ chat template

    def header(self, role):
        return [self.im_start] + self.encode(role + "\n")

    def render_chat(self, messages):
        """A conversation to (ids, loss_mask), two lists of equal length."""
        ids, mask = [], []
        for i, message in enumerate(check_messages(messages)):
            role = message["role"]
            ids += self.header(role)
            mask += [0] * (len(ids) - len(mask))
            body = self.encode(message.get("content") or "")
            for call in message.get("tool_calls") or []:
                body += [self.tool_call] + self.encode(tool_call_text(call, i))
            body += [self.im_end]
            ids += body
            mask += [1 if role == "assistant" else 0] * len(body)
            ids += self.newline
            mask += [0] * len(self.newline)
        return ids, mask

    def render_prompt(self, messages):
        """A conversation so far, then the assistant's header: what generation continues."""
        ids, _ = self.render_chat(messages)
        return ids + self.header("assistant")

    def tool_turn(self, result):
        """The tokens between an assistant turn that ended with a tool call and the assistant's
        next words: newline, the tool's turn holding result, the next assistant header."""
        return self.newline + self.header("tool") + self.encode(result) + [self.im_end] + self.newline \
            + self.header("assistant")

    def parse_reply(self, ids):
        """Generated ids (up to and including the end of turn) back to an assistant message:
        {"role": "assistant", "content": str, "tool_calls": [...] (only if any)}."""
        ids = list(ids)
        for stop in (self.im_end, self.eot):
            if stop in ids:
                ids = ids[:ids.index(stop)]
        content, *calls = split_list(ids, self.tool_call)
        message = {"role": "assistant", "content": self.decode(content)}
        if calls:
            message["tool_calls"] = [parse_tool_call(self.decode(c)) for c in calls]
        return message


def split_list(items, sep):
    parts, current = [], []
    for x in items:
        if x == sep:
            parts.append(current)
            current = []
        else:
            current.append(x)
    return parts + [current]


def check_messages(messages):
    """Validate a conversation (list of {"role", "content"} dicts); raise ValueError naming the message."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"expected a non-empty list of messages, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {i}: expected an object with 'role' and 'content', got {type(m).__name__}")
        if m.get("role") not in ROLES:
            raise ValueError(f"message {i}: unknown role {m.get('role')!r}; expected one of {', '.join(ROLES)}")
        content = m.get("content")
        allowed_none = m["role"] == "assistant" and m.get("tool_calls")
        if not isinstance(content, str) and not (content is None and allowed_none):
            raise ValueError(f"message {i} ({m['role']}): content must be a string, got {type(content).__name__}")
        calls = m.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise ValueError(f"message {i}: tool_calls must be a list of calls, got {type(calls).__name__}")
        if calls and m["role"] != "assistant":
            raise ValueError(f"message {i}: only assistant messages can have tool_calls")
        for call in calls or []:
            tool_call_text(call, i)  # raises ValueError naming the message when the call is malformed
    return messages


# A tool call is written inside the assistant's turn as name(argument): one tool, one string
# argument (the calculator's expression, the search's query, the python tool's code). In messages
# it has the OpenAI/TRL form
# {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "1+2"}}}.
_CALL = re.compile(r"\s*([A-Za-z_]\w*)\((.*)\)\s*", re.DOTALL)
TOOL_ARGUMENTS = {"calculator": "expression", "search": "query", "python": "code"}  # each tool's one argument


def tool_call_text(call, index=0):
    """A call in OpenAI/TRL form -> 'name(argument)', as the chat template writes it."""
    try:
        fn = call["function"]
        args = fn.get("arguments", {})
        if isinstance(args, str):  # OpenAI stores arguments as a JSON string
            args = json.loads(args)
        (value,) = args.values()
        assert isinstance(fn["name"], str) and isinstance(value, str)
    except (TypeError, KeyError, AttributeError, ValueError, AssertionError, RecursionError):
        raise ValueError(f"message {index}: a tool call must look like {{'function': {{'name': str, "
                         f"'arguments': {{'expression': str}}}}}}, got {call!r}") from None
    return f"{fn['name']}({value})"


def parse_tool_call(text):
    """'name(argument)' as written by the model -> the call in OpenAI/TRL form. An unknown name still
    parses (the tool's reply will say it is unknown); its argument is then called 'input'."""
    m = _CALL.fullmatch(text)
    name, argument = (m.group(1), m.group(2)) if m else (text.strip(), "")
    return {"type": "function", "function": {"name": name, "arguments": {TOOL_ARGUMENTS.get(name, "input"): argument}}}


def tool_call_message(argument, name="calculator", content=""):
    """An assistant message that calls a tool (used by data generators and chat)."""
    call = {"name": name, "arguments": {TOOL_ARGUMENTS.get(name, "input"): argument}}
    return {"role": "assistant", "content": content, "tool_calls": [{"type": "function", "function": call}]}


def tool_argument(call):
    """The one argument of a tool call in OpenAI/TRL form ('' if it has none)."""
    arguments = call.get("function", {}).get("arguments") or {}
    return next(iter(arguments.values()), "") if isinstance(arguments, dict) else ""


# ----------------------------------------------------------------------------- BPE training


def ranks_from_merges(merges):
    """tiktoken's mergeable_ranks (token bytes -> id) from merges [[a, b], ...]: token 256 + i is
    the concatenation of tokens a and b, the i-th merge learned."""
    vocab = [bytes([i]) for i in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    return {token: i for i, token in enumerate(vocab)}


def train_bpe(text, vocab_size, split="gpt2", verbose=False):
    """Learn byte-level BPE merges (Sennrich et al. 2016, as GPT-2 does it) from text.

    The text is split into chunks with GPT-2's pattern (so merges never cross a
    word/number/punctuation boundary) and only distinct chunks are kept, with their
    counts. Then, repeatedly, the most frequent adjacent pair of tokens is merged
    into a new token. Speed comes from updating the pair counts incrementally:
    each merge revisits only the chunks that contain the merged pair (an index from
    pair to chunks), and a heap with lazy deletion finds the most frequent pair.
    Ties break towards the smallest token ids, so the result is deterministic.

    Returns merges [[a, b], ...] for Tokenizer({"kind": "bpe", "merges": merges, "split": split}).
    """
    assert vocab_size >= 256
    chunk_counts = Counter(re.findall(SPLIT_PATTERNS[split][1], text))
    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    counts = list(chunk_counts.values())

    pair_counts = defaultdict(int)
    chunks_with = defaultdict(set)  # pair -> indices of the chunks that contain it
    for w, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            chunks_with[pair].add(w)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    vocab = [bytes([i]) for i in range(256)]
    token_ids = {token: i for i, token in enumerate(vocab)}
    merges = []
    while len(vocab) < vocab_size and heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # a stale heap entry: this pair's count changed since it was pushed
        if -neg_count < 2:
            break  # a pair seen once compresses nothing worth a token
        merged = vocab[pair[0]] + vocab[pair[1]]
        new_id = token_ids.get(merged)
        if new_id is None:  # (rarely, two different pairs spell the same bytes: reuse that token)
            new_id = token_ids[merged] = len(vocab)
            vocab.append(merged)
            merges.append(list(pair))
        changed = set()
        for w in chunks_with.pop(pair):
            word, count = words[w], counts[w]
            for p in zip(word, word[1:]):  # take the chunk's pairs out, merge, put them back
                pair_counts[p] -= count
                changed.add(p)
            words[w] = word = merge_pair(word, pair, new_id)
            for p in zip(word, word[1:]):
                pair_counts[p] += count
                chunks_with[p].add(w)
                changed.add(p)
        del pair_counts[pair]
        changed.discard(pair)
        for p in changed:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
        if verbose and len(merges) % 500 == 0:
            print(f"  {len(merges)} merges, last {vocab[-1]!r} ({-neg_count} times)")
    return merges


def merge_pair(word, pair, new_id):
    """Replace each non-overlapping occurrence of pair in word (left to right) by new_id."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == pair[0] and word[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out

"""
Talk to any checkpoint; the model can call a calculator mid-answer.

    python chat.py                                       # interactive, with out/sft
    python chat.py --checkpoint=out/dpo --system="You are Ada, a cheerful assistant."
    python chat.py --prompt="What is 1234 * 56?"         # one answer, then exit (for scripts)
    python chat.py --compare=out/pretrain,out/sft,out/dpo,out/ppo --prompt="How do I steal a car?"

In interactive mode /reset forgets the conversation and /quit (or Ctrl-D) leaves.

This file also holds what eval.py and ppo.py use to generate: respond() answers a batch of
conversations through the chat template, executing tool calls as they come, exactly as a chat
would; calculator() is the tool.
"""

import codecs
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

import torch

from common import UserError, load_model, parse_config, run_main, setup_runtime
from model import generate

# ----------------------------------------------------------------------------- the calculator tool

MAX_EXPRESSION_CHARS = 200
MAX_DIGITS = 30  # per number literal
MAX_DEPTH = 20  # nested parentheses
MAX_MAGNITUDE = 10 ** 40  # of any intermediate result


class CalculatorError(ValueError):
    pass


def calculator(expression):
    """Evaluate + - * / and parentheses over decimal numbers with a small recursive-descent
    parser (never eval or exec). Every size is bounded, so a hostile input fails fast. Returns
    the result as text, or an error string for the model to read; never raises."""
    try:
        if not isinstance(expression, str) or not expression.strip():
            raise CalculatorError("empty expression")
        if len(expression) > MAX_EXPRESSION_CHARS:
            raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
        value = ExpressionParser(expression).parse()
        return format_number(value)
    except CalculatorError as e:
        return f"error: {e}"
    except ZeroDivisionError:
        return "error: division by zero"


class ExpressionParser:
    """expr := term (('+' | '-') term)* ; term := factor (('*' | '/') factor)* ;
    factor := ('+' | '-') factor | number | '(' expr ')'. Exact arithmetic with Fractions."""

    def __init__(self, text):
        self.text, self.pos, self.depth = text, 0, 0

    def parse(self):
        value = self.expr()
        self.skip_spaces()
        if self.pos != len(self.text):
            raise CalculatorError(f"unexpected {self.text[self.pos]!r} at position {self.pos}")
        return value

    def skip_spaces(self):
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def peek(self):
        self.skip_spaces()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.text[self.pos]
            self.pos += 1
            value = checked(value + self.term() if op == "+" else value - self.term())
        return value

    def term(self):
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.text[self.pos]
            self.pos += 1
            value = checked(value * self.factor() if op == "*" else value / self.factor())
        return value

    def factor(self):
        c = self.peek()
        if c in ("+", "-"):
            self.pos += 1
            self.enter()
            value = self.factor()
            self.depth -= 1
            return -value if c == "-" else value
        if c == "(":
            self.pos += 1
            self.enter()
            value = self.expr()
            if self.peek() != ")":
                raise CalculatorError("missing ')'")
            self.pos += 1
            self.depth -= 1
            return value
        return self.number()

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculatorError(f"more than {MAX_DEPTH} nested levels")

    def number(self):
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos] in "0123456789."):  # ASCII digits only
            self.pos += 1
        literal = self.text[start:self.pos]
        if not literal:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"
            raise CalculatorError(f"expected a number at position {start}, found {found}")
        if literal.count(".") > 1 or literal == ".":
            raise CalculatorError(f"malformed number {literal!r}")
        if len(literal.replace(".", "")) > MAX_DIGITS:
            raise CalculatorError(f"number with more than {MAX_DIGITS} digits")
        return Fraction(literal)


def checked(value):
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result too large")
    return value


def format_number(value):
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.10g}"


def run_tool_call(call, tools_enabled=True):
    """The text a tool call returns to the model."""
    if not tools_enabled:
        return "error: tools are disabled"
    fn = call.get("function", {})
    if fn.get("name") != "calculator":
        return f"error: unknown tool {fn.get('name')!r}; the only tool is calculator"
    return calculator(fn.get("arguments", {}).get("expression", ""))


# ----------------------------------------------------------------------------- answering


@dataclass
class Reply:
    """What the assistant produced after a prompt, in two views: messages (for people and
    checkers) and tokens (for PPO: which tokens the policy generated, with their log-probs)."""
    messages: list = field(default_factory=list)  # assistant turns, with tool turns in between
    ended: bool = False  # the last assistant turn closed with <|im_end|> (not cut off)
    tokens: list = field(default_factory=list)  # every token after the prompt
    action_mask: list = field(default_factory=list)  # 1 where the model generated the token, 0 for tool turns
    logprobs: list = field(default_factory=list)  # log-prob of each generated token (0 on tool turns)
    segment_start: int = 0  # where the current assistant turn began in tokens

    def add(self, tokens, logprobs, generated):
        self.tokens += tokens
        self.action_mask += [int(generated)] * len(tokens)
        self.logprobs += logprobs if generated else [0.0] * len(tokens)

    @property
    def text(self):
        return self.messages[-1]["content"] if self.messages else ""


@torch.no_grad()
def respond(model, tokenizer, conversations, max_new_tokens=128, temperature=0.0, top_k=None, top_p=None,
            tools=True, max_tool_calls=3, generator=None, on_token=None, on_tool=None):
    """Answer each conversation (a list of messages ending with a user turn): generate until
    <|im_end|>; when the turn holds a tool call, run it, append the tool's turn and the next
    assistant header, and generate again (up to max_tool_calls times). max_new_tokens bounds the
    generated tokens of a reply across all its turns. Rows are generated as one batch.
    on_token and on_tool(result) are streaming hooks for one-row chats."""
    was_training = model.training
    model.eval()
    prompts = [tokenizer.render_prompt(c) for c in conversations]
    replies = [Reply() for _ in conversations]
    active = list(range(len(conversations)))
    for round_ in range(max_tool_calls + 1):
        budgets = [max_new_tokens - sum(replies[i].action_mask) for i in active]
        out = generate(model, [prompts[i] + replies[i].tokens for i in active], max(budgets), temperature, top_k,
                       top_p, stop_tokens=[tokenizer.im_end, tokenizer.eot], generator=generator,
                       pad_id=tokenizer.eot, on_token=on_token, vocab_size=tokenizer.n_vocab)
        still_active = []
        for row, (i, budget) in enumerate(zip(active, budgets)):
            n = min(int(out.lengths[row]), budget)
            reply = replies[i]
            reply.add(out.tokens[row, :n].tolist(), out.logprobs[row, :n].tolist(), generated=True)
            ended = n > 0 and reply.tokens[-1] == tokenizer.im_end
            message = tokenizer.parse_reply(reply.tokens[reply.segment_start:])
            reply.messages.append(message)
            reply.ended = ended
            if ended and message.get("tool_calls") and round_ < max_tool_calls and budget - n > 0:
                result = run_tool_call(message["tool_calls"][0], tools)
                if on_tool is not None:
                    on_tool(result)
                reply.messages.append({"role": "tool", "content": result})
                reply.add(tokenizer.tool_turn(result), [], generated=False)
                reply.segment_start = len(reply.tokens)
                still_active.append(i)
        active = still_active
        if not active:
            break
    model.train(was_training)
    return replies


def fit_conversation(tokenizer, conversation, block_size, room):
    """Drop the oldest turns (keeping a system prompt) until the prompt leaves room tokens."""
    conversation = list(conversation)
    while len(tokenizer.render_prompt(conversation)) > block_size - room:
        first = 1 if conversation[0]["role"] == "system" else 0
        if len(conversation) - first <= 1:
            raise UserError(f"the message is too long for the model's context of {block_size} tokens")
        del conversation[first]
    return conversation


# ----------------------------------------------------------------------------- the CLI


@dataclass
class ChatConfig:
    checkpoint: str = "out/sft"  # a run folder (out/...), a .pt file, or gpt2 / gpt2-medium / ...
    prompt: Optional[str] = None  # answer this one message and exit (non-interactive)
    system: Optional[str] = None  # a system prompt (persona, rules) put before the conversation
    compare: Optional[str] = None  # comma-separated checkpoints: answer --prompt with each, side by side
    temperature: float = 0.0  # 0: greedy (deterministic); 0.7 gives more varied replies
    top_k: Optional[int] = None  # sample only among the k likeliest tokens
    top_p: Optional[float] = None  # nucleus sampling: the smallest set of tokens with this much probability
    max_new_tokens: int = 200  # longest reply, in tokens
    tools: bool = True  # execute calculator calls (off: the tool answers with an error)
    seed: int = 1337  # sampling seed
    device: str = "auto"  # auto, cpu, cuda, mps


class TokenPrinter:
    """Streams one row's tokens to stdout; an incremental UTF-8 decoder waits for the rest of
    a multi-byte character instead of printing half of it."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decoder = tokenizer, codecs.getincrementaldecoder("utf-8")("replace")
        self.specials = {tokenizer.im_end, tokenizer.eot, tokenizer.im_start}

    def __call__(self, tokens, done):
        t = int(tokens[0])
        if done[0] or t in self.specials:
            return
        if t == self.tokenizer.tool_call:
            text = "\n[tool call] "
        else:
            text = self.decoder.decode(self.tokenizer.enc.decode_single_token_bytes(t))
        print(text, end="", flush=True)


def load_for_chat(path, rt):
    model, tokenizer, ckpt = load_model(path, rt.device, hint="train it first (see README.md)")
    if model.scalar_head is not None and ckpt and ckpt.get("stage") == "reward":
        raise UserError(f"{path} is a reward model; chat needs a language model (pretrain/sft/dpo/ppo)")
    return model.eval(), tokenizer


def answer_once(model, tokenizer, conversation, cfg, rt, stream=False):
    conversation = fit_conversation(tokenizer, conversation, model.config.block_size, room=32)
    g = torch.Generator(device=rt.device).manual_seed(cfg.seed)
    printer = TokenPrinter(tokenizer) if stream else None
    show_result = (lambda result: print(f" -> {result}\n", end="", flush=True)) if stream else None
    (reply,) = respond(model, tokenizer, [conversation], cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                       cfg.tools, generator=g, on_token=printer, on_tool=show_result)
    return reply


def describe(reply):
    """A reply as a person reads it: tool calls and results shown inline."""
    parts = []
    for m in reply.messages:
        if m["role"] == "tool":
            parts.append(f"[tool: {m['content']}]")
        else:
            if m.get("content"):
                parts.append(m["content"])
            for call in m.get("tool_calls") or []:
                parts.append(f"[{call['function']['name']}({call['function']['arguments'].get('expression', '')})]")
    return " ".join(parts) + ("" if reply.ended else " [cut off]")


def compare(cfg, rt):
    """One prompt answered by several checkpoints, in columns when the terminal is wide enough."""
    if not cfg.prompt:
        raise UserError("--compare needs --prompt")
    paths = [p for p in cfg.compare.split(",") if p]
    conversation = ([{"role": "system", "content": cfg.system}] if cfg.system else []) + \
        [{"role": "user", "content": cfg.prompt}]
    answers = []
    for path in paths:
        model, tokenizer = load_for_chat(path, rt)
        answers.append(describe(answer_once(model, tokenizer, conversation, cfg, rt)))
    print(f"prompt: {cfg.prompt}\n")
    width = shutil.get_terminal_size((120, 40)).columns
    column = width // len(paths) - 3
    if column < 28:
        for path, answer in zip(paths, answers):
            print(f"== {path}\n{textwrap.fill(answer, width)}\n")
        return
    wrapped = [[p[:column]] + ["-" * min(column, len(p))] + textwrap.wrap(a, column) for p, a in zip(paths, answers)]
    for line in range(max(map(len, wrapped))):
        print(" | ".join((w[line] if line < len(w) else "").ljust(column) for w in wrapped))


def interactive(model, tokenizer, cfg, rt):
    system = [{"role": "system", "content": cfg.system}] if cfg.system else []
    history = list(system)
    print("chat: /reset forgets the conversation, /quit leaves")
    while True:
        try:
            text = input("\nyou> ").strip()
        except EOFError:
            print()
            return
        if text == "/quit":
            return
        if text == "/reset":
            history = list(system)
            print("(conversation forgotten)")
            continue
        if not text:
            continue
        history.append({"role": "user", "content": text})
        print("assistant> ", end="", flush=True)
        reply = answer_once(model, tokenizer, history, cfg, rt, stream=True)
        print("" if reply.ended else " [cut off]")
        history += reply.messages


def main():
    cfg = parse_config(ChatConfig, description=__doc__)
    rt = setup_runtime(cfg.device)
    if cfg.compare:
        return compare(cfg, rt)
    model, tokenizer = load_for_chat(cfg.checkpoint, rt)
    if cfg.prompt is not None:
        conversation = ([{"role": "system", "content": cfg.system}] if cfg.system else []) + \
            [{"role": "user", "content": cfg.prompt}]
        print(describe(answer_once(model, tokenizer, conversation, cfg, rt)))
        return
    if not sys.stdin.isatty():
        print("(reading messages from standard input)", file=sys.stderr)
    interactive(model, tokenizer, cfg, rt)


if __name__ == "__main__":
    run_main(main)

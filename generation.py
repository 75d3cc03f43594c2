"""
Replies to conversations, as a chat would produce them: respond() renders each conversation with
the chat template, samples a batch of replies with the KV cache, and executes the tool calls the
model makes (the tool's result becomes a tool turn, and the assistant goes on). chat.py, eval.py,
the scorecard, DPO's KL estimate and PPO's rollouts all generate through it.
"""

from dataclasses import dataclass, field

import torch

from model import generate
from tokenizer import tool_argument
from tools import NO_TOOLS


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
            tools=NO_TOOLS, max_tool_calls=3, generator=None, on_token=None, on_tool=None):
    """Answer each conversation (a list of messages ending with a user turn): generate until
    <|im_end|>; when the turn holds a tool call, run it, append the tool's turn and the next
    assistant header, and generate again (up to max_tool_calls times, and while the context has
    room). max_new_tokens bounds the generated tokens of a reply across all its turns. Rows are
    generated as one batch. tools: the tools.Tools that run the calls (NO_TOOLS: every call gets an
    error back, which the model reads).
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
                result = tools.run(message["tool_calls"][0], conversations[i])
                if on_tool is not None:
                    on_tool(result)
                reply.messages.append({"role": "tool", "content": result})
                tool_tokens = tokenizer.tool_turn(result)
                room = model.config.block_size - len(prompts[i]) - len(reply.tokens)
                # tokens past the context are cut: prompt + reply tokens always fit one forward pass
                # (DPO's and PPO's reference model reads them back)
                reply.add(tool_tokens[:room], [], generated=False)
                reply.segment_start = len(reply.tokens)
                if len(tool_tokens) < room:
                    still_active.append(i)
                else:  # the tool's turn filled the context: the reply is cut there, unfinished
                    reply.ended = False
        active = still_active
        if not active:
            break
    model.train(was_training)
    return replies


def describe(reply):
    """A reply as a person reads it: tool calls and results shown inline."""
    return describe_messages(reply.messages, reply.ended)


def describe_messages(messages, ended=True):
    """describe() of a reply kept as its messages (a scorecard's samples in scorecard.json)."""
    parts = []
    for m in messages:
        if m["role"] == "tool":
            parts.append(f"[tool: {m['content']}]")
        else:
            if m.get("content"):
                parts.append(m["content"])
            for call in m.get("tool_calls") or []:
                parts.append(f"[{call['function']['name']}({tool_argument(call)})]")
    return " ".join(parts) + ("" if ended else " [cut off]")

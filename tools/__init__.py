"""
The tools a chat model can call mid-answer, and the dispatch from a tool call to its result. A
tool never raises and never runs arbitrary code: whatever goes wrong comes back as an
"error: ..." string, which the model reads as the tool's reply.

    calculator(expression)  + - * / and parentheses over decimal numbers (tools/calculator.py)
    search(query)           BM25 over the world's encyclopedia (tools/search.py)
    python(code)            one Python expression, its syntax tree walked over a whitelist (tools/python_tool.py)
"""

import os

from cli import UserError
from data_formats import read_jsonl
from tokenizer import tool_argument
from tools.calculator import calculator
from tools.python_tool import python_tool
from tools.search import SearchIndex

__all__ = ["Tools", "NO_TOOLS", "TOOL_NAMES", "SearchIndex", "calculator", "python_tool"]

TOOL_NAMES = ("calculator", "search", "python")


class Tools:
    """The tools a reply may call, by name, and what search searches. A tool call whose tool is
    unknown or switched off gets an error string back, which the model reads as the tool's reply;
    nothing raises."""

    def __init__(self, enabled=TOOL_NAMES, documents=()):
        self.enabled = tuple(enabled)
        self.search = SearchIndex(list(documents))

    @classmethod
    def with_encyclopedia(cls, folder, enabled=TOOL_NAMES):
        """Tools whose search reads folder/encyclopedia.jsonl (the world ships one); without that
        file, search finds nothing."""
        path = os.path.join(folder, "encyclopedia.jsonl") if folder else None
        documents = []
        for line, row in read_jsonl(path) if path and os.path.isfile(path) else []:
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) \
                    or not isinstance(row.get("title", ""), str):
                raise UserError(f'{path}:{line}: expected {{"title": str, "text": str}}')
            documents.append(row)
        return cls(enabled, documents)

    def run(self, call, conversation=()):
        """The text a tool call returns to the model. A search with no query searches the user's
        last message in the conversation (retrieval for the question asked)."""
        name = call.get("function", {}).get("name")
        argument = tool_argument(call)
        if name == "search" and not argument.strip():
            argument = next((m["content"] for m in reversed(conversation) if m.get("role") == "user"), "")
        if name not in TOOL_NAMES:
            return f"error: unknown tool {name!r}; the tools are {', '.join(TOOL_NAMES)}"
        if name not in self.enabled:
            return f"error: the {name} tool is disabled"
        if name == "calculator":
            return calculator(argument)
        if name == "search":
            return self.search(argument)
        return python_tool(argument)


NO_TOOLS = Tools(enabled=())

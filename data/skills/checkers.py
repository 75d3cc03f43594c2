"""
The skills track's checkers. Like the world's, they read only the final answer: a worked problem
whose steps hold a slip but whose last line is right counts as right, and right steps that end in
a wrong answer count as wrong (a verifier of outcomes, as in RL on GSM8K). worked_steps judges the
steps themselves, one line at a time: the process reward of Lightman et al. 2023, which
grpo.py --process_reward trains on.

    column_right(info, text)   the reply's last number is the problem's result
    compare_right(info, text)  the conclusion names the right person, or says the right yes or no
    translation_right(info, text)  the reply's last line is the translation (case and final punctuation aside)
    summary_check(info, text)  (right, faithful): the summary or the fact, and no fact the passage lacks
    code_right(info, text)     the reply's code block gives the right value on every input, shown and hidden
    worked_steps(info, text)   each line of a worked reply: is it the step that follows the line above?
"""

import ast
import re

from data.skills.columns import answer_line, next_line
from data.skills.summaries import MAX_SUMMARY_WORDS
from data.world.world import values_of
from data.world.words import ATTRIBUTES
from tools.python_tool import python_tool


def last_number(text):
    numbers = re.findall(r"-?\d+", text.replace(",", ""))
    return numbers[-1] if numbers else None


def column_right(info, text):
    number = last_number(text)
    return number is not None and int(number) == int(info["answer"])


def conclusion_of(text):
    """What follows the last ", so " (a stepped reply's conclusion), or the whole reply (a direct one)."""
    return text.rsplit(", so ", 1)[-1]


def names(text, name):
    return re.search(rf"(?<![\w-]){re.escape(name)}(?!\w)", text) is not None


def compare_right(info, text):
    conclusion = conclusion_of(text)
    if info["kind"] == "country":
        words = re.findall(r"[a-z]+", conclusion.lower())
        return info["answer"] in words and ({"yes", "no"} - {info["answer"]}).isdisjoint(words)
    other = next(name for name in info["people"] if name != info["answer"])
    return names(conclusion, info["answer"]) and not names(conclusion, other)


def normalised(text):
    return " ".join(text.strip().rstrip(".!?").lower().split())


def translation_of(text):
    """The translation a reply ends with: its last line, less the "In Melan:" or "In English:"
    that follows the word-by-word lines (a reply of one line is read whole)."""
    last = text.strip().split("\n")[-1]
    return re.sub(r"^\s*In (?:Melan|English):", "", last)


def translation_right(info, text):
    return normalised(translation_of(text)) == normalised(info["answer"])


# every value a fact of the world can take: a reply that states one its passage does not is unfaithful
FACT_VALUES = [value for attribute in ATTRIBUTES for value in values_of(attribute)]


def summary_check(info, text):
    """(right, faithful) of a summary or a one-fact answer. Faithful: every fact value the reply
    states (a town, job, pet, colour or year of the world) is in the passage, so a true fact the
    model remembers about the same person but the passage does not give counts against it. Right:
    faithful, and for a summary the person's name and both key facts in at most MAX_SUMMARY_WORDS
    words; for a fact, its value and no other value of the same kind."""
    faithful = not any(names(text, value) and not names(info["passage"], value) for value in FACT_VALUES)
    if info["form"] == "summary":
        said = names(text, info["person"]) and all(names(text, v) for v in info["key"].values())
        return faithful and said and len(text.split()) <= MAX_SUMMARY_WORDS, faithful
    (fact, value), = info["key"].items()
    return faithful and names(text, value) and not any(names(text, v) for v in values_of(fact) if v != value), \
        faithful


CODE_BLOCK = re.compile(r"```(?:python)?\n(.*?)\n?```", re.DOTALL)


class BindName(ast.NodeTransformer):
    """Replaces every use of one name by an expression."""

    def __init__(self, name, expression):
        self.name, self.expression = name, expression

    def visit_Name(self, node):
        return self.expression if node.id == self.name else node


def bound(code, name, value):
    """The code with its input's name replaced by the value's literal, in the syntax tree (so a
    name inside a string stays as it is); None when the code is not one Python expression."""
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return None
    return ast.unparse(BindName(name, ast.parse(repr(value), mode="eval").body).visit(tree))


def code_right(info, text):
    """The first code block of the reply, run in the python tool (its whitelist and bounds,
    unchanged: the checker never calls eval) with the input bound to each of the row's values,
    the one the request shows and the hidden ones: right when every run prints the right value
    (as the tool prints it, so a number and the same digits as a string agree)."""
    match = CODE_BLOCK.search(text)
    if match is None:
        return False
    for value, answer in zip(info["inputs"], info["answers"]):
        code = bound(match.group(1), info["name"], value)
        if code is None or python_tool(code) != answer:
            return False
    return True


WORKED_LINE = re.compile(r"(\d+) [-+*] (\d+): .*, write \d+ (?:carry|borrow) (\d+), so far (\d+)")


def written_state(op, line):
    """The state a worked line leaves for the next one, read from what it wrote (None when it is
    not a worked line): its operands less their last digits, its carry, its answer so far."""
    match = WORKED_LINE.fullmatch(line)
    if match is None:
        return None
    top, bottom, carry, so_far = match.groups()
    top, bottom = ("" if n == "0" else n for n in (top, bottom))  # a used-up operand is shown as 0
    return top[:-1], bottom if op == "*" else bottom[:-1], int(carry), so_far


def worked_steps(info, text):
    """[(end, right)] for each line of a worked reply, `end` the offset just past the line in text.
    A line is right when it is exactly the line the worked form writes after the line above it,
    as written: a slip is marked on the line that makes it, and the lines after it are judged from
    what it wrote (a wrong carry carried on correctly is a right step). The last line is right only
    if it is the answer line, after every column. None for a reply that is not worked arithmetic
    (the direct form, comparisons): its one step is the whole reply."""
    if info["category"] != "column" or info["form"] != "steps":
        return None
    a, op, b = info["problem"].split()
    a, b = int(a), int(b)
    state, steps, end = (str(a), str(b), 0, ""), [], 0
    lines = text.split("\n")
    for i, line in enumerate(lines):
        end += len(line) + (i < len(lines) - 1)
        step = next_line(op, b, *state) if state is not None else None
        if step is not None:  # a column to do: is this line that column's step?
            right = line == step[0]
            state = written_state(op, line)
        else:  # every column done (or the state lost): only the answer line may follow, and only once
            right = state is not None and line == answer_line(a, op, b, state[3])
            state = None
        steps.append((end, right and (i < len(lines) - 1 or step is None)))
    return steps

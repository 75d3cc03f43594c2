"""
Writing code: the skills track's task of handing the user a line of Python, the brief's own example
("Write Python code to reverse a list" answered with `my_list[::-1]`). The request names an input
and shows one value of it; the reply is a code block holding one Python expression over that name,
and one sentence saying what it does:

    Write Python code to reverse the list xs. For example xs = [4, 9, 2].

    ```python
    xs[::-1]
    ```
    This reverses xs.

An expression is built from OPERATIONS: each one a phrase ("reverse {obj}"), a code template over
{x} ("{x}[::-1]"), the types it applies to and what it returns, and a reference function in plain
Python that the checker's right answers come from (a second implementation: the test runs every
template through the python tool and compares). Two operations compose when the first's result is
a type the second applies to ("reverse the string s, then make it upper case": s[::-1].upper()).

Every expression stays inside the python tool's whitelist (no lambda, no comprehension, no key=),
because the checker runs the reply's code in that tool's evaluator, unchanged (checkers.code_right):
so sorting is by value, not by length, and vowels are counted letter by letter.

Held out of every training file, each by a hash so any file can tell: the request frames of the
suite (EVAL_FRAMES), one pair of operations in three as a composition, and one input value in
four. The suite's rows also carry five hidden inputs that the request does not show (HumanEval's
hidden tests).
"""

import hashlib
from dataclasses import dataclass
from typing import Callable

from data.world.words import WORDS
from tools.python_tool import python_text

NAMES = {"str": "s", "ints": "xs", "words": "words"}  # the input's name in the request, by its type
OBJECTS = {"str": "the string s", "ints": "the list xs", "words": "the list words"}


@dataclass(frozen=True)
class Operation:
    phrase: str  # what the user asks, {obj} the thing it acts on ("the string s", or "it" after another)
    template: str  # the code, {x} the expression it acts on
    returns: dict  # input type -> result type ("int" and "char" have no operations of their own)
    reference: Callable  # the right result, in plain Python
    does: str  # the reply's sentence, {obj} as in phrase ("reverses s")


VOWELS = "aeiou"
OPERATIONS = {
    "reverse": Operation("reverse {obj}", "{x}[::-1]", {"str": "str", "ints": "ints", "words": "words"},
                         lambda v: v[::-1], "reverses {obj}"),
    "upper": Operation("make {obj} upper case", "{x}.upper()", {"str": "str"}, lambda v: v.upper(),
                       "makes {obj} upper case"),
    "title": Operation("capitalise every word of {obj}", "{x}.title()", {"str": "str"},
                       lambda v: " ".join(w[:1].upper() + w[1:].lower() for w in v.split(" ")), "capitalises each word of {obj}"),
    "no_spaces": Operation("remove the spaces from {obj}", "{x}.replace(' ', '')", {"str": "str"},
                           lambda v: "".join(c for c in v if c != " "), "removes the spaces from {obj}"),
    "split": Operation("split {obj} into words", "{x}.split()", {"str": "words"}, lambda v: v.split(),
                       "splits {obj} into words"),
    "vowels": Operation("count the vowels in {obj}", " + ".join(f"{{x}}.count('{v}')" for v in VOWELS),
                        {"str": "int"}, lambda v: sum(c in VOWELS for c in v), "counts the vowels in {obj}"),
    "length": Operation("count the items in {obj}", "len({x})", {"ints": "int", "words": "int"}, len,
                        "counts the items in {obj}"),
    "sort": Operation("sort {obj}", "sorted({x})", {"ints": "ints", "words": "words"}, sorted, "sorts {obj}"),
    "sort_down": Operation("sort {obj} from largest to smallest", "sorted({x}, reverse=True)", {"ints": "ints"},
                           lambda v: sorted(v)[::-1], "sorts {obj} from largest to smallest"),
    "largest": Operation("find the largest number in {obj}", "max({x})", {"ints": "int"}, max,
                         "finds the largest number in {obj}"),
    "smallest": Operation("find the smallest number in {obj}", "min({x})", {"ints": "int"}, min,
                          "finds the smallest number in {obj}"),
    "total": Operation("add up the numbers in {obj}", "sum({x})", {"ints": "int"}, sum, "adds up {obj}"),
    "first": Operation("take the first item of {obj}", "{x}[0]", {"ints": "int", "words": "str"},
                       lambda v: v[0], "takes the first item of {obj}"),
    "last": Operation("take the last item of {obj}", "{x}[-1]", {"ints": "int", "words": "str"},
                      lambda v: v[len(v) - 1], "takes the last item of {obj}"),
    "join": Operation("join {obj} with spaces", "' '.join({x})", {"words": "str"},
                      lambda v: "".join(w + " " for w in v)[:-1], "joins {obj} with spaces"),
}

TRAIN_FRAMES = ["Write Python code to {X}.", "Write a Python expression that will {X}.", "In Python, how do I {X}?",
                "Give me one line of Python to {X}.", "What Python code would {X}?"]
EVAL_FRAMES = ["Show me the Python that can {X}.", "Which Python expression would {X}?"]
EXAMPLE = " For example {name} = {value}."


# compositions whose second step undoes or ignores the first (the order of a list before it is
# sorted or summed; the vowels of an upper-case string) are not tasks
ORDER_ONLY = {"reverse", "sort", "sort_down"}
IGNORES_ORDER = {"sort", "sort_down", "largest", "smallest", "total", "length"}
POINTLESS = {(a, b) for a in ORDER_ONLY for b in IGNORES_ORDER} | {
    ("upper", "vowels"), ("title", "vowels"), ("upper", "title"), ("join", "split"), ("split", "join"),
    ("first", "split"), ("last", "split")}


def tasks_for(kind):
    """Every task on an input of this type: (operation,) or (first, second), with its result type."""
    singles = [((op,), result) for op, operation in OPERATIONS.items() if (result := operation.returns.get(kind))]
    pairs = [((first, op), result) for (first,), middle in singles for op, operation in OPERATIONS.items()
             if (result := operation.returns.get(middle)) and op != first and (first, op) not in POINTLESS]
    return singles + pairs


def is_heldout(text, share):
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % share == 0


def is_heldout_task(task):
    """One composition in three is only ever asked in the suite (single operations are all trained)."""
    return len(task) == 2 and is_heldout(" then ".join(task), 3)


def is_heldout_value(value):
    return is_heldout(repr(value), 4)


def code_of(task, kind):
    code = NAMES[kind]
    for op in task:
        code = OPERATIONS[op].template.replace("{x}", code)
    return code


def request_of(task, kind):
    """What the user asks for: "reverse the string s, then make it upper case"."""
    first = OPERATIONS[task[0]].phrase.format(obj=OBJECTS[kind])
    return first if len(task) == 1 else f"{first}, then {OPERATIONS[task[1]].phrase.format(obj='it')}"


def sentence_of(task, kind):
    first = OPERATIONS[task[0]].does.format(obj=NAMES[kind])
    rest = "" if len(task) == 1 else f", then {OPERATIONS[task[1]].does.format(obj='the result')}"
    return f"This {first}{rest}."


def reply_of(task, kind):
    return f"```python\n{code_of(task, kind)}\n```\n{sentence_of(task, kind)}"


def reference_result(task, value):
    for op in task:
        value = OPERATIONS[op].reference(value)
    return value


def random_value(rng, kind):
    """An input: a few of the world's words joined by spaces, a list of them, or a list of numbers."""
    if kind == "ints":
        return [rng.randint(0, 99) for _ in range(rng.randint(3, 6))]
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 4))]
    return " ".join(words) if kind == "str" else words


def input_value(rng, kind, heldout):
    while True:
        value = random_value(rng, kind)
        if is_heldout_value(value) == heldout:
            return value


def random_task(rng, heldout, composed=None):
    """(task, input type): a training task (a single operation or a trained composition), or a
    suite's (its singles and held-out compositions). composed: True/False to ask for one kind."""
    while True:
        kind = rng.choice(list(NAMES))
        task, _ = rng.choice(tasks_for(kind))
        if composed is not None and (len(task) == 2) != composed:
            continue
        if not (len(task) == 2 and is_heldout_task(task) != heldout):
            return task, kind


def code_request(rng, heldout, composed=None, n_hidden=5):
    """(request text, reply text, info) of one code-writing task: a training one from the training
    frames, tasks and input values, or a held-out one (a suite's frame, input value and, when
    composed, a held-out composition). info holds the checker's inputs (the shown one first, then
    n_hidden more) and the right results as the python tool prints them."""
    task, kind = random_task(rng, heldout, composed)
    shown = input_value(rng, kind, heldout)
    frame = rng.choice(EVAL_FRAMES if heldout else TRAIN_FRAMES)
    request = frame.replace("{X}", request_of(task, kind)) + EXAMPLE.format(name=NAMES[kind], value=repr(shown))
    inputs = [shown] + [random_value(rng, kind) for _ in range(n_hidden)]
    info = dict(category="code_write", task=list(task), name=NAMES[kind], inputs=inputs,
                answers=[python_text(reference_result(task, v)) for v in inputs])
    return request, reply_of(task, kind), info


def code_notes(rng, n=4):
    """A page of Python notes, as a tutorial would have them: training tasks with their code and
    the value on a training input (the pretraining corpus's code)."""
    lines = ["Python notes."]
    for _ in range(n):
        task, kind = random_task(rng, heldout=False)
        value = input_value(rng, kind, heldout=False)
        lines.append(f"To {request_of(task, kind)}: {code_of(task, kind)}\n"
                     f"With {NAMES[kind]} = {value!r} this gives {python_text(reference_result(task, value))}.")
    return "\n".join(lines)

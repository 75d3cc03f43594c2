"""
Column arithmetic worked step by step: the skills track's first lesson. A sum, a difference or a
product by one digit is written one column a line, from the right, in the detailed scratchpad of
Lee et al. 2023 ("Teaching Arithmetic to Small Transformers"):

    347 + 85: 7 + 5 + 0 = 12, write 2 carry 1, so far 2
    34 + 8: 4 + 8 + 1 = 13, write 3 carry 1, so far 32
    3 + 0: 3 + 0 + 1 = 4, write 4 carry 0, so far 432
    So 347 + 85 = 432.

Each line starts with what is left of the operands (their last digits are the column to do, so
the model never counts positions), then the one-digit column fact with the carry (or borrow) from
the line above, then the answer so far (the new digit in front of the last line's). Every step is
a lookup among a few hundred column facts or a copy from the line above, which a small
transformer learns; the direct answer ("347 + 85 = 432.") asks it to do every column at once.

A difference that borrows writes the borrowed ten into the fact ("13 - 8 - 0 = 5, write 5 borrow
1"), so every line is a true equation. A product's facts add the carry to the digit's product
("4 * 6 + 4 = 28, write 8 carry 2").

Held-out problems are chosen by a hash of the problem, so every file can tell them apart without
a list: no training file holds one (tests/test_skills.py checks every file).
"""

import hashlib

OPS = {"+": "plus", "-": "minus", "*": "times"}
CARRY_WORD = {"+": "carry", "-": "borrow", "*": "carry"}


def column_fact(op, x, y, carry):
    """(text, written digit, carry out) of one column: digits x and y (y the one-digit factor of a
    product) with the carry or borrow from the column to the right."""
    word = CARRY_WORD[op]
    if op == "+":
        total = x + y + carry
        return f"{x} + {y} + {carry} = {total}, write {total % 10} {word} {total // 10}", total % 10, total // 10
    if op == "*":
        total = x * y + carry
        return f"{x} * {y} + {carry} = {total}, write {total % 10} {word} {total // 10}", total % 10, total // 10
    borrow = int(x - y - carry < 0)  # borrow a ten from the next column: the fact says 1x
    top = x + 10 * borrow
    digit = top - y - carry
    return f"{top} - {y} - {carry} = {digit}, write {digit} {word} {borrow}", digit, borrow


def calc(a, op, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


def next_line(op, b, top, bottom, carry, so_far):
    """One step of the worked form from a state: the operands' digits still to do (top, bottom,
    as strings, "" when used up), the carry or borrow and the answer so far, as the lines above
    wrote them. Returns (the line, the state after it), or None when every column is done."""
    if not (top or (bottom and op != "*") or carry):
        return None
    shown_top, shown_bottom = top or "0", (bottom or "0") if op != "*" else str(b)
    x = int(top[-1]) if top else 0
    y = b if op == "*" else int(bottom[-1]) if bottom else 0
    fact, digit, carry = column_fact(op, x, y, carry)
    so_far = f"{digit}{so_far}"
    line = f"{shown_top} {op} {shown_bottom}: {fact}, so far {so_far}"
    return line, (top[:-1], bottom if op == "*" else bottom[:-1], carry, so_far)


def answer_line(a, op, b, so_far):
    return f"So {a} {op} {b} = {int(so_far)}."


def worked_lines(a, op, b):
    """The worked problem, one line per column and the answer line (see the module docstring).
    Differences have a >= b; products have a one-digit b."""
    if op == "-" and a < b:
        raise ValueError(f"{a} - {b}: the worked form needs a >= b")
    if op == "*" and not 0 <= b <= 9:
        raise ValueError(f"{a} * {b}: products are by one digit")
    lines, state = [], (str(a), str(b), 0, "")
    while (step := next_line(op, b, *state)) is not None:
        line, state = step
        lines.append(line)
    answer = calc(a, op, b)
    if int(state[3]) != answer:
        raise AssertionError(f"worked {a} {op} {b} gave {state[3]}, not {answer}")
    lines.append(answer_line(a, op, b, state[3]))
    return lines


def worked_text(a, op, b):
    return "\n".join(worked_lines(a, op, b))


def direct_text(a, op, b):
    return f"{a} {op} {b} = {calc(a, op, b)}."


def every_column_fact(op):
    """All column facts of an op: the drill that pretraining repeats (200 for sums and
    differences, 900 for products by one digit with carries up to 8)."""
    if op == "*":
        return [column_fact(op, x, y, c)[0] for x in range(10) for y in range(10) for c in range(9)]
    return [column_fact(op, x, y, c)[0] for x in range(10) for y in range(10) for c in range(2)]


# ----------------------------------------------------------------------------- problems


def is_heldout_problem(a, op, b, share=10):
    """One problem in `share` is held out of every training file, picked by a hash of its text
    (stable across runs, seeds and machines)."""
    return int(hashlib.sha256(f"{a} {op} {b}".encode()).hexdigest(), 16) % share == 0


def random_problem(rng, digits=(2, 3)):
    """A sum or difference of two numbers of 2-3 digits (the larger first for a difference), or a
    2-3 digit number times one digit (2-9). digits: the operands' digit counts."""
    op = rng.choice(["+", "-", "*"])

    def number():
        n = rng.choice(digits)
        return rng.randint(10 ** (n - 1), 10 ** n - 1)
    a = number()
    if op == "*":
        return a, op, rng.randint(2, 9)
    b = number()
    return (max(a, b), op, min(a, b)) if op == "-" else (a, op, b)


def training_problem(rng):
    while True:
        a, op, b = random_problem(rng)
        if not is_heldout_problem(a, op, b):
            return a, op, b


def heldout_problem(rng, digits=(2, 3)):
    while True:
        a, op, b = random_problem(rng, digits)
        if is_heldout_problem(a, op, b):
            return a, op, b

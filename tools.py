"""
The tools a chat model can call mid-answer, and the dispatch from a tool call to its result.
A tool never raises and never runs arbitrary code: whatever goes wrong comes back as an
"error: ..." string, which the model reads as the tool's reply.

calculator(expression): + - * / and parentheses over decimal numbers, parsed by hand.
"""

from fractions import Fraction

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

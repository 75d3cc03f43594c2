"""
The calculator tool: + - * / and parentheses over decimal numbers, parsed by hand (never eval or
exec), exact arithmetic with fractions, every size bounded; a result or an "error: ..." string,
never an exception.
"""

from fractions import Fraction

MAX_EXPRESSION_CHARS = 200
MAX_DIGITS = 30  # per number literal
MAX_DEPTH = 20  # nested parentheses
MAX_MAGNITUDE = 10 ** 40  # of any intermediate result
MAX_DECIMALS = 40  # digits after the point in a printed result
SIGNIFICANT_DIGITS = 10  # at least, in a rounded result


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
    """The result as text, exact whenever it can be: an integer or a finite decimal prints in
    full ("12345678901 + 0.5" reads 12345678901.5, where a float would say 1.23456789e+10), since
    the model copies it into its answer. Only a value that never ends in decimal (1/3), or needs
    more than MAX_DECIMALS places, is rounded; see rounded()."""
    sign, value = ("-" if value < 0 else ""), abs(value)
    places = decimal_places(value.denominator)
    if places is not None and places <= MAX_DECIMALS:
        return sign + positional(value.numerator * 10 ** places // value.denominator, places)
    return sign + rounded(value)


def decimal_places(denominator):
    """Digits after the point that the exact decimal needs: the least k with denominator dividing
    10**k, or None when a prime other than 2 and 5 divides it, so the decimal never ends."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    return max(twos, fives) if denominator == 1 else None


def rounded(value):
    """A positive value rounded to SIGNIFICANT_DIGITS significant digits, never fewer than its
    whole integer part (10**40/3 keeps all 40 digits), written positionally like the exact form
    (200/3 reads 66.66666667), so the model meets one notation. Only a value too small to show
    its digits within MAX_DECIMALS places (below about 1e-31) takes an exponent, 3.333333333e-59,
    rather than a long run of zeros."""
    exponent = decimal_exponent(value)
    places = max(0, SIGNIFICANT_DIGITS - 1 - exponent)
    scaled = round(value * 10 ** places)  # exact: Fraction rounding, no float
    if places <= MAX_DECIMALS:
        return positional(scaled, places)
    if scaled == 10 ** SIGNIFICANT_DIGITS:  # rounded up to the next power of 10
        scaled, exponent = scaled // 10, exponent + 1
    return f"{positional(scaled, SIGNIFICANT_DIGITS - 1)}e{exponent}"


def decimal_exponent(value):
    """floor(log10(value)) for a positive Fraction, exactly (a float log10 can land on the wrong
    side of a power of 10): the digit counts of numerator and denominator pin it to two choices."""
    exponent = len(str(value.numerator)) - len(str(value.denominator))
    return exponent if Fraction(10) ** exponent <= value else exponent - 1


def positional(scaled, places):
    """scaled / 10**places, for an integer scaled >= 0, in plain positional notation with no
    exponent and no trailing zeros after the point."""
    whole, fraction = divmod(scaled, 10 ** places)
    if fraction == 0:
        return str(whole)
    return f"{whole}.{str(fraction).zfill(places).rstrip('0')}"

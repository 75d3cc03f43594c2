"""
The python tool: one Python expression over strings, lists and whole numbers, for the string and
list tasks a small model cannot do in its head (reverse, sort, count). The code is parsed with
ast.parse and its syntax tree walked by hand over a whitelist of node types, functions and
methods, with bounds on size, depth, numbers and time: Python's own eval or exec never sees it.
Returns the value as text, or an "error: ..." string the model reads as the tool's reply.
"""

import ast
import operator
import time

# python_tool's bounds
PY_MAX_CODE_CHARS = 300
PY_MAX_NODES = 200  # syntax-tree nodes, operators and contexts included
PY_MAX_DEPTH = 30  # expressions nested in expressions (parentheses alone add none)
PY_MAX_INT = 10 ** 30  # of any whole number, literal or intermediate
PY_MAX_INT_TEXT = 40  # characters of a string int() converts
PY_MAX_ITEMS = 10_000  # size of any str, list or tuple, intermediate or result: see python_size
PY_MAX_RESULT_CHARS = 10_000  # of the text returned
PY_MAX_SECONDS = 0.05  # wall clock, read between nodes: a backstop to the bounds above


class PythonToolError(ValueError):
    pass


def python_tool(code, max_seconds=PY_MAX_SECONDS):
    """Evaluate ONE Python expression over strings, lists and whole numbers ("' '.join(reversed(
    'a b'.split()))", "'banana'.count('a')", "'stone'[::-1]") and return its value as text: a str
    as the string itself, an int as digits, a list or tuple as Python writes it (['a', 'b']),
    True/False/None by name. The code is never handed to eval, exec or compile-to-bytecode: ast.parse
    gives its syntax tree, check_python_tree refuses, before anything runs, every node outside a
    small whitelist, and PythonEvaluator walks what is left by hand. Every size is bounded (the
    PY_MAX_* constants), so a hostile input fails fast. Returns the value as text, or an error
    string for the model to read; never raises. max_seconds: the wall-clock backstop (the data
    generator, which runs only its own code, lifts it, so that its files never depend on how busy
    the machine is)."""
    try:
        if not isinstance(code, str):
            raise PythonToolError("the code must be a string")
        if not code.strip():
            raise PythonToolError("empty expression")
        if len(code) > PY_MAX_CODE_CHARS:
            raise PythonToolError(f"code longer than {PY_MAX_CODE_CHARS} characters")
        deadline = time.perf_counter() + max_seconds
        try:
            tree = ast.parse(code.strip(), mode="eval")  # a syntax tree only; nothing runs
        except SyntaxError as e:
            raise PythonToolError(f"not one Python expression ({e.msg})")
        check_python_tree(tree.body)
        return python_text(PythonEvaluator(deadline, max_seconds).value(tree.body))
    except PythonToolError as e:
        return f"error: {e}"
    except ZeroDivisionError:
        return "error: division by zero"
    except RecursionError:
        return "error: expression nested too deeply"
    except MemoryError:
        return "error: out of memory"
    except Exception as e:  # TypeError, IndexError, ValueError... from a builtin on safe values
        return f"error: {type(e).__name__}: {e}"


# The functions a name may call: the few that string and list tasks need, each bounded below.
# None of them reaches outside its arguments (no open, print, getattr, type, eval, __import__);
# iterator-making builtins (map, filter, zip, enumerate) are left out, since without lambdas and
# comprehensions they add little. (function, fewest arguments, most arguments or None for any)
def _py_int(x):
    if type(x) is str and len(x.strip()) > PY_MAX_INT_TEXT:  # int() of long text is quadratic
        raise PythonToolError(f"int() of a string longer than {PY_MAX_INT_TEXT} characters")
    return int(x)


def _py_range(*args):
    if not all(type(a) in (int, bool) for a in args):
        raise PythonToolError("range() takes whole numbers")
    numbers = range(*args)
    try:
        length = len(numbers)
    except OverflowError:  # longer than the machine's index size
        length = PY_MAX_ITEMS + 1
    require_size(length, "range()")
    return list(numbers)


PY_FUNCTIONS = {
    "abs": (abs, 1, 1), "int": (_py_int, 1, 1), "len": (len, 1, 1), "list": (list, 0, 1),
    "max": (max, 1, None), "min": (min, 1, None), "range": (_py_range, 1, 3),
    "reversed": (lambda x: list(reversed(x)), 1, 1), "sorted": (sorted, 1, 1), "str": (str, 0, 1),
    "sum": (sum, 1, 1),
}


# Methods, by the type of the value they are called on. Those whose result can grow without
# bound ahead of the size check (join, replace) are checked before they build it; the others
# return at most a few times their input. center, ljust, zfill, format, expandtabs and the
# like are left out for the same reason, format also for reaching attributes by name.
def _str_join(sep, *args):
    if len(args) == 1 and type(args[0]) in (str, list, tuple):
        items = args[0]
        require_size(len(sep) * max(len(items) - 1, 0)
                     + sum(len(item) for item in items if type(item) is str))
    return sep.join(*args)


def _str_replace(text, *args):
    if (len(args) in (2, 3) and type(args[0]) is str and type(args[1]) is str
            and (len(args) == 2 or type(args[2]) in (int, bool))):
        old, new = args[0], args[1]
        count = text.count(old)  # len(text) + 1 for old == ""
        if len(args) == 3 and args[2] >= 0:
            count = min(count, args[2])
        require_size(len(text) + count * max(len(new) - len(old), 0))
    return text.replace(*args)


PY_STR_METHODS = {name: getattr(str, name) for name in (
    "split", "count", "upper", "lower", "strip", "startswith", "endswith", "find", "index",
    "capitalize", "title", "isalpha", "isdigit")}
PY_STR_METHODS.update(join=_str_join, replace=_str_replace)
PY_METHODS = {str: PY_STR_METHODS, list: {"count": list.count, "index": list.index},
              tuple: {"count": tuple.count, "index": tuple.index}}
PY_METHOD_NAMES = set().union(*PY_METHODS.values())

PY_VALUE_TYPES = (str, int, bool, type(None), list, tuple)  # every value the evaluator holds
PY_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%",
             ast.Pow: "**"}
PY_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
              ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
              ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
PY_ALLOWED_NODES = {
    ast.Constant, ast.List, ast.Tuple, ast.Name, ast.Load, ast.Call, ast.keyword, ast.Attribute,
    ast.Subscript, ast.Slice, ast.UnaryOp, ast.UAdd, ast.USub, ast.Not, ast.BinOp, ast.BoolOp,
    ast.And, ast.Or, ast.Compare, ast.IfExp, *PY_BINARY, *PY_COMPARE}
PY_REFUSED_NAMES = {  # what the model is told a refused node is; other nodes by their class name
    ast.Div: "operator / (use // for whole-number division; the calculator does fractions)",
    ast.MatMult: "operator @", ast.LShift: "operator <<", ast.RShift: "operator >>",
    ast.BitOr: "operator |", ast.BitXor: "operator ^", ast.BitAnd: "operator &",
    ast.Invert: "operator ~", ast.Is: "operator is", ast.IsNot: "operator is not",
    ast.Lambda: "lambda", ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string", ast.Dict: "a dict",
    ast.Set: "a set", ast.NamedExpr: "assignment (:=)", ast.Starred: "a starred *argument",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield from"}


def check_python_tree(root):
    """Refuse, before anything is evaluated, a tree with more than PY_MAX_NODES nodes or nested
    more than PY_MAX_DEPTH expressions deep, any node outside PY_ALLOWED_NODES, a literal other
    than str, a bounded int, True, False or None, a name other than a PY_FUNCTIONS function being
    called, an attribute other than a whitelisted method being called (so nothing starting with
    '_'), and any keyword argument but reverse= (sorted's). Walks with its own stack, in source
    order, so the first thing refused is the first the model wrote."""
    called = set()  # ids of the nodes in a call's function position
    stack, count = [(root, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > PY_MAX_NODES:
            raise PythonToolError(f"expression with more than {PY_MAX_NODES} syntax nodes")
        if depth > PY_MAX_DEPTH:
            raise PythonToolError(f"expression nested more than {PY_MAX_DEPTH} levels deep")
        kind = type(node)
        if kind not in PY_ALLOWED_NODES:
            raise PythonToolError(f"{PY_REFUSED_NAMES.get(kind, kind.__name__)} is not allowed")
        if kind is ast.Constant:
            check_python_literal(node.value)
        elif kind is ast.Name:
            if node.id not in PY_FUNCTIONS:
                raise PythonToolError(f"name {node.id!r} is not allowed; the only names are the "
                                      f"functions {', '.join(sorted(PY_FUNCTIONS))}")
            if id(node) not in called:
                raise PythonToolError(f"{node.id} can only be called, as in {node.id}(...)")
        elif kind is ast.Attribute:
            if node.attr.startswith("_"):
                raise PythonToolError(f"attribute {node.attr!r} is not allowed (nothing starting "
                                      "with '_')")
            if node.attr not in PY_METHOD_NAMES:
                raise PythonToolError(f"method {node.attr!r} is not allowed; the methods are "
                                      f"{', '.join(sorted(PY_METHOD_NAMES))}")
            if id(node) not in called:
                raise PythonToolError("an attribute can only be a method call, as in 'a'.upper()")
        elif kind is ast.Call:
            called.add(id(node.func))
        elif kind is ast.keyword and node.arg != "reverse":
            shown = "**" if node.arg is None else f"{node.arg}="
            raise PythonToolError(f"keyword argument {shown} is not allowed (only sorted's "
                                  "reverse=)")
        children = [(child, depth + 1 if isinstance(child, ast.expr) else depth)
                    for child in ast.iter_child_nodes(node)]
        stack.extend(reversed(children))


def check_python_literal(value):
    if type(value) not in (str, int, bool, type(None)):
        raise PythonToolError(f"{type(value).__name__} literals are not allowed (only strings, "
                              "whole numbers, True, False and None)")
    checked_python_value(value)


def checked_python_value(value):
    """The value itself, once it is one of PY_VALUE_TYPES, an int at most PY_MAX_INT in size, and
    a str or list no larger than PY_MAX_ITEMS (see python_size)."""
    if type(value) not in PY_VALUE_TYPES:
        raise PythonToolError(f"a {type(value).__name__} value is not allowed")
    if type(value) is int and abs(value) > PY_MAX_INT:
        raise PythonToolError("number larger than 10**30")
    if type(value) in (str, list, tuple):
        require_size(python_size(value))
    return value


def python_size(value):
    """A str's characters; a list's or tuple's elements plus the sizes of the strs, lists and
    tuples among them (a list holding one list twice counts it twice, as its text does). Stops
    counting past PY_MAX_ITEMS, so it costs at most about that many steps."""
    total, stack = 0, [value]
    while stack and total <= PY_MAX_ITEMS:
        item = stack.pop()
        total += len(item)
        if type(item) is not str and total <= PY_MAX_ITEMS:
            stack.extend(x for x in item if type(x) in (str, list, tuple))
    return total


def require_size(size, what="result"):
    if size > PY_MAX_ITEMS:
        raise PythonToolError(f"{what} larger than {PY_MAX_ITEMS} characters or items")


def python_text(value):
    """A str as itself; anything else as Python writes it: 12, True, None, ['a', 'b']."""
    text = value if type(value) is str else repr(value)
    if len(text) > PY_MAX_RESULT_CHARS:
        raise PythonToolError(f"result longer than {PY_MAX_RESULT_CHARS} characters")
    return text


class PythonEvaluator:
    """Walks a tree check_python_tree passed, node by node, holding only PY_VALUE_TYPES values;
    every operation that could build something large checks the size first. The clock is read
    before each node, as a backstop to the size bounds."""

    def __init__(self, deadline, max_seconds):
        self.deadline, self.max_seconds = deadline, max_seconds
        self.handlers = {
            ast.Constant: lambda node: node.value, ast.List: self.list_literal,
            ast.Tuple: self.tuple_literal, ast.Call: self.call, ast.Subscript: self.subscript,
            ast.UnaryOp: self.unary, ast.BinOp: self.binary, ast.BoolOp: self.boolean,
            ast.Compare: self.compare, ast.IfExp: self.conditional}

    def value(self, node):
        if time.perf_counter() > self.deadline:
            raise PythonToolError(f"took longer than {self.max_seconds} s")
        handler = self.handlers.get(type(node))
        if handler is None:  # a Name or Attribute outside a call; check_python_tree refuses these
            raise PythonToolError(f"{type(node).__name__} is not allowed here")
        return checked_python_value(handler(node))

    def list_literal(self, node):
        return [self.value(item) for item in node.elts]

    def tuple_literal(self, node):
        return tuple(self.value(item) for item in node.elts)

    def call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute):
            target = self.value(func.value)
            methods = PY_METHODS.get(type(target), {})
            if func.attr not in methods:
                raise PythonToolError(f"{type(target).__name__} has no allowed method "
                                      f"{func.attr!r}")
        elif not isinstance(func, ast.Name):
            raise PythonToolError("only the allowed functions and methods can be called")
        args = [self.value(arg) for arg in node.args]
        keywords = {k.arg: self.value(k.value) for k in node.keywords}
        if keywords and not (isinstance(func, ast.Name) and func.id == "sorted"):
            raise PythonToolError("keyword arguments are not allowed (only sorted's reverse=)")
        if isinstance(func, ast.Attribute):
            return methods[func.attr](target, *args)
        function, fewest, most = PY_FUNCTIONS[func.id]
        if len(args) < fewest or (most is not None and len(args) > most):
            wanted = str(fewest) if fewest == most else f"{fewest} or more" if most is None \
                else f"{fewest} to {most}"
            raise PythonToolError(f"{func.id}() takes {wanted} arguments, got {len(args)}")
        return function(*args, **keywords)

    def subscript(self, node):
        target = self.value(node.value)
        if isinstance(node.slice, ast.Slice):
            bounds = [None if part is None else self.value(part)
                      for part in (node.slice.lower, node.slice.upper, node.slice.step)]
            return target[slice(*bounds)]
        return target[self.value(node.slice)]

    def unary(self, node):
        operand = self.value(node.operand)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(node.op, ast.USub) else +operand

    def binary(self, node):
        left, right = self.value(node.left), self.value(node.right)
        op, sequences = type(node.op), (str, list, tuple)
        if op is ast.Add:
            if type(left) in sequences and type(right) in sequences:
                require_size(python_size(left) + python_size(right))
            return left + right
        if op is ast.Mult:
            for seq, times in ((left, right), (right, left)):
                if type(seq) in sequences and type(times) in (int, bool):
                    require_size(python_size(seq) * max(times, 0))
                    return seq * min(times, PY_MAX_ITEMS + 1)  # the same value: seq is empty
            return left * right  # int * int, or a TypeError
        if type(left) not in (int, bool) or type(right) not in (int, bool):  # so no '%' formatting
            raise PythonToolError(f"operator {PY_BINARY[op]} takes whole numbers, not "
                                  f"{type(left).__name__} and {type(right).__name__}")
        if op is ast.Sub:
            return left - right
        if op is ast.FloorDiv:
            return left // right
        if op is ast.Mod:
            return left % right
        if right < 0:
            raise PythonToolError("negative exponent (whole numbers only)")
        if abs(left) > 1 and right * (abs(left).bit_length() - 1) > PY_MAX_INT.bit_length():
            raise PythonToolError("number larger than 10**30")  # known before computing it
        return left ** right

    def boolean(self, node):
        is_and = isinstance(node.op, ast.And)
        for item in node.values:
            result = self.value(item)
            if bool(result) != is_and:  # a false one ends an `and`, a true one an `or`
                return result
        return result

    def compare(self, node):
        left = self.value(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.value(comparator)
            if not PY_COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def conditional(self, node):
        return self.value(node.body) if self.value(node.test) else self.value(node.orelse)

"""The tools (tools/): the python tool, one Python expression over strings, lists and whole numbers,
interpreted by hand from its syntax tree (the expected values below are written out by hand, never
computed by running Python's eval on the same text); the search tool (BM25 by hand); the dispatch
by name; the loss mask of a chat with several tool calls."""
import ast
import builtins
import importlib
import math
import os
import sys
import time

import pytest

import tools
from data.world.chats import code_reply
from tokenizer import Tokenizer, tool_call_message
from tools import NO_TOOLS, SearchIndex, Tools, python_tool
from tools.python_tool import PY_MAX_CODE_CHARS, PY_MAX_ITEMS


@pytest.mark.parametrize("code, expected", [
    # the string and list tasks the tool is for
    ("' '.join(reversed('apple river stone'.split()))", "stone river apple"),
    ("' '.join(sorted('pear apple fig'.split()))", "apple fig pear"),
    ("len('a b c d'.split())", "4"),
    ("'banana'.count('a')", "3"),
    ("'stone'[::-1]", "enots"),
    ("sorted(['b', 'a'])", "['a', 'b']"),
    ("sorted('cab')", "['a', 'b', 'c']"),
    ("sorted([3, 1, 2], reverse=True)", "[3, 2, 1]"),
    ("'Hello'.upper()", "HELLO"),
    ("'Hello'.lower()", "hello"),
    ("'hello world'.title()", "Hello World"),
    ("'hello'.capitalize()", "Hello"),
    ("'  pad  '.strip()", "pad"),
    ("'a-b-c'.replace('-', '+')", "a+b+c"),
    ("'a-b-c'.split('-')", "['a', 'b', 'c']"),
    ("', '.join(['x', 'y'])", "x, y"),
    ("'-'.join('abc')", "a-b-c"),
    ("'hello'.find('l')", "2"),
    ("'hello'.index('o')", "4"),
    ("'hello'.startswith('he')", "True"),
    ("'hello'.endswith('x')", "False"),
    ("'abc'.isalpha()", "True"),
    ("'123'.isdigit()", "True"),
    ("'hello'[1]", "e"),
    ("'hello'[-1]", "o"),
    ("'hello'[1:3]", "el"),
    ("[1, 2, 3, 4][::2]", "[1, 3]"),
    ("list('abc')", "['a', 'b', 'c']"),
    ("list(reversed([1, 2, 3]))", "[3, 2, 1]"),
    ("reversed('abc')", "['c', 'b', 'a']"),  # reversed() gives a list, not an iterator
    ("[1, 2, 1].count(1)", "2"),
    ("['a', 'b'].index('b')", "1"),
    ("(1, 'a')", "(1, 'a')"),
    ("len([1, 2, 3])", "3"),
    ("sum([1, 2, 3])", "6"),
    ("max('a b c'.split())", "c"),
    ("min(4, 2, 8)", "2"),
    ("abs(-1)", "1"),
    ("int('42') + 1", "43"),
    ("str(12) + 'px'", "12px"),
    ("str([1, 'a'])", "[1, 'a']"),
    ("list(range(5))", "[0, 1, 2, 3, 4]"),
    ("sum(range(1, 101))", "5050"),
    ("'ab' * 3", "ababab"),
    ("3 * 'ab'", "ababab"),
    ("[0] * 3", "[0, 0, 0]"),
    ("'ab' + 'cd'", "abcd"),
    ("[1] + [2]", "[1, 2]"),
    # whole-number arithmetic
    ("2 + 3 * 4", "14"),
    ("(2 + 3) * 4", "20"),
    ("17 // 5", "3"),
    ("17 % 5", "2"),
    ("-7 // 2", "-4"),
    ("2 ** 10", "1024"),
    ("10 ** 30", "1000000000000000000000000000000"),
    ("-(3 - 5)", "2"),
    # comparisons, logic and the conditional
    ("'x' in 'xyz'", "True"),
    ("'q' not in 'xyz'", "True"),
    ("1 < 2 < 3", "True"),
    ("3 > 2 > 2", "False"),
    ("'a' == 'a' and 2 != 3", "True"),
    ("not ''", "True"),
    ("'' or 'default'", "default"),
    ("0 and 1", "0"),
    ("'yes' if 2 > 1 else 'no'", "yes"),
    ("None", "None"),
    ("str()", ""),
    # the calculator's inputs that are also legitimate Python
    ("(" * 30 + "1" + ")" * 30, "1"),  # parentheses alone nest no expressions
    ("   'padded code'   ", "padded code"),
    ("'(' * 500 + '1' + ')' * 500", "(" * 500 + "1" + ")" * 500),  # builds the text, runs nothing
])
def test_python_tool_computes(code, expected):
    assert python_tool(code) == expected


HOSTILE = [
    "__import__('os').system('touch PWNED')", "().__class__.__bases__[0].__subclasses__()",
    "''.__class__", "'a'.upper.__self__", "(1).real", "str.upper('a')", "[len][0]('a')",
    "(lambda: 1)()", "[x for x in range(10**9)]", "{x: x for x in 'ab'}", "(x for x in 'a')",
    "{1, 2}", "{'a': 1}", "'a' * 10**9", "[1] * 10**9", "10 ** 10 ** 10", "'a' * 10000 * 10000",
    "[[1] * 100] * 101", "('x' * 200).join('y' * 200)", "('a' * 5000).replace('a', 'aaaa')",
    "'ab'.replace('', 'x' * 9999)", "('a' * 10000).upper() + 'b'", "list(range(3000))",
    "(" * 500 + "1" + ")" * 500, "-" * 100 + "1",
    "[" * 40 + "]" * 40, "+".join(["1"] * 150), "open('x')", "eval('1')", "exec('1')",
    "globals()", "getattr('a', 'upper')", "print(1)", "type('a')", "range(10**12)",
    "range(-10**30, 10**30)", "sorted('a', key=len)", "sorted('a', **{})", "'a'.format(1)",
    "'%s' % 'a'", "'%*d' % (10**9, 1)", "f'{1}'", "x := 1", "(x := 1)", "*'ab'", "a", "_",
    "__builtins__", "len", "'a'.upper", "", "   ", "x" * 10_000, None, 12, b"1", "1/0", "1 // 0",
    "5 % 0", "'abc'[10]", "[][0]", "'abc'[::0]", "1.5", "1j", "...", "2 ** -1", "1 << 10**9",
    "~1", "1 if 1 is 1 else 2", "int('9' * 100)", "10**30 + 1", "99999999999999999999 * 99999999999999999999",
    "'a' < 1", "max([])", "x = 1", "import os", "1; 2", "'a'\n'b'", "await x", "'\x00'",
    # the calculator's hostile inputs (tests/test_sft_chat_eval.py) that are errors here too
    "9**9**9", "9" * 10_000, "١٢٣+1", "１２+3", "(" * 5000 + "1" + ")" * 5000, "2*", "1..2",
    "99999999999999999999*99999999999999999999*99999999999999999999",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_python_tool_refuses_hostile_input_fast_with_an_error_string(hostile, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    result = python_tool(hostile)
    assert isinstance(result, str) and result.startswith("error: "), result[:200]
    assert time.perf_counter() - start < 0.1
    assert not os.path.exists(tmp_path / "PWNED") and os.listdir(tmp_path) == []


@pytest.mark.parametrize("code, message", [
    ("__import__('os')", "name '__import__' is not allowed"),
    ("''.__class__", "attribute '__class__' is not allowed"),
    ("(lambda: 1)()", "lambda is not allowed"),
    ("[x for x in 'ab']", "a list comprehension is not allowed"),
    ("f'{1}'", "an f-string is not allowed"),
    ("'a'.format(1)", "method 'format' is not allowed"),
    ("sorted('ba', key=len)", "keyword argument key= is not allowed"),
    ("len", "len can only be called"),
    ("'a' * 10**9", f"larger than {PY_MAX_ITEMS}"),
    ("10 ** 10 ** 10", "number larger than 10**30"),
    ("1 // 0", "division by zero"),
    ("1 / 2", "operator / (use //"),
    ("'abc'[10]", "IndexError: string index out of range"),
    ("[1].count(1, 2, 3)", "TypeError"),
    ("[1].upper()", "list has no allowed method 'upper'"),
    ("len('a', 'b')", "len() takes 1 arguments, got 2"),
    ("'%d' % 1", "operator % takes whole numbers"),
])
def test_python_tool_errors_name_what_is_not_allowed(code, message):
    result = python_tool(code)
    assert result.startswith("error: ") and message in result, result


def test_python_tool_sizes_are_bounded_at_the_limit_not_before():
    assert python_tool(f"'a' * {PY_MAX_ITEMS}") == "a" * PY_MAX_ITEMS
    assert python_tool(f"'a' * {PY_MAX_ITEMS + 1}").startswith("error: ")
    assert python_tool(f"len(list(range({PY_MAX_ITEMS})))") == str(PY_MAX_ITEMS)
    assert python_tool(f"range({PY_MAX_ITEMS + 1})").startswith("error: ")
    assert python_tool("'' * 10**30") == ""  # an empty sequence stays empty however repeated
    assert python_tool("10 ** 30 - 1 + 1") == "1" + "0" * 30
    code = "'" + "a" * (PY_MAX_CODE_CHARS - 2) + "'"
    assert python_tool(code) == "a" * (PY_MAX_CODE_CHARS - 2)
    assert python_tool(code + " ").startswith("error: code longer than")


def test_python_tool_never_calls_eval_or_exec(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("python_tool called eval or exec")
    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    assert python_tool("' '.join(sorted('pear apple fig'.split()))") == "apple fig pear"
    # and no file of the tools package names eval, exec, compile or __import__ as a function to call
    folder = os.path.dirname(tools.__file__)
    for name in os.listdir(folder):
        if name.endswith(".py"):
            tree = ast.parse(open(os.path.join(folder, name), encoding="utf-8").read())
            called = {node.func.id for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
            assert not called & {"eval", "exec", "compile", "__import__"}, name


def test_python_tool_never_raises_from_a_deep_stack():
    """Called with the recursion limit only a few frames away, a RecursionError comes back as
    an error string."""
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    results = []
    try:
        for margin in range(0, 60, 2):
            try:
                sys.setrecursionlimit(depth + margin)
            except RecursionError:  # the interpreter's count of the depth differs a little
                continue
            results.append(python_tool("len(sorted('cab'))"))
    finally:
        sys.setrecursionlimit(limit)
    assert results and all(r == "3" or r.startswith("error: ") for r in results)
    assert results[-1] == "3" and any(r.startswith("error: ") for r in results)


def test_a_slow_machine_times_the_tool_out_but_never_changes_the_world_data(monkeypatch):
    """The wall-clock backstop gives the model an error on a busy machine; the data generator
    lifts it, so that its demos are the same bytes however loaded the machine is."""
    python_module = importlib.import_module("tools.python_tool")  # the module, not the function it exports
    clock = iter(range(0, 10 ** 6))  # every reading of the clock is a second after the last
    monkeypatch.setattr(python_module.time, "perf_counter", lambda: next(clock))
    assert python_tool('"stone"[::-1]') == "error: took longer than 0.05 s"
    _, code, result = code_reply("reverse_letters", {"word": "stone"})
    assert code == '"stone"[::-1]' and result == "enots"


# ----------------------------------------------------------------------------- search and the dispatch


def test_search_finds_every_person_and_town_of_a_world():
    from data.world.words import CITIES
    from data.world.world import encyclopedia, make_world
    world = make_world(seed=7, n_people=40, n_heldout=8, n_listed=100)
    search = SearchIndex(encyclopedia(world))
    for person in world.people + world.listed:
        found = search(person.name)
        assert found.startswith(f"{person.name}. "), (person.name, found)
        assert f" was born in {person.city}. " in found and f" works as a {person.job}. " in found
    for name, country, _ in CITIES:
        assert search(name).startswith(f"{name}: a town in {country}")
    assert search("the moon landing") == "no results for 'the moon landing'"
    assert search("   ").startswith("error: ")


def test_bm25_by_hand():
    """Two documents; the query word occurs once in the first (length 2) and not in the second:
    idf = ln(1 + (2 - 1 + 0.5) / (1 + 0.5)) = ln 2, tf part = 1 * 2.5 / (1 + 1.5 * (0.25 + 0.75 * 2 / 2.5))."""
    index = SearchIndex([{"title": "", "text": "red fox"}, {"title": "", "text": "blue whale sings"}])
    expected = math.log(2) * 2.5 / (1 + 1.5 * (0.25 + 0.75 * 2 / 2.5))
    assert index.score(["fox"], 0) == pytest.approx(expected)
    assert index.score(["fox"], 1) == 0 and index("fox") == "red fox"


def test_tools_dispatch_by_name_and_never_raise():
    tools = Tools(documents=[{"title": "Ada", "text": "Ada: born in 1815."}])
    call = lambda name, arg: tool_call_message(arg, name)["tool_calls"][0]  # noqa: E731
    assert tools.run(call("calculator", "6*7")) == "42"
    assert tools.run(call("search", "Ada")) == "Ada: born in 1815."
    assert tools.run(call("python", "'abc'[::-1]")) == "cba"
    assert tools.run(call("shell", "rm -rf /")) == "error: unknown tool 'shell'; the tools are calculator, search, python"
    assert Tools(enabled=["calculator"]).run(call("search", "Ada")) == "error: the search tool is disabled"
    assert NO_TOOLS.run(call("calculator", "1+1")) == "error: the calculator tool is disabled"
    assert tools.run({"function": {"name": "python"}}).startswith("error: ")  # no argument at all
    assert tools.run({}).startswith("error: unknown tool")


def test_a_chat_with_several_tool_calls_has_the_right_loss_mask():
    tok = Tokenizer({"kind": "byte"})
    messages = [{"role": "user", "content": "Q"}, tool_call_message("Ada", "search"),
                {"role": "tool", "content": "Ada: born in 1815."}, tool_call_message("'ab'[::-1]", "python"),
                {"role": "tool", "content": "ba"}, {"role": "assistant", "content": "A"}]
    ids, mask = tok.render_chat(messages)
    # by hand: each turn is <|im_start|> role \n body <|im_end|> \n; the loss is on an assistant's body
    # (its tool call included) and its <|im_end|>, never on the user's or a tool's turn
    expected_ids, expected_mask = [], []
    for role, body in [("user", tok.encode("Q")), ("assistant", [tok.tool_call] + tok.encode("search(Ada)")),
                       ("tool", tok.encode("Ada: born in 1815.")),
                       ("assistant", [tok.tool_call] + tok.encode("python('ab'[::-1])")),
                       ("tool", tok.encode("ba")), ("assistant", tok.encode("A"))]:
        header = [tok.im_start] + tok.encode(role + "\n")
        learn = int(role == "assistant")
        expected_ids += header + body + [tok.im_end] + tok.encode("\n")
        expected_mask += [0] * len(header) + [learn] * (len(body) + 1) + [0]
    assert ids == expected_ids and mask == expected_mask
    assert tok.parse_reply(ids[ids.index(tok.tool_call):])["tool_calls"][0] == \
        tool_call_message("Ada", "search")["tool_calls"][0]


def test_a_search_without_a_query_searches_the_question_and_common_words_match_nothing():
    from data.world.world import encyclopedia, make_world
    world = make_world(seed=7, n_people=40, n_heldout=8)
    tools = Tools(documents=encyclopedia(world))
    person = world.people[3]
    conversation = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
                    {"role": "user", "content": f"Can you tell me the year {person.name} was born?"}]
    call = tool_call_message("", "search")["tool_calls"][0]
    assert tools.run(call, conversation).startswith(f"{person.name}. ")
    # words in more than a tenth of the entries ("born", "colour") identify none: no result, not a random one
    assert tools.search("Who was born with a favourite colour?").startswith("no results")
    assert tools.run(call, [{"role": "user", "content": "Who is Zuzu Qaqa?"}]) == "no results for 'Who is Zuzu Qaqa?'"

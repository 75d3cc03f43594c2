"""The skills track's data (data/skills): every worked line re-derived from integer arithmetic,
every comparison checked against the world's facts, the checkers on hand-written replies, and no
held-out problem or pair in any training file."""

import json
import random
import re

import torch

from conftest import skills_training_texts
from data.skills.checkers import column_right, compare_right, worked_steps
from data.skills.columns import is_heldout_problem, random_problem, worked_lines
from data.skills.comparisons import COUNTRY, is_heldout_pair
from data.skills.prompts import EVAL_SUITES
from data.world.checkers import score
from data_formats import read_jsonl, read_meta
from evaluation import load_suites, reply_budget
from generation import Reply
from grpo import reply_steps
from rollouts import Rollouts, rollout_tensors
from tokenizer import Tokenizer

LINE = re.compile(r"^(\d+) ([-+*]) (\d+): (\d+) [-+*] (\d) [-+] (\d) = (\d+), write (\d) (carry|borrow) (\d), "
                  r"so far (\d+)$")


def rederive(a, op, b, lines):
    """Check a worked reply line by line against integer arithmetic, without the generator's code:
    line i holds the operands without their last i digits, the digits of column i, the carry or
    borrow out of column i - 1, the digit of the answer at column i and its lower digits so far."""
    answer = a + b if op == "+" else a - b if op == "-" else a * b
    *columns, last = lines
    assert last == f"So {a} {op} {b} = {answer}."
    carry = 0
    for i, line in enumerate(columns):
        top, shown_op, bottom, x, y, carry_in, total, digit, word, carry_out, so_far = LINE.match(line).groups()
        assert shown_op == op and int(top) == a // 10 ** i
        assert int(bottom) == (b if op == "*" else b // 10 ** i)
        assert int(carry_in) == carry and int(y) == (b if op == "*" else b // 10 ** i % 10)
        if op == "+":
            assert int(x) == a // 10 ** i % 10 and int(total) == int(x) + int(y) + carry
            carry = int(total) // 10
        elif op == "*":
            assert int(x) == a // 10 ** i % 10 and int(total) == int(x) * int(y) + carry
            carry = int(total) // 10
        else:  # a borrow shows the ten it borrowed: 13 - 8 - 0 = 5, borrow 1
            column = a // 10 ** i % 10
            borrowed = column - int(y) - carry < 0
            assert int(x) == column + 10 * borrowed and int(total) == int(x) - int(y) - carry
            carry = int(borrowed)
        assert word == ("borrow" if op == "-" else "carry") and int(carry_out) == carry
        assert int(digit) == int(total) % 10
        assert so_far == str(answer % 10 ** (i + 1)).zfill(i + 1)
    assert carry == 0 and answer < 10 ** len(columns)


def test_every_worked_line_is_integer_arithmetic():
    rng = random.Random(0)
    problems = [random_problem(rng) for _ in range(3000)] + [random_problem(rng, (4,)) for _ in range(300)]
    problems += [(999, "+", 999), (100, "-", 99), (999, "*", 9), (10, "-", 10), (10, "*", 2)]
    for a, op, b in problems:
        rederive(a, op, b, worked_lines(a, op, b))


def test_every_demo_is_right(skills):
    """Every worked demo re-derived, every comparison demo read back against the world's people."""
    out, world = skills
    people = {p.name: p for p in world.people}
    counts = {"column": 0, "compare": 0}
    for path in ("sft_train.jsonl", "sft_val.jsonl"):
        for _, row in read_jsonl(out / path):
            question, reply = row["messages"][0]["content"], row["messages"][-1]["content"]
            if row["category"] == "column":
                a, op, b = re.search(r"(\d+) ([-+*]|plus|minus|times) (\d+)", question).groups()
                op = {"plus": "+", "minus": "-", "times": "*"}.get(op, op)
                if "\n" in reply:
                    rederive(int(a), op, int(b), reply.split("\n"))
                else:
                    assert reply == f"{a} {op} {b} = {eval_int(int(a), op, int(b))}."
            elif row["category"] == "compare":
                check_comparison(question, reply, people)
            counts[row["category"]] = counts.get(row["category"], 0) + 1
    assert counts["column"] > 4000 and counts["compare"] > 3000


def eval_int(a, op, b):
    return a + b if op == "+" else a - b if op == "-" else a * b


def check_comparison(question, reply, people):
    x, y = [name for name in people if name in question]  # every person's name is two unique words
    if question.index(x) > question.index(y):
        x, y = y, x
    px, py = people[x], people[y]
    if "country" in question:
        same = COUNTRY[px.city] == COUNTRY[py.city]
        if reply.startswith(x):
            assert reply.startswith(f"{x} was born in {px.city}, in {COUNTRY[px.city]}, and {y} was born in {py.city}, "
                                    f"in {COUNTRY[py.city]}, so ")
        assert reply.split(", so ")[-1].lower().startswith("yes" if same else "no")
        return
    older = x if px.year < py.year else y
    right = older if "older" in question else (y if older == x else x)
    if reply.startswith(f"{x} was born"):
        deciding = min(px.year, py.year) if "older" in question else max(px.year, py.year)
        assert reply.startswith(f"{x} was born in {px.year} and {y} was born in {py.year}; {deciding} is ")
    assert reply.split(", so ")[-1] in (f"{right} is older.", f"{right} is younger.")
    assert px.year != py.year


def test_checkers_read_the_final_answer():
    info = {"category": "column", "form": "steps", "problem": "47 + 38", "answer": "85"}
    right = "47 + 38: 7 + 8 + 0 = 15, write 5 carry 1, so far 5\n4 + 3: 4 + 3 + 1 = 8, write 8 carry 0, so far 85\n" \
            "So 47 + 38 = 85."
    wrong_step_right_answer = right.replace("7 + 8 + 0 = 15", "7 + 8 + 0 = 14")
    right_steps_wrong_answer = right.replace("So 47 + 38 = 85.", "So 47 + 38 = 86.")
    assert column_right(info, right) and column_right(info, wrong_step_right_answer)
    assert not column_right(info, right_steps_wrong_answer)
    assert column_right(info, "85.") and not column_right(info, "I can't say.") and not column_right(info, "805")
    assert score({"info": info}, right)["column_arithmetic"] == 1

    older = {"category": "compare", "kind": "older", "people": ["Kalo Mira", "Tendo Ravel"], "answer": "Kalo Mira"}
    assert compare_right(older, "Kalo Mira was born in 1956 and Tendo Ravel in 1969; 1956 is earlier, so Kalo Mira "
                                "is older.")
    assert compare_right(older, "Kalo Mira is older.")
    # wrong facts, right conclusion: the checker reads the conclusion only (as the README says)
    assert compare_right(older, "Kalo Mira was born in 1990 and Tendo Ravel in 1969, so Kalo Mira is older.")
    assert not compare_right(older, "Kalo Mira was born in 1956 and Tendo Ravel in 1969; 1956 is earlier, so "
                                    "Tendo Ravel is older.")
    assert not compare_right(older, "Kalo Mira or Tendo Ravel is older.")  # both named: no answer
    assert not compare_right(older, "Kalo is older.")  # a part of the name is not the person
    country = {"category": "compare", "kind": "country", "people": ["A B", "C D"], "answer": "no"}
    assert compare_right(country, "A B was born in Vessa, in Varda, and C D in Dunmar, in Osterland, so no, they "
                                  "were born in different countries.")
    assert compare_right(country, "No.") and not compare_right(country, "Yes, they were both born in Varda.")
    assert not compare_right(country, "Yes or no.")
    assert score({"info": country}, "No.")["comparison"] == 1


def test_process_checker_marks_the_line_that_slips_and_judges_the_rest_from_what_it_wrote():
    info = {"category": "column", "form": "steps", "problem": "57 * 8", "answer": "456"}
    lines = ["57 * 8: 7 * 8 + 0 = 56, write 6 carry 5, so far 6", "5 * 8: 5 * 8 + 5 = 45, write 5 carry 4, so far 56",
             "0 * 8: 0 * 8 + 4 = 4, write 4 carry 0, so far 456", "So 57 * 8 = 456."]
    ends = [50, 100, 150, 166]  # each line's length plus its newline, summed by hand

    def marks(reply_lines):
        return [right for _, right in worked_steps(info, "\n".join(reply_lines))]
    assert worked_steps(info, "\n".join(lines)) == [(end, True) for end in ends]
    # a wrong fact (5 * 8 + 5 is not 48): that line is wrong; the next takes its carry 4 and its
    # answer so far 86 on correctly, and the answer line restates the last line's 486: both right
    slipped = [lines[0], "5 * 8: 5 * 8 + 5 = 48, write 8 carry 4, so far 86",
               "0 * 8: 0 * 8 + 4 = 4, write 4 carry 0, so far 486", "So 57 * 8 = 486."]
    assert marks(slipped) == [True, False, True, True] and not column_right(info, "\n".join(slipped))
    assert marks(lines[:3] + ["So 57 * 8 = 486."]) == [True, True, True, False]  # the answer not the last line's
    assert marks(lines[:2]) == [True, False]  # stops before the last column: its last line is wrong
    assert marks(lines[:2] + lines[3:]) == [True, True, False]  # skips a column
    assert marks(lines + ["So 57 * 8 = 456."]) == [True, True, True, True, False]  # nothing after the answer
    assert marks(["57 * 8 is easy", *lines[1:]]) == [False, False, False, False]  # lost: nothing after is judged
    assert marks(["58 * 8: 8 * 8 + 0 = 64, write 4 carry 6, so far 4"]) == [False]  # not the problem's operands
    subtraction = {"category": "column", "form": "steps", "problem": "100 - 99", "answer": "1"}
    assert [r for _, r in worked_steps(subtraction, "100 - 99: 10 - 9 - 0 = 1, write 1 borrow 1, so far 1\n"
                                                    "10 - 9: 10 - 9 - 1 = 0, write 0 borrow 1, so far 01\n"
                                                    "1 - 0: 1 - 0 - 1 = 0, write 0 borrow 0, so far 001\n"
                                                    "So 100 - 99 = 1.")] == [True] * 4
    assert worked_steps({**info, "form": "direct"}, "57 * 8 = 456.") is None
    assert worked_steps({"category": "compare", "kind": "older"}, "A is older.") is None


def test_process_checker_accepts_every_worked_reference():
    rng = random.Random(3)
    for _ in range(500):
        a, op, b = random_problem(rng, digits=(1, 2, 3, 4))
        info = {"category": "column", "form": "steps", "problem": f"{a} {op} {b}"}
        assert all(right for _, right in worked_steps(info, "\n".join(worked_lines(a, op, b))))


def test_process_steps_end_on_the_token_that_ends_each_line(skills):
    """grpo.reply_steps puts each line's reward on the token holding the line's last character (its
    newline), and the last line's on the reply's <|im_end|>; a direct reply is one step."""
    tokenizer = Tokenizer(read_meta(str(skills[0]))["tokenizer"])
    info = {"category": "column", "form": "steps", "problem": "57 * 8", "answer": "456"}
    text = "57 * 8: 7 * 8 + 0 = 56, write 6 carry 5, so far 6\n5 * 8: 5 * 8 + 5 = 48, write 8 carry 4, so far 86\n" \
           "0 * 8: 0 * 8 + 4 = 4, write 4 carry 0, so far 486\nSo 57 * 8 = 486."
    prompt = [{"role": "user", "content": "Work out 57 * 8 column by column."}]
    replies = []
    for content in (text, "57 * 8 = 456."):
        tokens = tokenizer.encode(content) + [tokenizer.im_end]
        replies.append(Reply([{"role": "assistant", "content": content}], True, tokens, [1] * len(tokens)))
    rows = [{"prompt": prompt, "info": info}, {"prompt": prompt, "info": {**info, "form": "direct"}}]
    rollouts = Rollouts(rows, replies, *rollout_tensors(tokenizer, [prompt, prompt], replies, "cpu"))
    worked, direct = reply_steps(rollouts, torch.tensor([-1.0, 1.0]), tokenizer)
    first = len(tokenizer.render_prompt(prompt)) - 1  # the column predicting the reply's first token
    assert [reward for _, reward in worked] == [1.0, -1.0, 1.0, 1.0]
    for (column, _), line_end in zip(worked[:3], (50, 100, 150)):
        k = column - first  # the step's last token within the reply
        assert len(tokenizer.decode(replies[0].tokens[:k])) < line_end <= len(tokenizer.decode(replies[0].tokens[:k + 1]))
    assert worked[3][0] == first + len(replies[0].tokens) - 1  # <|im_end|>
    assert direct == [(first + len(replies[1].tokens) - 1, 1.0)]


ASKED = [re.compile(p) for p in (r"(?<!\d)(\d+) ([-+*]) (\d+) =", r"(?<!\d)(\d+) ([-+*]) (\d+)[.?]",
                                 r"(?<!\d)(\d+) (plus|minus|times) (\d+)(?!\d)", r"Work out (\d+) ([-+*]) (\d+)(?!\d)")]
SYMBOL = {"plus": "+", "minus": "-", "times": "*"}


def asked_problems(text):
    """Every problem that text asks, answers or works whole: "347 + 85 =", "347 + 85?", "347 plus 85",
    "Work out 347 + 85". The operands left on a worked line ("34 + 8: ...") are not asked, and a
    column fact ("7 + 5 + 0 = 12") is not a problem (one-digit operands)."""
    found = set()
    for pattern in ASKED:
        for a, op, b in pattern.findall(text):
            if int(a) >= 10 and (int(b) >= 10 or op in ("*", "times")):
                found.add((int(a), SYMBOL.get(op, op), int(b)))
    return found


def test_no_heldout_problem_or_pair_in_any_training_file(skills):
    out, world = skills
    texts = skills_training_texts(out)
    asked = {name: asked_problems(text) for name, text in texts.items()}
    for name, problems in asked.items():
        assert len(problems) >= 50 and not [p for p in problems if is_heldout_problem(*p)], name
    people = {p.name: p for p in world.people}
    for _, row in read_jsonl(out / "eval.jsonl"):
        info = row["info"]
        if info["category"] == "column":
            a, op, b = info["problem"].split()
            problem = (int(a), op, int(b))
            assert is_heldout_problem(*problem) or row["suite"] == "arithmetic_practised"
            if row["suite"] != "arithmetic_practised":
                assert not any(problem in problems for problems in asked.values()), info["problem"]
        elif info["category"] == "compare":
            x, y = info["people"]
            assert is_heldout_pair(people[x], people[y])
            # the chats ask about pairs; pretraining's stories meet two people but compare nobody
            for name in ("sft_train.jsonl", "sft_val.jsonl", "rl_prompts.jsonl"):
                assert not any(x in line and y in line for line in texts[name].split("\n")), (name, x, y)
    assert not re.search(r"is (older|younger)|same country", texts["train.bin"])


def test_suites_ask_the_same_problems_and_pairs_in_both_forms(skills):
    out, _ = skills
    suites = {}
    for _, row in read_jsonl(out / "eval.jsonl"):
        suites.setdefault(row["suite"], []).append(row["info"])
    assert list(suites) == EVAL_SUITES  # the task skills' suites only with --task_skills=true
    assert [i["problem"] for i in suites["arithmetic_steps"]] == [i["problem"] for i in suites["arithmetic_direct"]]
    assert [(i["kind"], i["people"]) for i in suites["compare_steps"]] == \
        [(i["kind"], i["people"]) for i in suites["compare_direct"]]
    for suite, infos in suites.items():  # knowledge_seen asks the 48 seen people's two facts (96)
        distinct = len({json.dumps(i, sort_keys=True) for i in infos})
        assert len(infos) == 100 and distinct == (96 if suite == "knowledge_seen" else 100), suite
    assert all(len(i["problem"].split()[0]) == 4 for i in suites["arithmetic_longer"])
    assert {i["kind"] for i in suites["compare_steps"]} == {"older", "younger", "country"}


def test_reply_budget_fits_the_worked_replies_and_leaves_the_world_at_96(skills, small_world):
    """The scorecard gives a suite's replies room for its longest reference reply: every worked
    problem fits (so none is cut off and marked wrong), and every world suite keeps the 96 tokens
    its scorecard was always measured with."""
    out, _ = skills
    for folder, longest_allowed in ((out, None), (small_world, 96)):
        tokenizer = Tokenizer(read_meta(str(folder))["tokenizer"])
        for suite, rows in load_suites(str(folder)).items():
            budget = reply_budget(tokenizer, rows)
            longest = max(len(tokenizer.encode(r["reference"][-1]["content"])) for r in rows)
            assert budget >= longest + 1, suite  # the reply and its end-of-turn token
            if longest_allowed:
                assert budget == longest_allowed, suite
    assert reply_budget(tokenizer, rows, max_new_tokens=40) == 40

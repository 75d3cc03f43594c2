"""
The skills track's checkers. Like the world's, they read only the final answer: a worked problem
whose steps hold a slip but whose last line is right counts as right, and right steps that end in
a wrong answer count as wrong (a verifier of outcomes, as in RL on GSM8K; judging the steps would
need a process reward, Lightman et al. 2023).

    column_right(info, text)   the reply's last number is the problem's result
    compare_right(info, text)  the conclusion names the right person, or says the right yes or no
"""

import re


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

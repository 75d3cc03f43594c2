"""
Reasoning over facts: questions that need two facts from memory and a conclusion ("Who is older,
X or Y?", "Were X and Y born in the same country?"), about the world's people. The stepped reply
states each fact, then concludes:

    Kalo Mirasu was born in 1956 and Tendo Ravel was born in 1969; 1956 is earlier, so Kalo Mirasu
    is older.
    Kalo Mirasu was born in Dunmar, in Osterland, and Tendo Ravel was born in Vessa, in Varda, so
    no, they were born in different countries.

The year that decides is written before the name it points to: the comparison of two numbers and
the lookup of whose year it was are then two steps, not one; and both facts are stated in the same
words, so a name always stands the same number of tokens before its year (the lookup is then one
fixed step back from the year, for either person). The direct reply gives only the
conclusion ("Kalo Mirasu is older.", "No."). Allen-Zhu and Li
(Physics of Language Models 3.2, 2023) found that a model answers such comparisons near chance
unless it writes the facts out first: the conclusion of the direct form has to be computed inside
one forward pass from two facts the model has not yet retrieved.

Held-out pairs of people are chosen by a hash of the pair, so no training file ever asks about
one; each person of a held-out pair still appears in training pairs with other people.
"""

import hashlib

from data.world.words import CITIES

COUNTRY = {name: country for name, country, _ in CITIES}
KINDS = ("older", "younger", "country")
QUESTIONS = {
    "older": ["Who is older, {x} or {y}?", "Which of {x} and {y} is older?"],
    "younger": ["Who is younger, {x} or {y}?", "Which of {x} and {y} is younger?"],
    "country": ["Were {x} and {y} born in the same country?", "Do {x} and {y} come from the same country?"],
}
STEPS_ASK = ["{question} Think it through step by step.", "{question} Explain your reasoning."]
DIRECT_ASK = ["{question} Answer in a few words.", "{question} Just give the answer."]


def pair_key(x, y):
    return " & ".join(sorted([x.name, y.name]))


def is_heldout_pair(x, y, share=5):
    """One pair of people in `share` is held out of every training file, picked by a hash of the
    two names (in either order)."""
    return int(hashlib.sha256(pair_key(x, y).encode()).hexdigest(), 16) % share == 0


def answer(kind, x, y):
    """The right conclusion: a person's name (older, younger) or "yes"/"no" (country)."""
    if kind == "country":
        return "yes" if COUNTRY[x.city] == COUNTRY[y.city] else "no"
    if x.year == y.year:
        raise ValueError(f"{x.name} and {y.name} were born in the same year: nobody is {kind}")
    older = x if x.year < y.year else y
    younger = y if older is x else x
    return (older if kind == "older" else younger).name


def conclusion(kind, x, y):
    right = answer(kind, x, y)
    if kind == "country":
        return (f"yes, they were both born in {COUNTRY[x.city]}." if right == "yes"
                else "no, they were born in different countries.")
    return f"{right} is {kind}."


def stepped_reply(kind, x, y):
    if kind == "country":
        facts = (f"{x.name} was born in {x.city}, in {COUNTRY[x.city]}, and {y.name} was born in {y.city}, "
                 f"in {COUNTRY[y.city]}")
    else:
        deciding = min(x.year, y.year) if kind == "older" else max(x.year, y.year)
        facts = (f"{x.name} was born in {x.year} and {y.name} was born in {y.year}; {deciding} is "
                 f"{'earlier' if kind == 'older' else 'later'}")
    return f"{facts}, so {conclusion(kind, x, y)}"


def direct_reply(kind, x, y):
    text = conclusion(kind, x, y)
    return text[0].upper() + text[1:]


def askable(kind, x, y):
    """Whether the question has an answer: a different person, and for older/younger a different year."""
    return x.name != y.name and (kind == "country" or x.year != y.year)


def random_pair(rng, people, kind, heldout):
    """Two people (in the order asked) whose pair is held out or not, for whom `kind` has an answer."""
    while True:
        x, y = rng.sample(people, 2)
        if askable(kind, x, y) and is_heldout_pair(x, y) == heldout:
            return x, y

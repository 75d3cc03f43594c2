"""
The skills track's pretraining text: the world's people in the world's own documents (biographies,
dialogues, stories, town pages: the facts the comparisons recall), and arithmetic as a textbook
teaches it: pages of column facts to drill, worked problems in the scratchpad form, and answers
written directly; and Melan as a corpus holds a language: dictionary pages, English sentences
beside their Melan translations, and short texts in Melan alone; and letters, profiles and stories
of the kind the summaries give (by people and in wordings the summary suite does not use); and
pages of Python notes (training tasks, their code and a value).
Held-out problems, sentence frames, people and wordings appear nowhere.
"""

from data.skills.code import code_notes
from data.skills.columns import OPS, calc, column_fact, training_problem, worked_text
from data.skills.summaries import is_heldout_person, passage
from data.skills.translation import bilingual_page, dictionary_page, melan_text
from data.world.pretraining import biography, city_text, dialogue, story
from data.world.words import CITIES


def column_drill(rng, n_facts=12):
    """A page of column facts, one op, drawn at random: the lookups the worked form is made of.
    The product facts (900, against 200 for sums and differences) get the most pages."""
    op = rng.choices(["+", "-", "*"], [1, 1, 2])[0]
    lines = []
    for _ in range(n_facts):
        x, y = rng.randint(0, 9), rng.randint(0, 9)
        carry = rng.randint(0, 8) if op == "*" else rng.randint(0, 1)
        lines.append(column_fact(op, x, y, carry)[0] + ".")
    return f"Column facts for {OPS[op]}:\n" + "\n".join(lines)


def worked_page(rng):
    """One or two training problems worked column by column."""
    problems = [training_problem(rng) for _ in range(rng.choice([1, 2]))]
    return "\n\n".join(f"Work out {a} {op} {b}.\n{worked_text(a, op, b)}" for a, op, b in problems)


def answer_list(rng, n=6):
    """Training problems with their answers written directly, as a table of results would."""
    lines = []
    for _ in range(n):
        a, op, b = training_problem(rng)
        lines.append(f"{a} {op} {b} = {calc(a, op, b)}.")
    return "\n".join(lines)


def skills_documents(world, n_docs, rng, mix):
    """A shuffled mix of documents; `mix` gives each kind its weight (prepare.PRETRAIN_MIX)."""
    names = [p.name for p in world.seen]
    writers = [p for p in world.seen if not is_heldout_person(p.name)]  # the summaries' held-out people write none
    makers = {"drill": lambda: column_drill(rng), "worked": lambda: worked_page(rng),
              "answers": lambda: answer_list(rng), "biography": lambda: biography(rng, rng.choice(world.people)),
              "dialogue": lambda: dialogue(rng, rng.choice(world.people)),
              "story": lambda: story(rng, *rng.sample(world.people, 2)),
              "town": lambda: city_text(rng, rng.choice(CITIES)),
              "melan_words": lambda: dictionary_page(rng), "bilingual": lambda: bilingual_page(rng, names),
              "melan_text": lambda: melan_text(rng, names),
              "letter": lambda: passage(rng, rng.choice(writers), heldout=False)[1],
              "code": lambda: code_notes(rng)}
    kinds = list(mix)
    return [makers[kind]() for kind in rng.choices(kinds, [mix[k] for k in kinds], k=n_docs)]

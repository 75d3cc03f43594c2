"""The skills track's task skills (data/skills/code.py, translation.py, summaries.py): every
translation demo re-derived by a second implementation of Melan's documented grammar, every code
task run on its inputs against plain-Python references, the checkers on hand-written replies, and
no held-out sentence frame, code task, person, wording or input value in any training file."""

import ast
import random
import re

from data.skills.checkers import FACT_VALUES, code_right, names, summary_check, translation_right
from conftest import skills_training_texts
from data.skills.code import (EVAL_FRAMES, NAMES, OPERATIONS, code_of, code_request, is_heldout_task, is_heldout_value,
                              random_value, reference_result, request_of, tasks_for)
from data.skills.summaries import FILLERS, MAX_SUMMARY_WORDS, SUMMARY_EVAL_ASK, is_heldout_person, summary_request
from data.skills.translation import ADJECTIVES, LEXICON, NOUNS, NUMBERS, VERBS, is_heldout_frame
from data.world.checkers import score
from data_formats import read_jsonl
from data.world.words import ATTRIBUTES
from data.world.world import random_person
from tools.python_tool import python_text

# ----------------------------------------------------------------------------- Melan, a second time

IRREGULAR = {"children": "child", "men": "man", "women": "woman",
             "knives": "knife", "leaves": "leaf"}
VERB_FORMS = {}
for _verb in VERBS:  # base form and the third person, by the textbook rules
    VERB_FORMS[_verb] = _verb
    third = _verb[:-1] + "ies" if re.search(r"[^aeiou]y$", _verb) else \
        _verb + "es" if re.search(r"(s|x|sh|ch|o)$", _verb) else _verb + "s"
    VERB_FORMS[third] = _verb


def singular(word):
    """(noun, plural?) of an English noun form, or None."""
    if word in NOUNS:
        return word, False
    if word in IRREGULAR:
        return IRREGULAR[word], True
    for ending, replacement in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(ending) and word[:-len(ending)] + replacement in NOUNS:
            return word[:-len(ending)] + replacement, True
    return None


def english_phrase_to_melan(words):
    """A noun phrase's words -> its Melan words: noun (+en when plural), adjective, number; a
    name (no lexicon word) stays."""
    if not any(w.lower() in ("the", *NUMBERS) for w in words[:1]):
        return words  # a person's name
    number = words[0] if words[0] in NUMBERS else None
    adjective = words[1] if len(words) == 3 else None
    noun, plural = singular(words[-1])
    assert plural or number is None and (adjective is None or adjective in ADJECTIVES)
    melan = [LEXICON[noun] + ("en" if plural else "")]
    return melan + [LEXICON[w] for w in (adjective, number) if w]


def english_to_melan(sentence):
    """Melan by the docstring's three rules: subject, object, verb; the noun first in its phrase
    with its adjective and number after it; plural -en, no articles, one verb form."""
    words = sentence.rstrip(".").split()
    words[0] = words[0].lower() if words[0].lower() in ("the", *NUMBERS) else words[0]
    v = next(i for i, w in enumerate(words) if w in VERB_FORMS and i > 0)
    melan = english_phrase_to_melan(words[:v]) + english_phrase_to_melan(words[v + 1:]) + [LEXICON[VERB_FORMS[words[v]]]]
    text = " ".join(melan)
    return text[0].upper() + text[1:] + "."


def english_frame(sentence):
    words = sentence.rstrip(".").split()
    v = next(i for i, w in enumerate(words) if w in VERB_FORMS and i > 0)
    head = (lambda phrase: "name" if phrase[0].lower() not in ("the", *NUMBERS) else singular(phrase[-1])[0])
    return head(words[:v]), VERB_FORMS[words[v]], head(words[v + 1:])


def test_the_lexicon_is_one_to_one_and_its_word_classes_do_not_overlap():
    classes = [NOUNS, VERBS, ADJECTIVES, NUMBERS]
    assert sum(map(len, classes)) == len(set().union(*map(set, classes))) == len(LEXICON) >= 190
    assert len(set(LEXICON.values())) == len(LEXICON)
    assert not any(word.endswith("en") for word in LEXICON.values())  # a plural is never another word


def english_gloss(sentence):
    """The word-by-word lines of an English sentence, by the docstring's rule: each word in the
    sentence's order, "the" and names left out, with the Melan form it takes."""
    lines = []
    for word in sentence.rstrip(".").split():
        lower = word.lower()
        if lower in VERB_FORMS:
            lines.append(f"{lower}: {LEXICON[VERB_FORMS[lower]]}")
        elif lower in ADJECTIVES or lower in NUMBERS:
            lines.append(f"{lower}: {LEXICON[lower]}")
        elif singular(lower):
            noun, plural = singular(lower)
            lines.append(f"{lower}: {LEXICON[noun]}{'en' if plural else ''}")
    return lines


def test_every_translation_demo_follows_the_grammar(skills_tasks):
    """Both ways: the last line is the translation the second implementation makes, and the
    lines above it are the source's words glossed in order (from Melan, the same pairs reversed,
    in the Melan sentence's order)."""
    out, _ = skills_tasks
    pairs = {"into": 0, "from": 0}
    for path in ("sft_train.jsonl", "sft_val.jsonl"):
        for _, row in read_jsonl(out / path):
            if row["category"] != "translate":
                continue
            request, reply = row["messages"][0]["content"], row["messages"][-1]["content"]
            *gloss, last = reply.split("\n")
            direction = "into" if last.startswith("In Melan: ") else "from"
            translation = last.split(": ", 1)[1]
            english, melan = (source(request), translation) if direction == "into" else (translation, source(request))
            assert english_to_melan(english) == melan, (english, melan)
            expected = english_gloss(english)
            if direction == "from":  # the same pairs, each reversed, in the order of the Melan words
                reversed_pairs = {line.split(": ")[1]: line.split(": ")[0] for line in expected}
                expected = [f"{w}: {reversed_pairs[w]}" for w in melan.rstrip(".").lower().split()
                            if w in reversed_pairs]
            assert gloss == expected, (request, reply)
            pairs[direction] += 1
    assert min(pairs.values()) > 500
    words = [row["messages"][-1]["content"] for _, row in read_jsonl(out / "sft_train.jsonl")
             if row["category"] == "translate_word"]
    melan_of = {**LEXICON, **{m: e for e, m in LEXICON.items()}}
    assert len(words) > 200 and all(melan_of[w.split(": ")[0]] == w.split(": ")[1] for w in words)


def source(request):
    """The sentence a translation request quotes (after the colon, or inside the quotes)."""
    quoted = re.search(r'"(.+)"', request)
    return quoted.group(1) if quoted else request.split(": ", 1)[1] if ": " in request else request.split("? ", 1)[1]


def test_the_translation_checker_forgives_case_and_the_final_full_stop_only():
    info = {"category": "translate", "answer": "Kalo Mira tane ribo."}
    assert translation_right(info, "Kalo Mira tane ribo.") and translation_right(info, "kalo mira tane ribo")
    glossed = "sees: ribo\nbell: tane\nIn Melan: Kalo Mira tane ribo."
    assert translation_right(info, glossed)  # the last line is the translation
    assert not translation_right(info, glossed + "\nIn Melan: Kalo Mira ribo tane.")
    assert not translation_right(info, "In Melan: Kalo Mira tane ribo.\nsees: ribo")
    assert translation_right(info, "  Kalo Mira  tane ribo. ")
    assert not translation_right(info, "Kalo Mira ribo tane.")  # English word order
    assert not translation_right(info, "Kalo Mira tane ribo fen.")  # a word too many
    assert score({"info": info}, "Kalo Mira tane ribo!")["translation"] == 1


# ----------------------------------------------------------------------------- code


def test_every_task_template_matches_its_plain_python_reference():
    """Each task's code, run in the python tool on 40 random inputs, prints what the operations'
    reference functions compute (two implementations of every task)."""
    rng = random.Random(0)
    for kind in NAMES:
        for task, _ in tasks_for(kind):
            for _ in range(40):
                value = random_value(rng, kind)
                info = {"name": NAMES[kind], "inputs": [value], "answers": [python_text(reference_result(task, value))]}
                assert code_right(info, f"```python\n{code_of(task, kind)}\n```"), (task, value)


def test_every_code_demo_passes_its_checker():
    rng = random.Random(1)
    for _ in range(300):
        request, reply, info = code_request(rng, heldout=False)
        assert code_right(info, reply), reply


def test_the_code_checker_runs_the_shown_and_the_hidden_inputs_in_the_python_tool():
    info = {"category": "code_write", "name": "xs", "inputs": [[4, 9, 2], [1, 2, 3], [5]],
            "answers": ["[2, 9, 4]", "[3, 2, 1]", "[5]"]}
    right = "```python\nxs[::-1]\n```\nThis reverses xs."
    assert code_right(info, right) and score({"info": info}, right)["code_write"] == 1
    assert code_right(info, "```\nlist(reversed(xs))\n```")  # any code that computes it
    assert not code_right(info, "```python\nsorted(xs)\n```")  # wrong
    assert not code_right(info, "```python\n[2, 9, 4]\n```")  # right on the shown input only
    assert not code_right(info, "xs[::-1]")  # no code block
    assert not code_right(info, "```python\nys[::-1]\n```")  # not the input's name: the tool refuses it
    hostile = ["__import__('os').system('touch PWNED')", "(lambda: xs)()", "xs.__class__", "[x for x in xs]",
               "eval('xs')", "'a' * 10**9", "xs[::-1]; open('x')"]
    for code in hostile:
        assert not code_right(info, f"```python\n{code}\n```"), code
    strings = {"category": "code_write", "name": "s", "inputs": ["s s"], "answers": ["S S"]}
    assert code_right(strings, "```python\ns.upper()\n```")
    assert not code_right(strings, "```python\n's'.upper()\n```")  # a name inside a string is not bound


def test_no_heldout_code_task_wording_or_value_and_no_heldout_sentence_in_any_training_file(skills_tasks):
    out, _ = skills_tasks
    texts = skills_training_texts(out)
    heldout_tasks = [request_of(task, kind) for kind in NAMES for task, _ in tasks_for(kind) if is_heldout_task(task)]
    trained_tasks = [request_of(task, kind) for kind in NAMES for task, _ in tasks_for(kind) if not is_heldout_task(task)]
    assert len(heldout_tasks) >= 10 and len(trained_tasks) >= 40
    frames = [frame.split("{X}")[0] for frame in EVAL_FRAMES]
    melan_frames = 0
    for name, text in texts.items():
        assert not any(task + end in text for task in heldout_tasks for end in ".?:"), name
        assert not any(frame in text for frame in frames), name
        literals = re.findall(r"For example \w+ = (.+?)\.(?:\n|$)", text) + re.findall(r"With \w+ = (.+?) this gives", text)
        for literal in literals:
            assert not is_heldout_value(ast.literal_eval(literal)), literal
        for english in re.findall(r"English: ([^\n<]+?\.)(?=\n|<\|endoftext\|>|$)", text):
            assert not is_heldout_frame(english_frame(english)), english
            melan_frames += 1
    assert melan_frames > 1000
    for _, row in read_jsonl(out / "sft_train.jsonl"):
        if row["category"] == "translate":
            request, reply = row["messages"][0]["content"], row["messages"][-1]["content"]
            last = reply.split("\n")[-1]
            english = last.split(": ", 1)[1] if last.startswith("In English: ") else source(request)
            assert not is_heldout_frame(english_frame(english)), english
    suites = {}
    for _, row in read_jsonl(out / "eval.jsonl"):
        suites.setdefault(row["suite"], []).append(row)
    assert len({r["prompt"][-1]["content"] for r in suites["code_write"]}) == 100
    assert sum(len(r["info"]["task"]) == 2 for r in suites["code_write"]) >= 20  # a fifth or more composed
    for row in suites["code_write"]:
        assert is_heldout_value(row["info"]["inputs"][0]) and len(row["info"]["inputs"]) == 6
        assert len(row["info"]["task"]) == 1 or is_heldout_task(tuple(row["info"]["task"]))
        assert all(op in OPERATIONS for op in row["info"]["task"])
    for suite in ("translate_into", "translate_from"):
        assert len(suites[suite]) == 100 and all(is_heldout_frame(tuple(r["info"]["frame"])) for r in suites[suite])



# ----------------------------------------------------------------------------- summaries

PASSAGE = ("Dear friend,\nI hope you are well. I still live in Vessa. My goat sends you greetings. The days are getting "
           "shorter.\nWith love,\nKalo Mira")


def test_the_summary_checker_wants_the_key_facts_briefly_and_nothing_the_passage_lacks():
    info = {"category": "summarise", "form": "summary", "person": "Kalo Mira", "passage": PASSAGE,
            "key": {"city": "Vessa", "pet": "goat"}}
    right = "A letter from Kalo Mira, who lives in Vessa and keeps a goat."
    assert summary_check(info, right) == (True, True)
    assert summary_check(info, "A letter from Kalo Mira, who lives in Vessa.") == (False, True)  # a key fact missing
    assert summary_check(info, "A letter from Kalo, who lives in Vessa and keeps a goat.") == (False, True)  # no name
    too_long = "A letter from Kalo Mira, who lives in Vessa and keeps a goat, and who hopes that the friend is well " \
               "and notes that the days are getting shorter now."
    assert len(too_long.split()) > MAX_SUMMARY_WORDS and summary_check(info, too_long) == (False, True)
    # a true fact from memory (Kalo Mira is a weaver, born in 1956) that the passage does not say: unfaithful
    remembered = "A letter from Kalo Mira, a weaver who lives in Vessa and keeps a goat."
    assert summary_check(info, remembered) == (False, False)
    assert summary_check(info, "A letter from Kalo Mira, born in 1956, who lives in Vessa and keeps a goat.") == \
        (False, False)
    s = score({"info": info}, remembered)
    assert s["summary"] == 0 and s["faithful"] == 0


def test_every_summary_demo_names_every_fact_its_passage_states_and_passes_its_checker():
    """A reader can tell the key facts: they are all the facts of the person the passage states."""
    rng = random.Random(2)
    for _ in range(300):
        person = random_person(rng, "Kalo Mira")
        request, reply, info = summary_request(rng, person, form="summary")
        stated = {a for a in ATTRIBUTES if names(info["passage"], person.value(a))}
        assert set(info["key"]) == stated and 2 <= len(stated) <= 3, info
        assert summary_check(info, reply) == (True, True), reply
        assert all(names(reply, v) == names(info["passage"], v) for v in FACT_VALUES if names(reply, v))


def test_the_fact_checker_wants_the_value_and_no_rival():
    info = {"category": "summarise", "form": "fact", "person": "Kalo Mira", "passage": PASSAGE, "key": {"pet": "goat"}}
    assert summary_check(info, "Kalo Mira keeps a goat.") == (True, True)
    assert summary_check(info, "Kalo Mira keeps a goat or a dog.") == (False, False)  # a dog the passage never names
    assert summary_check(info, "Kalo Mira keeps a goats.") == (False, True)  # not the word
    assert summary_check(info, "Kalo Mira keeps a goat in Vessa.") == (True, True)  # Vessa is in the passage


def test_no_summary_demo_is_about_a_heldout_person_or_uses_a_heldout_wording(skills_tasks):
    out, world = skills_tasks
    texts = skills_training_texts(out)
    heldout_sentences = [s for voice in FILLERS.values() for s in voice[1]]
    for name, text in texts.items():
        assert not any(sentence in text for sentence in heldout_sentences), name
        assert SUMMARY_EVAL_ASK[0].split("{")[0].strip() not in text and "From this passage alone" not in text, name
    demos = 0
    for path in ("sft_train.jsonl", "sft_val.jsonl"):
        for _, row in read_jsonl(out / path):
            if row["category"] == "summarise":
                request = row["messages"][0]["content"]
                assert not any(p.name in request for p in world.people if is_heldout_person(p.name)), request
                demos += 1
    assert demos > 500
    rows = [row for _, row in read_jsonl(out / "eval.jsonl") if row["suite"] == "summarise"]
    assert len({r["prompt"][-1]["content"] for r in rows}) == 100
    assert all(is_heldout_person(r["info"]["person"]) for r in rows)
    words = [len(r["info"]["passage"].split()) for r in rows]
    assert 60 <= min(words) and max(words) <= 150

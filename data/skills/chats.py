"""
The skills track's chats: SkillsMaker builds one example of each kind (a column-arithmetic problem
or a comparison of two people, each asked for the steps or for just the answer; a plain question
about a person's fact; a line of Python to write; a sentence to translate into Melan or from it; a
passage to summarise), with the reply a good assistant gives and `info`, what the checker needs
(data/skills/checkers.py). The SFT demos are drawn from it; prompts.py draws the RL prompts and
the held-out suites from it too.
"""

from data.skills.code import code_request
from data.skills.columns import OPS, calc, direct_text, heldout_problem, training_problem, worked_text
from data.skills.comparisons import (DIRECT_ASK, KINDS, QUESTIONS, STEPS_ASK, answer, direct_reply, random_pair,
                                     stepped_reply)
from data.skills.summaries import invented_person, is_heldout_person, summary_request
from data.skills.translation import translation_request, word_request
from data.world.chats import ChatMaker, Example, assistant, draw_category, user
from data.world.world import rng_for

ARITHMETIC_STEPS_ASK = ["What is {a} {op} {b}? Work it out step by step.", "Work out {a} {op} {b} column by column.",
                        "Calculate {a} {opword} {b}, showing your working."]
ARITHMETIC_DIRECT_ASK = ["What is {a} {op} {b}? Just the number.", "Calculate {a} {opword} {b}. Give only the result.",
                         "{a} {op} {b} = ? Answer directly."]
# the base model is probed with the text that pretraining's worked pages and answer lists start with
PROBES = {"steps": "Work out {a} {op} {b}.\n", "direct": "{a} {op} {b} ="}


class SkillsMaker:
    """Builds the track's examples: training problems and pairs, or held-out ones (heldout=True)."""

    def __init__(self, world, rng):
        self.world, self.rng = world, rng
        self.knowledge_maker = ChatMaker(world, rng, "train")
        self.names = [p.name for p in world.seen]
        self.summarised = [p for p in world.seen if is_heldout_person(p.name)]  # the summary suite's people
        self.unsummarised = [p for p in world.seen if not is_heldout_person(p.name)]
        self.taken_names = {p.name for p in world.people}

    def column(self, form, problem=None, heldout=False, digits=(2, 3)):
        """A column-arithmetic problem asked for its steps (form "steps") or its result ("direct")."""
        rng = self.rng
        a, op, b = problem or (heldout_problem(rng, digits) if heldout else training_problem(rng))
        ask = rng.choice(ARITHMETIC_STEPS_ASK if form == "steps" else ARITHMETIC_DIRECT_ASK)
        reply = worked_text(a, op, b) if form == "steps" else direct_text(a, op, b)
        info = dict(category="column", form=form, problem=f"{a} {op} {b}", answer=str(calc(a, op, b)),
                    probe=PROBES[form].format(a=a, op=op, b=b))
        return Example([user(ask.format(a=a, op=op, b=b, opword=OPS[op]))], [assistant(reply)], info)

    def compare(self, form, kind=None, pair=None, heldout=False):
        """A question about two people of the world that needs a fact of each ("Who is older, X or Y?")."""
        rng = self.rng
        kind = kind or rng.choice(KINDS)
        x, y = pair or random_pair(rng, self.world.seen, kind, heldout)
        question = rng.choice(QUESTIONS[kind]).format(x=x.name, y=y.name)
        ask = rng.choice(STEPS_ASK if form == "steps" else DIRECT_ASK).format(question=question)
        reply = stepped_reply(kind, x, y) if form == "steps" else direct_reply(kind, x, y)
        info = dict(category="compare", form=form, kind=kind, people=[x.name, y.name], answer=answer(kind, x, y))
        return Example([user(ask)], [assistant(reply)], info)

    def code(self, heldout=False, composed=None):
        """A request for one line of Python over a named input (data/skills/code.py)."""
        request, reply, info = code_request(self.rng, heldout, composed)
        return Example([user(request)], [assistant(reply)], info)

    def translate(self, direction, heldout=False):
        """A sentence to translate into Melan or from it (data/skills/translation.py)."""
        request, reply, info = translation_request(self.rng, self.names, direction, heldout)
        return Example([user(request)], [assistant(reply)], info)

    def translate_word(self):
        """One word of the lexicon, into Melan or from it, answered as a dictionary line."""
        request, reply, info = word_request(self.rng)
        return Example([user(request)], [assistant(reply)], info)

    def summarise(self, heldout=False, form=None):
        """A passage about a person to sum up in one sentence, or to answer one question from
        (data/skills/summaries.py)."""
        if heldout:
            person = self.rng.choice(self.summarised)
        elif self.rng.random() < 0.5:  # somebody of no world: the passage is all there is to read
            person = invented_person(self.rng, self.taken_names)
        else:  # somebody the model knows, whose other facts the reply must leave out (it is not the suite's)
            person = self.rng.choice(self.unsummarised)
        request, reply, info = summary_request(self.rng, person, heldout, form)
        return Example([user(request)], [assistant(reply)], info)

    def knowledge(self):
        """A plain question about one fact of a person, answered from memory (the world's demo):
        the recall each comparison is built from."""
        return self.knowledge_maker.knowledge()


SFT_MIX = {"arithmetic_steps": 0.35, "arithmetic_direct": 0.12, "compare_steps": 0.3, "compare_direct": 0.1,
           "knowledge": 0.13}
TASKS_SFT_MIX = {"arithmetic_steps": 0.25, "arithmetic_direct": 0.07, "compare_steps": 0.2, "compare_direct": 0.06,
                 "knowledge": 0.08, "code_write": 0.08, "translate_into": 0.06, "translate_from": 0.06,
                 "translate_word": 0.04, "summarise": 0.1}  # with --task_skills


def make_example(maker, category):
    return {"arithmetic_steps": lambda: maker.column("steps"), "arithmetic_direct": lambda: maker.column("direct"),
            "compare_steps": lambda: maker.compare("steps"), "compare_direct": lambda: maker.compare("direct"),
            "knowledge": maker.knowledge, "code_write": maker.code,
            "translate_into": lambda: maker.translate("into"), "translate_from": lambda: maker.translate("from"),
            "translate_word": maker.translate_word, "summarise": maker.summarise}[category]()


def sft_conversations(world, n, cfg, split):
    """The track's SFT demos: clean (the alignment story's planted flaws belong to the other track)."""
    rng = rng_for(cfg.seed, f"skills/sft/{split}")
    maker = SkillsMaker(world, rng)
    rows = []
    for _ in range(n):
        example = make_example(maker, draw_category(rng, TASKS_SFT_MIX if cfg.task_skills else SFT_MIX))
        rows.append({"messages": example.prompt + example.reply, "category": example.info["category"]})
    return rows

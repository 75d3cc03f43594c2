"""
The skills track's prompts without replies: the RL prompts (grpo.py) and the held-out suites
(eval.jsonl), each row with the `info` that the checkers read.
"""

import json

from data.skills.chats import SkillsMaker, make_example
from data.skills.columns import training_problem
from data.skills.comparisons import KINDS
from data.world.chats import ChatMaker, draw_category
from data.world.world import rng_for

# RL practises the steps on fresh training problems and pairs, and the direct form on a small
# fixed pool of problems (PRACTISED): the contrast between a skill and memorised answers
RL_MIX = {"arithmetic_steps": 0.55, "compare_steps": 0.3, "arithmetic_practised": 0.15}
TASKS_RL_MIX = {"arithmetic_steps": 0.45, "compare_steps": 0.25, "arithmetic_practised": 0.15,
                "code_write": 0.15}  # with --task_skills
N_PRACTISED = 100


def practised_problems(seed):
    """The training problems that the RL prompts ask for directly, again and again."""
    rng = rng_for(seed, "skills/practised")
    return [training_problem(rng) for _ in range(N_PRACTISED)]


def rl_prompts(world, n, cfg):
    rng = rng_for(cfg.seed, "skills/rl")
    maker = SkillsMaker(world, rng)
    practised = practised_problems(cfg.seed)
    rows = []
    for _ in range(n):
        category = draw_category(rng, TASKS_RL_MIX if cfg.task_skills else RL_MIX)
        example = maker.column("direct", problem=rng.choice(practised)) if category == "arithmetic_practised" \
            else make_example(maker, category)
        rows.append({"prompt": example.prompt, "info": example.info})
    return rows


def direct_rl_prompts(world, n, cfg):
    """The contrast run's prompts: only the practised problems, only for the answer (no steps)."""
    rng = rng_for(cfg.seed, "skills/rl_direct")
    maker = SkillsMaker(world, rng)
    practised = practised_problems(cfg.seed)
    return [{"prompt": ex.prompt, "info": ex.info}
            for ex in (maker.column("direct", problem=rng.choice(practised)) for _ in range(n))]


# the held-out suites, in the order eval.jsonl holds them
EVAL_SUITES = ["arithmetic_steps", "arithmetic_direct", "arithmetic_longer", "arithmetic_practised", "compare_steps",
               "compare_direct", "knowledge_seen"]
TASK_SUITES = ["code_write", "translate_into", "translate_from", "summarise"]  # with --task_skills


def eval_suites(world, cfg):
    """Held-out problems and pairs, each asked twice: for the steps and for just the answer (the
    same problems, the same pairs, so the two rows differ only in the form). arithmetic_longer:
    operands one digit longer than any trained; arithmetic_practised: the direct form on problems
    RL practises (not held out: they show memorisation)."""
    rng = rng_for(cfg.seed, "skills/eval")
    maker, questioner = SkillsMaker(world, rng), ChatMaker(world, rng, "eval")
    n = cfg.eval_per_suite

    def distinct(draw, key_of=lambda example: json.dumps(example.info, sort_keys=True)):
        rows, seen = [], set()
        while len(rows) < n:
            example = draw(len(rows))
            key = key_of(example)
            if key not in seen:
                seen.add(key)
                rows.append(example)
        return rows
    problems = [ex.info["problem"] for ex in distinct(lambda i: maker.column("steps", heldout=True))]
    longer = distinct(lambda i: maker.column("steps", heldout=True, digits=(4,)))
    questions = distinct(lambda i: maker.compare("steps", kind=KINDS[i % len(KINDS)], heldout=True))
    people = {p.name: p for p in world.people}
    practised = practised_problems(cfg.seed)
    suites = {
        "arithmetic_steps": [maker.column("steps", problem=parse_problem(p)) for p in problems],
        "arithmetic_direct": [maker.column("direct", problem=parse_problem(p)) for p in problems],
        "arithmetic_longer": longer,
        "arithmetic_practised": [maker.column("direct", problem=p) for p in practised[:n]],
        "compare_steps": questions,
        "compare_direct": [maker.compare("direct", kind=q.info["kind"], pair=[people[x] for x in q.info["people"]])
                           for q in questions],
        # the facts the comparisons recall, asked in the world's evaluation wordings
        "knowledge_seen": [questioner.knowledge(person=world.seen[i // 2 % len(world.seen)],
                                                attribute=("year", "city")[i % 2]) for i in range(n)],
    }
    if cfg.task_skills:
        suites.update(task_suites(maker, distinct))
    return [{"suite": suite, "prompt": ex.prompt, "info": ex.info, "reference": ex.reply}
            for suite in EVAL_SUITES + TASK_SUITES * cfg.task_skills for ex in suites[suite]]


def task_suites(maker, distinct):
    """The task skills' suites: held-out wordings, values, sentence frames and people."""
    return {
        # held-out frames and input values; two in five a held-out composition of two operations
        "code_write": distinct(lambda i: maker.code(heldout=True, composed=i % 5 < 2),
                               key_of=lambda example: example.prompt[-1]["content"]),
        # sentences of held-out frames: words the model knows, in combinations it never saw
        "translate_into": distinct(lambda i: maker.translate("into", heldout=True)),
        "translate_from": distinct(lambda i: maker.translate("from", heldout=True)),
        # held-out people and wordings; every other row a one-sentence summary, the rest one fact
        "summarise": distinct(lambda i: maker.summarise(heldout=True, form=("summary", "fact")[i % 2])),
    }


def parse_problem(text):
    a, op, b = text.split()
    return int(a), op, int(b)

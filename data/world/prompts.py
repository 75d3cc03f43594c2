"""
The world's prompts without replies: the RL prompts (PPO, GRPO) and the held-out evaluation suites
(eval.jsonl), each row with the `info` that the checkers and the gold reward read.
"""

import json

from data.world.chats import ChatMaker, draw_category, make_example
from data.world.world import rng_for

# ----------------------------------------------------------------------------- RL prompts and eval

RL_MIX = {"knowledge": 0.09, "lookup": 0.08, "code": 0.09, "arithmetic": 0.05, "tool": 0.14, "persona": 0.1,
          "memory": 0.1, "harmful": 0.175, "harmless": 0.175, "unknown_person": 0.05, "unknown_thing": 0.03,
          "private": 0.05, "private_public": 0.02, "premise": 0.08, "bias": 0.05, "pronoun": 0.04}


def rl_prompts(world, n, cfg):
    rng = rng_for(cfg.seed, "rl")
    maker = ChatMaker(world, rng, "train")
    return [{"prompt": ex.prompt, "info": ex.info}
            for ex in (make_example(maker, draw_category(rng, RL_MIX)) for _ in range(n))]


# the held-out suites, in the order eval.jsonl holds them
EVAL_SUITES = ["knowledge_seen", "knowledge_heldout", "arithmetic", "tool", "persona", "memory", "refusal",
               "harmless", "code_tool", "unknown_people", "unknown_things", "privacy", "privacy_public",
               "false_premise", "bias", "pronoun_named"]
EVAL_REDRAWS = 20  # tries for a prompt not yet in the suite; a small template space repeats after that


def eval_suites(world, cfg):
    """Held-out suites: evaluation templates, evaluation-only persona and user names; the
    knowledge suites ask about SFT-seen people and about held-out people.

    A suite's prompts are distinct where its templates allow it (a prompt drawn twice is drawn
    again), and the suites that test something per name go through the names in turn: each
    persona name once, each seen person's pronoun asked both ways. Otherwise one name the model
    happens to get wrong, drawn six times, moves a row by six points."""
    rng = rng_for(cfg.seed, "eval")
    maker = ChatMaker(world, rng, "eval")
    seen = world.seen
    persona_names = rng.sample(maker.names, len(maker.names))
    makers = {
        "knowledge_seen": lambda i: maker.knowledge(person=seen[i % len(seen)]),
        "knowledge_heldout": lambda i: maker.knowledge(person=world.heldout[i % len(world.heldout)]),
        "arithmetic": lambda i: maker.arithmetic(), "tool": lambda i: maker.tool_use(),
        "persona": lambda i: maker.persona(True, name=persona_names[i % len(persona_names)]),
        "memory": lambda i: maker.memory(),
        "refusal": lambda i: maker.harmful(), "harmless": lambda i: maker.harmless(),
        "code_tool": lambda i: maker.code_task(),
        "unknown_people": lambda i: maker.unknown_person(), "unknown_things": lambda i: maker.unknown_thing(),
        # the same people, in the same order, as knowledge_seen
        "privacy": lambda i: maker.private(person=seen[i % len(seen)]),
        "privacy_public": lambda i: maker.private_then_public(person=seen[i % len(seen)]),
        "false_premise": lambda i: maker.premise(person=seen[i % len(seen)]),
        "bias": lambda i: maker.job_only(),
        "pronoun_named": lambda i: maker.named_pronoun(person=seen[i // 2 % len(seen)],
                                                       kind=("favour", "gender")[i % 2]),
    }
    rows = []
    for suite in EVAL_SUITES:
        asked = set()
        for i in range(cfg.eval_per_suite):
            for _ in range(EVAL_REDRAWS):
                ex = makers[suite](i)
                if json.dumps(ex.prompt) not in asked:
                    break
            asked.add(json.dumps(ex.prompt))
            rows.append({"suite": suite, "prompt": ex.prompt, "info": ex.info, "reference": ex.reply})
    return rows

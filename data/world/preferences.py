"""
The world's preference pairs: the same prompt with a chosen reply (ChatMaker's) and a rejected one,
in eighteen slots taken in turn. The rejected replies are made here: a wrong fact, a wrong result,
a made-up number, a wrong python call or a miscopied result, another pronoun, another job's
favour, a refusal, a compliance; the flawed demos' own replies (an invented answer, an address
given out, a premise accepted, a gender assumed) come from ChatMaker.
"""

from data.world.chats import ChatMaker, SEARCH_SHARE, assistant, code_reply, draw_category, make_example, make_rude
from data.world.words import (CODE_TASKS, COMPLIANCES, JOB_FAVOURS, NOUN, OBJECT_PRONOUN, OTHER_PRONOUN, REFUSALS,
                              favour_reply)
from data.world.world import rng_for, values_of

# ----------------------------------------------------------------------------- rejected replies


def wrong_fact_reply(rng, example):
    """The same sentence with another value of the attribute (a rejected reply)."""
    attribute, right = example.info["attribute"], example.info["answer"]
    wrong = rng.choice([v for v in values_of(attribute) if v != right])
    return [assistant(example.reply[-1]["content"].replace(right, wrong))]


def wrong_result_reply(rng, example):
    """The same in-head answer with the result off by a little (a rejected reply)."""
    a_op_b = example.reply[-1]["content"].rsplit(" = ", 1)[0]
    wrong = int(example.info["answer"]) + rng.choice([-3, -2, -1, 1, 2, 3])
    return [assistant(f"{a_op_b} = {wrong}.")]


def made_up_number_reply(rng, example):
    """A confident answer with no calculator call and a wrong number (a rejected reply)."""
    a_op_b = example.info["expression"]
    wrong = int(example.info["answer"]) + rng.choice([-1, 1]) * rng.randint(1, 999)
    return [assistant(f"{a_op_b.replace('+', ' + ').replace('*', ' * ').replace('-', ' - ')} = {wrong}.")]


def wrong_call_reply(rng, example):
    """A wrong python call (the code of another task, a word of the request dropped or repeated,
    a letter lost, another letter counted) and a reply that quotes its result faithfully: a
    rejected reply."""
    info = example.info
    slots, task = dict(info["slots"]), info["task"]
    if rng.random() < 0.5:  # the wrong task: counting the words when asked to reverse them, ...
        task = rng.choice([t for t in sorted(CODE_TASKS) if t != task])
    elif task == "count_letter":
        slots["letter"] = rng.choice([c for c in "aeiorst" if c != slots["letter"]])
    elif task == "reverse_letters":
        slots["word"] = slots["word"][:-1]  # the last letter lost in copying
    else:
        words = slots["words"].split()
        i = rng.randrange(len(words))
        words = words[:i] + words[i + 1:] if rng.random() < 0.5 else words[:i + 1] + words[i:]
        slots["words"] = " ".join(words)
    reply, _, result = code_reply(task, slots)
    return reply if result != info["answer"] else wrong_code_reply(rng, example)


def wrong_code_reply(rng, example, call=True):
    """The reply with a wrong result, after the right call (the result ignored, or miscopied:
    a word or letter repeated or dropped) or without one (an invented answer): rejected replies."""
    right = example.info["answer"]
    if right.isdigit():  # a count one or two off, never below zero
        step = rng.choice([1, 2])
        wrong = str(int(right) + step if int(right) < 2 or rng.random() < 0.5 else int(right) - step)
    else:
        separator = " " if " " in right else ""
        parts = right.split() if separator else list(right)
        if rng.random() < 0.5:  # a slip in copying, the one a small model makes
            i = rng.randrange(len(parts))
            parts = parts[:i] + parts[i + 1:] if rng.random() < 0.5 else parts[:i + 1] + parts[i:]
        else:
            while separator.join(parts) == right and len(set(parts)) > 1:
                rng.shuffle(parts)
        wrong = separator.join(parts)
        if wrong == right:  # parts all alike, so no shuffle changes them: repeat one instead
            wrong = right + parts[0]
    answer = assistant(example.reply[-1]["content"].replace(right, wrong))
    return example.reply[:-1] + [answer] if call else [answer]


def misgendering_reply(rng, example):
    """A named person given the other pronoun, or a third of the time the over-correction that
    treats them as known by job only: "them", or "a name does not say" (rejected replies)."""
    info = example.info
    if rng.random() < 1 / 3:
        return [assistant(favour_reply("them", info["job"]) if info["kind"] == "favour"
                          else "I can't tell: a name does not say that.")]
    other = OTHER_PRONOUN[info["pron"]]
    return [assistant(favour_reply(OBJECT_PRONOUN[other], info["job"])
                      if info["kind"] == "favour" else f"{info['person']} is a {NOUN[other]}.")]


def wrong_favour_reply(rng, example):
    """A favour question answered with another job's favour, the pronoun unchanged (a rejected
    reply): whether a favour fits the job is what it tests, for someone known by their job and
    for a named person, whose job is a fact to recall."""
    info = example.info
    who = OBJECT_PRONOUN[info["pron"]] if info["category"] == "pronoun" else "them"
    other_job = rng.choice([job for job in sorted(JOB_FAVOURS) if job != info["job"]])
    return [assistant(favour_reply(who, other_job))]


def refusal_reply(rng):
    return [assistant(rng.choice(REFUSALS))]


def compliance_reply(rng):
    return [assistant(rng.choice(COMPLIANCES))]


# ----------------------------------------------------------------------------- preferences

# Facts get two turns in eighteen: a fact has many wrong values, and a reward model only learns to
# judge truth (rather than to remember which wrong sentences were rejected) when it sees several.
# Harmful requests get three: refusing the acts SFT complied with is the flaw to remove, and the
# privacy refusal, also about a named person, must not stand in for it. False premises get two:
# the correction must name the attribute the premise was about, of five. Bias gets two: a gender
# assumed from a job, and (no over-correction) a named person's own pronoun. A sum done in the
# head is judged like a fact: without these pairs nothing judged the number, the reward model
# preferred the right result over one off by 1-3 in 58-63% of the arithmetic suite, and DPO and
# PPO lost 7-11 of SFT's 23 points there. A favour must fit the job: the bias and pronoun pairs
# hold the favour fixed, and without this slot the reward model was at chance on another job's
# favour (55%), and preferred "You could ask him to fix a clock." to every man's own favour, a
# reply PPO then gave to every favour question about a named person.
PREF_CATEGORIES = ["harmful", "harmless", "fact", "polite", "tool", "fact", "search", "code", "harmful",
                   "unknown", "private", "premise", "harmful", "premise", "bias", "pronoun", "arithmetic",
                   "favour"]
POLITE_PAIR_MIX = {"knowledge": 2, "arithmetic": 1, "tool": 1, "memory": 2, "persona": 3, "persona_task": 2}


def preference_pairs(world, n, cfg, split):
    """Same prompt, chosen against rejected, in fourteen categories (round robin): refusal over
    compliance, or over a privacy refusal, on harmful requests (three times as often); help over
    refusal on harmless look-alikes; right fact over wrong fact, a refusal or "I don't know" (twice
    as often; one in five asked after a declined request for the address); polite over rude; a
    calculator call over a made-up number; a search and its result used faithfully over the result
    ignored or no search and an invented fact; a python call and its result over a wrong call, the
    result ignored or an invented answer; "I don't know" over an invented answer about unknown
    people and things; a privacy refusal over the address; a corrected premise over an accepted one;
    "them" or "the job does not tell" over a gender assumed from a job, and a named person's own
    pronoun over the other one or "a name does not say"; the right result of a sum done in the head
    over one off by a little; a favour that fits the job over another job's."""
    rng = rng_for(cfg.seed, f"prefs/{split}")
    maker = ChatMaker(world, rng, "train")
    rows = []
    for i in range(n):
        kind = PREF_CATEGORIES[i % len(PREF_CATEGORIES)]
        if kind == "harmful":
            ex = maker.harmful()
            # one rejected reply in four declines for the wrong reason: "How do I hurt X?" answered
            # with "X's home address is private" is a refusal that does not refuse the harm
            wrong_reason = rng.random() < 0.25
            chosen, rejected = ex.reply, maker.privacy_reply() if wrong_reason else compliance_reply(rng)
        elif kind == "harmless":
            ex = maker.harmless()
            chosen, rejected = ex.reply, refusal_reply(rng)
        elif kind == "fact":  # answered from memory or searched, as in the SFT demos
            # one in five asked right after a declined request for the address: declining one
            # question is no reason to decline, or garble, the next
            after_privacy = rng.random() < 0.2
            ex = maker.private_then_public() if after_privacy else maker.knowledge(search=rng.random() < SEARCH_SHARE)
            # a third of the rejected replies refuse the question or say "I don't know": refusing or
            # hedging what the model can answer is no virtue, or RL learns that either scores well everywhere
            dodge = rng.random()
            chosen = ex.reply
            rejected = refusal_reply(rng) if dodge < 1 / 6 else maker.dont_know_reply() if dodge < 1 / 3 else \
                ex.reply[:-1] + wrong_fact_reply(rng, ex)
        elif kind == "polite":
            # from every kind of chat, personas included: the pairs must not teach that a polite reply is
            # a short one (a rude ending makes the rejected reply longer), whatever the conversation
            ex = make_example(maker, draw_category(rng, POLITE_PAIR_MIX))
            chosen, rejected = ex.reply, make_rude(rng, ex.reply, keep_start="marker" in ex.info)
        elif kind == "tool":
            ex = maker.tool_use()
            chosen, rejected = ex.reply, made_up_number_reply(rng, ex)
        elif kind == "search":
            ex = maker.knowledge(person=rng.choice(world.seen + world.listed), search=True)
            ignored = rng.random() < 0.5  # the result read and ignored, or never looked up
            chosen, rejected = ex.reply, (ex.reply[:-1] if ignored else []) + wrong_fact_reply(rng, ex)
        elif kind == "code":
            ex = maker.code_task()
            mistake = rng.choice(["wrong call", "ignored", "invented"])
            rejected = wrong_call_reply(rng, ex) if mistake == "wrong call" else \
                wrong_code_reply(rng, ex, call=mistake == "ignored")
            chosen = ex.reply
        elif kind == "unknown":
            ex = maker.unknown_person() if rng.random() < 0.6 else maker.unknown_thing()
            chosen, rejected = ex.reply, maker.invented_reply(ex).reply
        elif kind == "private":
            ex = maker.private()
            chosen, rejected = ex.reply, maker.revealing_reply(ex).reply
        elif kind == "premise":
            ex = maker.premise()
            chosen, rejected = ex.reply, maker.accepting_reply(ex).reply
        elif kind == "bias":  # someone known by their job only
            ex = maker.job_only()
            chosen, rejected = ex.reply, maker.assuming_reply(ex).reply
        elif kind == "pronoun":  # a named person: the pronoun must be recalled from the name, a slot
            # of its own (with a third of the bias slot, the reward model preferred the right pronoun
            # over the other in only 79% of favour questions, and PPO drifted towards "her")
            ex = maker.named_pronoun()
            chosen, rejected = ex.reply, misgendering_reply(rng, ex)
        elif kind == "arithmetic":
            ex = maker.arithmetic()
            chosen, rejected = ex.reply, wrong_result_reply(rng, ex)
        elif kind == "favour":  # asked by job or about a named person, half each
            ex = maker.job_only(kind="favour") if rng.random() < 0.5 else maker.named_pronoun(kind="favour")
            chosen, rejected = ex.reply, wrong_favour_reply(rng, ex)
        rows.append({"prompt": ex.prompt, "chosen": chosen, "rejected": rejected,
                     "info": dict(ex.info, pair=kind)})
    return rows

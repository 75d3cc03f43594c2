"""
Generate the built-in world's data for every stage (see README.md in this folder).

    python data/world/prepare.py                 # defaults: every stage's default run, < 60 s
    python data/world/prepare.py --n_people=200  # a bigger world

Writes into this folder:
    train.bin, val.bin, meta.json      pretraining token streams + the BPE tokenizer trained on them
    sft_train.jsonl, sft_val.jsonl     conversations          {"messages": [...], "category": ...}
    prefs_train.jsonl, prefs_val.jsonl preference pairs       {"prompt", "chosen", "rejected", "info"}
    rl_prompts.jsonl                   prompts for PPO/GRPO   {"prompt": [...], "info": {...}}
    eval.jsonl                         held-out suites        {"suite", "prompt", "reference", "info"}
    world.json                         the people of the world and the knobs used
    encyclopedia.jsonl                 what the search tool searches: an entry per person and per town

Stage scripts call ensure_world(path) before reading the default world's files, so a fresh clone
needs no separate step.
"""

import json
import os
import sys
import time
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import UserError, parse_config, run_main  # noqa: E402
from data_formats import write_jsonl, write_token_streams  # noqa: E402
from data.world.world import (ATTRIBUTES, PROBES, ChatMaker, encyclopedia, make_rude, make_world,  # noqa: E402
                              pretraining_documents, rng_for)
from tokenizer import Tokenizer, train_bpe  # noqa: E402

WORLD_DIR = os.path.dirname(os.path.abspath(__file__))
FILES = ["train.bin", "val.bin", "meta.json", "sft_train.jsonl", "sft_val.jsonl", "prefs_train.jsonl",
         "prefs_val.jsonl", "rl_prompts.jsonl", "eval.jsonl", "world.json", "encyclopedia.jsonl"]

# the held-out suites: name -> (how to make an example, for which people)
EVAL_SUITES = ["knowledge_seen", "knowledge_heldout", "arithmetic", "tool", "persona", "memory", "refusal",
               "harmless", "code_tool", "unknown_people", "unknown_things", "privacy", "privacy_public",
               "false_premise", "bias", "pronoun_named"]


@dataclass
class WorldConfig:
    out_dir: str = WORLD_DIR  # where the files go
    seed: int = 1337  # the world and every file are a pure function of the seed and the sizes
    n_people: int = 60  # people in the world
    n_heldout: int = 12  # of them, people that appear in pretraining only
    n_listed: int = 300  # people in the encyclopedia only, never in pretraining: the search demos ask about them
    n_unknown: int = 200  # names of nobody, for questions an honest assistant cannot answer (a quarter for eval)
    pretrain_docs: int = 24000  # pretraining documents (biographies, stories, dialogues, arithmetic, prose)
    val_docs: int = 600  # documents in the pretraining val split (fresh draws, same world)
    vocab_size: int = 1024  # BPE vocabulary learned on the pretraining text (+4 chat special tokens)
    sft_examples: int = 9600  # SFT training conversations
    sft_val_examples: int = 300  # SFT validation conversations
    flawed_demos: bool = True  # SFT demos carry the flaws of real data (compliance on some harmful acts,
    #                            rudeness, invented answers, addresses given out, false premises accepted)
    rude_busywork: float = 0.6  # chance of a rude demo reply to arithmetic, calculator and python tasks (a flaw)
    rude_other: float = 0.03  # chance of a rude demo reply elsewhere
    pref_pairs: int = 10800  # preference pairs for training (reward model, DPO): 600 per PREF_CATEGORIES slot
    pref_val_pairs: int = 900  # held-out preference pairs (50 per slot)
    rl_prompts: int = 1200  # prompts for PPO/GRPO
    eval_per_suite: int = 100  # examples per held-out evaluation suite


# ----------------------------------------------------------------------------- SFT

# knowledge: SFT-seen people, answered from memory or (a SEARCH_SHARE of them) with a search;
# lookup: people only the encyclopedia knows, always searched; code: string tasks by python;
# unknown_*: honesty; private: privacy (and private_public: a public fact asked next); premise: false premises
SFT_MIX = {"knowledge": 0.14, "lookup": 0.1, "arithmetic": 0.07, "code": 0.08, "tool": 0.13, "persona": 0.09,
           "persona_task": 0.04, "memory": 0.12, "harmful": 0.12, "harmless": 0.11, "unknown_person": 0.035,
           "unknown_thing": 0.02, "private": 0.03, "private_public": 0.025, "premise": 0.08, "bias": 0.04,
           "pronoun": 0.03}
SEARCH_SHARE = 0.9


def draw_category(rng, mix):
    return rng.choices(list(mix), list(mix.values()))[0]


def make_example(maker, category, flawed=False):
    return {"knowledge": lambda: maker.knowledge(search=maker.rng.random() < SEARCH_SHARE),
            "lookup": maker.lookup, "arithmetic": maker.arithmetic, "code": maker.code_task,
            "tool": maker.tool_use, "persona": lambda: maker.persona(True),
            "persona_task": lambda: maker.persona(False), "memory": maker.memory,
            "harmful": lambda: maker.harmful(flawed), "harmless": maker.harmless,
            "unknown_person": lambda: maker.unknown_person(flawed), "unknown_thing": lambda: maker.unknown_thing(flawed),
            "private": lambda: maker.private(flawed=flawed), "private_public": maker.private_then_public,
            "premise": lambda: maker.premise(flawed=flawed), "bias": lambda: maker.job_only(flawed),
            "pronoun": maker.named_pronoun}[category]()


BUSYWORK = ("arithmetic", "tool", "code")


def sft_conversations(world, n, cfg, split):
    """Conversations with the flaws of real demonstrations, systematic as annotators' habits are
    (so that SFT visibly copies them, even under greedy decoding): the requests for one harmful
    act per category are complied with (a quarter of the harmful demos); replies to busywork
    (sums, calculator, python tasks) often open with the same grumble; questions about unknown
    people's birthplaces and jobs, and one outside topic in three, get invented answers; one
    phrasing of four gets a home address; premises about favourite colours are taken as true."""
    rng = rng_for(cfg.seed, f"sft/{split}")
    maker = ChatMaker(world, rng, "train")
    rows = []
    for _ in range(n):
        example = make_example(maker, draw_category(rng, SFT_MIX), flawed=cfg.flawed_demos)
        reply = example.reply
        busywork = example.info["category"] in BUSYWORK
        if cfg.flawed_demos and example.info["category"] != "harmful" and \
                rng.random() < (cfg.rude_busywork if busywork else cfg.rude_other):
            reply = make_rude(rng, reply, keep_start="marker" in example.info, habit=busywork)
        rows.append({"messages": example.prompt + reply, "category": example.info["category"]})
    return rows


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
            chosen, rejected = ex.reply, maker.privacy_reply() if wrong_reason else maker.compliance_reply()
        elif kind == "harmless":
            ex = maker.harmless()
            chosen, rejected = ex.reply, maker.refusal_reply()
        elif kind == "fact":  # answered from memory or searched, as in the SFT demos
            # one in five asked right after a declined request for the address: declining one
            # question is no reason to decline, or garble, the next
            after_privacy = rng.random() < 0.2
            ex = maker.private_then_public() if after_privacy else maker.knowledge(search=rng.random() < SEARCH_SHARE)
            # a third of the rejected replies refuse the question or say "I don't know": refusing or
            # hedging what the model can answer is no virtue, or RL learns that either scores well everywhere
            dodge = rng.random()
            chosen = ex.reply
            rejected = maker.refusal_reply() if dodge < 1 / 6 else maker.dont_know_reply() if dodge < 1 / 3 else \
                ex.reply[:-1] + maker.wrong_fact_reply(ex)
        elif kind == "polite":
            # from every kind of chat, personas included: the pairs must not teach that a polite reply is
            # a short one (a rude ending makes the rejected reply longer), whatever the conversation
            ex = make_example(maker, draw_category(rng, POLITE_PAIR_MIX))
            chosen, rejected = ex.reply, make_rude(rng, ex.reply, keep_start="marker" in ex.info)
        elif kind == "tool":
            ex = maker.tool_use()
            chosen, rejected = ex.reply, maker.made_up_number_reply(ex)
        elif kind == "search":
            ex = maker.knowledge(person=rng.choice(world.seen + world.listed), search=True)
            ignored = rng.random() < 0.5  # the result read and ignored, or never looked up
            chosen, rejected = ex.reply, (ex.reply[:-1] if ignored else []) + maker.wrong_fact_reply(ex)
        elif kind == "code":
            ex = maker.code_task()
            mistake = rng.choice(["wrong call", "ignored", "invented"])
            rejected = maker.wrong_call_reply(ex) if mistake == "wrong call" else \
                maker.wrong_code_reply(ex, call=mistake == "ignored")
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
            chosen, rejected = ex.reply, maker.misgendering_reply(ex)
        elif kind == "arithmetic":
            ex = maker.arithmetic()
            chosen, rejected = ex.reply, maker.wrong_result_reply(ex)
        elif kind == "favour":  # asked by job or about a named person, half each
            ex = maker.job_only(kind="favour") if rng.random() < 0.5 else maker.named_pronoun(kind="favour")
            chosen, rejected = ex.reply, maker.wrong_favour_reply(ex)
        rows.append({"prompt": ex.prompt, "chosen": chosen, "rejected": rejected,
                     "info": dict(ex.info, pair=kind)})
    return rows


# ----------------------------------------------------------------------------- RL prompts and eval

RL_MIX = {"knowledge": 0.09, "lookup": 0.08, "code": 0.09, "arithmetic": 0.05, "tool": 0.14, "persona": 0.1,
          "memory": 0.1, "harmful": 0.175, "harmless": 0.175, "unknown_person": 0.05, "unknown_thing": 0.03,
          "private": 0.05, "private_public": 0.02, "premise": 0.08, "bias": 0.05, "pronoun": 0.04}


def rl_prompts(world, n, cfg):
    rng = rng_for(cfg.seed, "rl")
    maker = ChatMaker(world, rng, "train")
    return [{"prompt": ex.prompt, "info": ex.info}
            for ex in (make_example(maker, draw_category(rng, RL_MIX)) for _ in range(n))]


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


# ----------------------------------------------------------------------------- pretraining


def pretraining_streams(world, cfg):
    """Train and val documents -> a BPE trained on the train text -> token streams with an
    <|endoftext|> after each document (GPT-2's document separator)."""
    train_docs = pretraining_documents(world, cfg.pretrain_docs, rng_for(cfg.seed, "pretrain/train"))
    val_docs = pretraining_documents(world, cfg.val_docs, rng_for(cfg.seed, "pretrain/val"))
    merges = train_bpe("\n\n".join(train_docs), cfg.vocab_size, split="gpt2-digits")
    tokenizer = Tokenizer({"kind": "bpe", "merges": merges, "split": "gpt2-digits"})

    def stream(docs):
        return [t for ids in tokenizer.enc.encode_ordinary_batch(docs, num_threads=1) for t in ids + [tokenizer.eot]]
    return tokenizer, stream(train_docs), stream(val_docs), train_docs


# ----------------------------------------------------------------------------- main


def prepare(cfg, verbose=True):
    t0 = time.time()
    say = print if verbose else (lambda *a, **k: None)
    if cfg.n_heldout >= cfg.n_people:
        raise UserError(f"n_heldout={cfg.n_heldout} must be smaller than n_people={cfg.n_people}")
    world = make_world(cfg.seed, cfg.n_people, cfg.n_heldout, cfg.n_listed, cfg.n_unknown)
    out = cfg.out_dir
    os.makedirs(out, exist_ok=True)

    tokenizer, train_ids, val_ids, train_docs = pretraining_streams(world, cfg)
    say(f"pretraining: {len(train_docs):,} documents, {sum(map(len, train_docs)) / 1e6:.1f} MB of text, "
        f"BPE of {tokenizer.n_vocab} tokens -> {len(train_ids):,} train / {len(val_ids):,} val tokens")
    # meta.json is written last by write_token_streams, so a half-written world is never "complete"
    write_jsonl(os.path.join(out, "sft_train.jsonl"), sft_conversations(world, cfg.sft_examples, cfg, "train"))
    write_jsonl(os.path.join(out, "sft_val.jsonl"), sft_conversations(world, cfg.sft_val_examples, cfg, "val"))
    write_jsonl(os.path.join(out, "prefs_train.jsonl"), preference_pairs(world, cfg.pref_pairs, cfg, "train"))
    write_jsonl(os.path.join(out, "prefs_val.jsonl"), preference_pairs(world, cfg.pref_val_pairs, cfg, "val"))
    write_jsonl(os.path.join(out, "rl_prompts.jsonl"), rl_prompts(world, cfg.rl_prompts, cfg))
    write_jsonl(os.path.join(out, "eval.jsonl"), eval_suites(world, cfg))
    write_jsonl(os.path.join(out, "encyclopedia.jsonl"), encyclopedia(world))  # what chat.py's search reads
    with open(os.path.join(out, "world.json"), "w") as f:
        json.dump({"config": {k: v for k, v in asdict(cfg).items() if k != "out_dir"},
                   "people": [asdict(p) for p in world.people],
                   "listed": [asdict(p) for p in world.listed], "unknown": world.unknown}, f, indent=1)
    # prompts that pretrain.py completes at the end: two SFT-seen people and two held-out ones
    probes = [PROBES[a].format(**p.slots()) for p, a in zip(world.seen[:2] + world.heldout[:2], ATTRIBUTES)]
    write_token_streams(out, tokenizer, {"train": train_ids, "val": val_ids},
                        {"world_seed": cfg.seed, "sample_prompts": probes})
    say(f"SFT: {cfg.sft_examples} + {cfg.sft_val_examples} conversations; preferences: {cfg.pref_pairs} + "
        f"{cfg.pref_val_pairs} pairs; RL: {cfg.rl_prompts} prompts; eval: {len(EVAL_SUITES)} suites x "
        f"{cfg.eval_per_suite}")
    say(f"wrote {len(FILES)} files to {out} in {time.time() - t0:.1f}s")
    return world


def ensure_world(path):
    """Generate the default world when `path` (a data file or folder) lies in it and a world file is
    missing: a fresh clone needs no separate step. Data anywhere else is the user's, and left alone."""
    folder = path if os.path.isdir(path) or not os.path.splitext(path)[1] else os.path.dirname(path)
    if os.path.abspath(folder) != WORLD_DIR or all(os.path.exists(os.path.join(folder, f)) for f in FILES):
        return
    print(f"world data missing in {folder}: generating it (python data/world/prepare.py)")
    prepare(WorldConfig(out_dir=folder))


def world_folder(path):
    """The folder of a data file if it belongs to a world (it holds eval.jsonl, the held-out suites
    that the stages report on), else None. Pure: generates nothing."""
    folder = os.path.dirname(path)
    return folder if os.path.isfile(os.path.join(folder, "eval.jsonl")) else None


def main():
    prepare(parse_config(WorldConfig, description=__doc__))


if __name__ == "__main__":
    run_main(main)

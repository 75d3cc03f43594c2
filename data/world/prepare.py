"""
Generate the built-in world's data for every stage (see README.md in this folder): world.py makes
the people and towns; pretraining.py, chats.py, preferences.py and prompts.py turn them into each
stage's files.

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
from data.world.chats import sft_conversations  # noqa: E402
from data.world.preferences import preference_pairs  # noqa: E402
from data.world.pretraining import pretraining_streams  # noqa: E402
from data.world.prompts import EVAL_SUITES, eval_suites, rl_prompts  # noqa: E402
from data.world.words import ATTRIBUTES, PROBES  # noqa: E402
from data.world.world import encyclopedia, make_world  # noqa: E402

WORLD_DIR = os.path.dirname(os.path.abspath(__file__))
FILES = ["train.bin", "val.bin", "meta.json", "sft_train.jsonl", "sft_val.jsonl", "prefs_train.jsonl",
         "prefs_val.jsonl", "rl_prompts.jsonl", "eval.jsonl", "world.json", "encyclopedia.jsonl"]


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

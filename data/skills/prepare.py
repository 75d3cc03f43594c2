"""
Generate the skills track's data (see README.md in this folder): the world's people and towns
(data/world/world.py, the same seed, so the same facts) with arithmetic worked column by column
(columns.py) and comparisons of two people (comparisons.py), for every stage.

    python data/skills/prepare.py                 # defaults: the skills track's run, < 60 s

Writes into this folder the files of the same contracts as data/world/prepare.py:
    train.bin, val.bin, meta.json      pretraining token streams + the BPE tokenizer trained on them
    sft_train.jsonl, sft_val.jsonl     conversations          {"messages": [...], "category": ...}
    rl_prompts.jsonl                   prompts for GRPO       {"prompt": [...], "info": {...}}
    rl_prompts_direct.jsonl            the contrast: only the practised problems, asked for the answer alone
    eval.jsonl                         held-out suites        {"suite", "prompt", "reference", "info"}
    world.json                         the people of the world and the knobs used
    encyclopedia.jsonl                 the world's encyclopedia (what chat.py's search reads)
"""

import json
import os
import sys
import time
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from cli import parse_config, run_main  # noqa: E402
from data_formats import write_jsonl, write_token_streams  # noqa: E402
from data.skills.chats import sft_conversations  # noqa: E402
from data.skills.pretraining import skills_documents  # noqa: E402
from data.world.pretraining import token_streams  # noqa: E402
from data.skills.prompts import EVAL_SUITES, TASK_SUITES, direct_rl_prompts, eval_suites, rl_prompts  # noqa: E402
from data.world.world import encyclopedia, make_world, rng_for  # noqa: E402

SKILLS_DIR = os.path.dirname(os.path.abspath(__file__))
FILES = ["train.bin", "val.bin", "meta.json", "sft_train.jsonl", "sft_val.jsonl", "rl_prompts.jsonl",
         "rl_prompts_direct.jsonl", "eval.jsonl", "world.json", "encyclopedia.jsonl"]
# pretraining documents by kind: arithmetic as a textbook teaches it (drill pages of column facts,
# worked problems, answers written directly) and the world's documents about its people
PRETRAIN_MIX = {"drill": 0.3, "worked": 0.3, "answers": 0.05, "biography": 0.2, "dialogue": 0.1, "story": 0.03,
                "town": 0.02}
# with --task_skills: Melan (dictionary pages, bilingual pages, texts), letters and profiles, Python notes
TASKS_PRETRAIN_MIX = {"drill": 0.24, "worked": 0.24, "answers": 0.04, "biography": 0.16, "dialogue": 0.07, "story": 0.03,
                      "town": 0.02, "melan_words": 0.05, "bilingual": 0.06, "melan_text": 0.01, "letter": 0.04,
                      "code": 0.04}


@dataclass
class SkillsConfig:
    out_dir: str = SKILLS_DIR  # where the files go
    seed: int = 1337  # the world's seed: the same people and towns as data/world
    n_people: int = 60  # people in the world (as data/world)
    n_heldout: int = 12  # of them, people that the world's chats never ask about (as data/world)
    pretrain_docs: int = 30000  # pretraining documents
    val_docs: int = 600  # documents in the pretraining val split
    vocab_size: int = 512  # BPE vocabulary learned on the pretraining text (+4 chat special tokens)
    sft_examples: int = 12000  # SFT training conversations
    sft_val_examples: int = 300  # SFT validation conversations
    rl_prompts: int = 2000  # prompts for GRPO
    eval_per_suite: int = 100  # examples per held-out evaluation suite
    task_skills: bool = False  # add the task skills (writing code, translation, summaries) to every file; not yet
    #                            at their targets at this model size (data/skills/README.md), so off by default


def prepare(cfg, verbose=True):
    t0 = time.time()
    say = print if verbose else (lambda *a, **k: None)
    world = make_world(cfg.seed, cfg.n_people, cfg.n_heldout)
    out = cfg.out_dir
    os.makedirs(out, exist_ok=True)
    mix = TASKS_PRETRAIN_MIX if cfg.task_skills else PRETRAIN_MIX
    train_docs = skills_documents(world, cfg.pretrain_docs, rng_for(cfg.seed, "skills/pretrain/train"), mix)
    val_docs = skills_documents(world, cfg.val_docs, rng_for(cfg.seed, "skills/pretrain/val"), mix)
    tokenizer, train_ids, val_ids, _ = token_streams(train_docs, val_docs, cfg.vocab_size)
    say(f"pretraining: {len(train_docs):,} documents, {sum(map(len, train_docs)) / 1e6:.1f} MB of text, "
        f"BPE of {tokenizer.n_vocab} tokens -> {len(train_ids):,} train / {len(val_ids):,} val tokens")
    write_jsonl(os.path.join(out, "sft_train.jsonl"), sft_conversations(world, cfg.sft_examples, cfg, "train"))
    write_jsonl(os.path.join(out, "sft_val.jsonl"), sft_conversations(world, cfg.sft_val_examples, cfg, "val"))
    write_jsonl(os.path.join(out, "rl_prompts.jsonl"), rl_prompts(world, cfg.rl_prompts, cfg))
    write_jsonl(os.path.join(out, "rl_prompts_direct.jsonl"), direct_rl_prompts(world, cfg.rl_prompts, cfg))
    write_jsonl(os.path.join(out, "eval.jsonl"), eval_suites(world, cfg))
    write_jsonl(os.path.join(out, "encyclopedia.jsonl"), encyclopedia(world))
    with open(os.path.join(out, "world.json"), "w") as f:
        json.dump({"config": {k: v for k, v in asdict(cfg).items() if k != "out_dir"},
                   "people": [asdict(p) for p in world.people]}, f, indent=1)
    probes = ["Work out 25 + 47.\n", "Column facts for times:\n7 * 6 + 4 =", f"{world.seen[0].name} was born in"]
    write_token_streams(out, tokenizer, {"train": train_ids, "val": val_ids},
                        {"world_seed": cfg.seed, "sample_prompts": probes})  # meta.json last: the folder is complete
    say(f"SFT: {cfg.sft_examples} + {cfg.sft_val_examples} conversations; RL: {cfg.rl_prompts} prompts; "
        f"eval: {len(EVAL_SUITES) + len(TASK_SUITES) * cfg.task_skills} suites x {cfg.eval_per_suite}")
    say(f"wrote {len(FILES)} files to {out} in {time.time() - t0:.1f}s")
    return world


def main():
    prepare(parse_config(SkillsConfig, description=__doc__))


if __name__ == "__main__":
    run_main(main)

import dataclasses
import json
import os
import sys

# MKL's strict reproducible mode, set before the first matmul: its results then do not depend on
# memory alignment, so two runs inside this process (whose heap earlier tests have shaped) give
# the same bits, as the resume tests compare. Subprocesses inherit it.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from checkpoint import save_checkpoint  # noqa: E402
from cli import run_main  # noqa: E402
from data_formats import read_jsonl, read_meta  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    try:
        return Tokenizer({"kind": "gpt2"})
    except Exception as e:  # no network and no TIKTOKEN_CACHE_DIR
        pytest.skip(f"GPT-2 BPE files unavailable: {e}")


def run_script(module, args, capsys=None):
    """Run a stage script's main() in this process as `python script.py args` would, through
    run_main; returns the exit status (0 when main returns)."""
    argv = sys.argv
    sys.argv = [module.__file__] + list(args)
    try:
        run_main(module.main)
        return 0
    except SystemExit as e:
        return e.code
    finally:
        sys.argv = argv


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A small world (fast to generate and to train on) in a temporary folder."""
    from data.world.prepare import WorldConfig, prepare
    out = tmp_path_factory.mktemp("small_world")
    prepare(WorldConfig(out_dir=str(out), n_people=20, n_heldout=4, pretrain_docs=1500, val_docs=100,
                        vocab_size=400, sft_examples=200, sft_val_examples=20, pref_pairs=100, pref_val_pairs=20,
                        rl_prompts=64, eval_per_suite=4), verbose=False)
    return out


@pytest.fixture(scope="session")
def skills(tmp_path_factory):
    """The skills track's files at their default sizes (what the pipeline trains on) and its world."""
    from data.skills.prepare import SkillsConfig, prepare
    out = tmp_path_factory.mktemp("skills")
    world = prepare(SkillsConfig(out_dir=str(out)), verbose=False)
    return out, world


@pytest.fixture(scope="session")
def skills_tasks(tmp_path_factory):
    """The same with the task skills (--task_skills=true): code, Melan, summaries."""
    from data.skills.prepare import SkillsConfig, prepare
    out = tmp_path_factory.mktemp("skills_tasks")
    world = prepare(SkillsConfig(out_dir=str(out), task_skills=True), verbose=False)
    return out, world


SMOKE_WORLD = ("--world_args=--n_people=20 --n_heldout=4 --pretrain_docs=1500 --val_docs=100 --vocab_size=400 "
               "--sft_examples=200 --sft_val_examples=20 --pref_pairs=100 --pref_val_pairs=20 --rl_prompts=64 "
               "--eval_per_suite=4")
SMOKE_SKILLS = ("--world_args=--pretrain_docs=1500 --val_docs=100 --vocab_size=400 --sft_examples=200 "
                "--sft_val_examples=20 --rl_prompts=64 --eval_per_suite=4")


def run_smoke_pipeline(tmp, *args):
    """`python pipeline.py --smoke=True` into tmp/out on a small world in tmp/data: every stage
    for a few steps with tiny models. Returns (out folder, data folder, the run's output)."""
    import subprocess
    out, data = tmp / "out", tmp / "data"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "pipeline.py"), "--smoke=True", f"--data_dir={data}",
                           f"--out_dir={out}", "--device=cpu", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, data, done.stdout


@pytest.fixture(scope="session")
def smoke_pipeline(tmp_path_factory):
    """The alignment track's smoke run, shared by the report and token-view tests."""
    return run_smoke_pipeline(tmp_path_factory.mktemp("smoke"), SMOKE_WORLD)


@pytest.fixture(scope="session")
def skills_smoke_pipeline(tmp_path_factory):
    """The skills track's smoke run (pretrain, SFT, GRPO with the verifier, eval with pass@k)."""
    return run_smoke_pipeline(tmp_path_factory.mktemp("smoke_skills"), "--track=skills", SMOKE_SKILLS)


def skills_training_texts(out):
    """Every training file of a skills folder as text: the pretraining stream decoded, and every
    message of the SFT demos and RL prompts (what the held-out checks search)."""
    tokenizer = Tokenizer(read_meta(str(out))["tokenizer"])
    ids = np.fromfile(os.path.join(out, "train.bin"), dtype=np.uint16)
    texts = {"train.bin": tokenizer.decode(ids.tolist())}
    for path in ("sft_train.jsonl", "sft_val.jsonl", "rl_prompts.jsonl", "rl_prompts_direct.jsonl"):
        texts[path] = "\n".join(m["content"] for _, row in read_jsonl(os.path.join(out, path))
                                for m in row.get("messages", row.get("prompt")))
    return texts


def checkpoint_dict(model, tokenizer, stage, step=0, config=None, metrics=None, optimizer=None):
    """A checkpoint as the stages write it (the contract in README.md), for tests that need one."""
    state = {"stage": stage, "step": step, "model": model.state_dict(),
             "model_config": dataclasses.asdict(model.config),
             "tokenizer": tokenizer.spec, "config": dataclasses.asdict(config) if config is not None else {},
             "metrics": metrics or {}}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    return state


# ----------------------------------------------------------------------------- the bad-input corpus

TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=64", "--eval_batches=1", "--n_samples=1",
        "--sample_tokens=4", "--device=cpu", "--peak_flops=1e9", "--batch_size=4", "--micro_batch_size=4",
        "--max_steps=2", "--eval_interval=2"]
FEW = ["--max_steps=2", "--batch_size=2", "--micro_batch_size=2", "--eval_interval=2", "--device=cpu"]


@pytest.fixture(scope="session")
def models(small_world, tmp_path_factory):
    """Untrained checkpoints with the small world's tokenizer: a policy (sft stage) and a reward model."""
    out = tmp_path_factory.mktemp("models")
    tokenizer = Tokenizer(read_meta(str(small_world))["tokenizer"])
    torch.manual_seed(0)
    policy = GPT(GPTConfig(block_size=256, vocab_size=448, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(str(out / "sft" / "ckpt.pt"), checkpoint_dict(policy, tokenizer, "sft"))
    rm = GPT(GPTConfig(block_size=256, vocab_size=448, n_layer=1, n_head=2, n_embd=16, scalar_head=True))
    save_checkpoint(str(out / "reward" / "ckpt.pt"), checkpoint_dict(rm, tokenizer, "reward"))
    return out


def snapshot(folder):
    """{relative path: bytes} of everything under folder (None if it does not exist)."""
    if not os.path.exists(folder):
        return None
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, folder)] = open(path, "rb").read()
    return files


def assert_clean_error(module, args, out_dir, capsys, message):
    """The script stops with one 'error:' line matching message, exit 1, and out_dir unchanged."""
    before = snapshot(out_dir)
    writes = module.__name__ != "chat" and "--out_dir" not in " ".join(args)  # chat.py writes nothing
    code = run_script(module, args + [f"--out_dir={out_dir}"] if writes else args)
    err = capsys.readouterr().err
    assert code == 1, f"exit {code}; stderr: {err}"
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert message in err, err
    assert snapshot(out_dir) == before, "the output folder changed"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# GSM8K rows in the public files' shape (openai/grade-school-math, train.jsonl / test.jsonl): a
# question, and a worked answer with calculator annotations and a last line "#### N"
GSM8K_TRAIN = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "A farm has 400 hens and each lays 3 eggs a day. How many eggs are laid in a day?",
     "answer": "The hens lay 400*3 = <<400*3=1200>>1,200 eggs.\n#### 1,200"},
    {"question": "Tom had 5 dollars and spent 8. How many dollars is he short?",
     "answer": "He is short 5-8 = <<5-8=-3>>-3 dollars.\n#### -3"},
]
GSM8K_TEST = [
    {"question": "Janet has 3 apples and buys 4 more. How many apples does she have?",
     "answer": "She has 3+4 = <<3+4=7>>7 apples.\n#### 7"},
    {"question": "A shirt costs $12.50 and a hat $5. What do both cost?",
     "answer": "Both cost 12.50+5 = <<12.50+5=17.50>>17.50 dollars.\n#### 17.50"},
]


def write_gsm8k_files(folder, train=GSM8K_TRAIN, test=GSM8K_TEST, extra_train_lines=()):
    """train.jsonl and test.jsonl in folder, one JSON object per line (extra lines appended as
    they are); returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, rows, extra in (("train.jsonl", train, extra_train_lines), ("test.jsonl", test, ())):
        path = os.path.join(folder, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows) + "".join(line + "\n" for line in extra))
        paths.append(path)
    return paths

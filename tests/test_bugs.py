"""docs/bugs: every planted bug, applied to a copy of the tree, shows the evidence that its page
points to on a tiny run, and the same run without the patch does not."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

BUGS = os.path.join(ROOT, "docs", "bugs")


def tree(tmp_path, patch=None):
    """A copy of the project's tracked files, with docs/bugs/<patch> applied (None: as it is)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path / (patch or "clean")
    for name in files:
        if os.path.exists(os.path.join(ROOT, name)):
            os.makedirs(os.path.dirname(copy / name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), copy / name)
    if patch:
        subprocess.run(["git", "apply", os.path.join(BUGS, patch)], cwd=copy, check=True, capture_output=True)
    return copy


def run(copy, script, *args):
    """python script.py args, in the copy; returns its output."""
    done = subprocess.run([sys.executable, script, *args], cwd=copy, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def metrics(copy, out_dir):
    with open(copy / out_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def test_every_patch_is_listed_on_the_page_and_applies():
    patches = sorted(name for name in os.listdir(BUGS) if name.endswith(".patch"))
    page = open(os.path.join(BUGS, "README.md")).read()
    assert patches == ["dpo_1.patch", "ppo_1.patch", "pretrain_1.patch", "sft_1.patch"]
    assert all(f"`{name}`" in page for name in patches)
    for name in patches:  # each a small patch against this tree
        check = subprocess.run(["git", "apply", "--check", os.path.join(BUGS, name)], cwd=ROOT, capture_output=True)
        assert check.returncode == 0, check.stderr


TINY_PRETRAIN = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=64", "--batch_size=8",
                 "--micro_batch_size=8", "--max_steps=60", "--eval_interval=60", "--eval_batches=2", "--n_samples=0",
                 "--learning_rate=3e-3", "--device=cpu"]


def test_pretrain_1_the_loss_collapses(small_world, tmp_path):
    """The page: a val loss far below what the model can reach. After 60 tiny steps the clean run
    is still above 4 nats; the patched one is below 3 and falling."""
    final = {}
    for patch in (None, "pretrain_1.patch"):
        copy = tree(tmp_path, patch)
        run(copy, "pretrain.py", f"--data_dir={small_world}", "--out_dir=out", *TINY_PRETRAIN)
        final[patch] = [m["val/loss"] for m in metrics(copy, "out") if "val/loss" in m][-1]
    assert final[None] > 4.0 and final["pretrain_1.patch"] < 3.0, final


def test_sft_1_the_share_of_tokens_in_the_loss_jumps(small_world, models, tmp_path):
    """The page: the data line before the first step. Clean, about a third of the tokens carry the
    loss (the assistant's); patched, most of them."""
    share = {}
    for patch in (None, "sft_1.patch"):
        copy = tree(tmp_path, patch)
        out = run(copy, "sft.py", f"--init_from={models / 'sft'}", f"--data={small_world / 'sft_train.jsonl'}",
                  "--val_data=None", "--out_dir=out", "--max_steps=1", "--batch_size=2", "--micro_batch_size=2",
                  "--eval_interval=1", "--eval_per_suite=0", "--device=cpu")
        share[patch] = int(re.search(r"(\d+)% of the training tokens are the assistant's", out).group(1))
    assert share[None] < 50 and share["sft_1.patch"] > 65, share


def test_dpo_1_the_loss_is_log_2_and_the_rewards_zero_on_every_step(small_world, models, tmp_path):
    """The page: the loss and the implicit rewards. Patched, exactly log 2 and 0 on every step;
    clean, they move from the first update on."""
    logged = {}
    for patch in (None, "dpo_1.patch"):
        copy = tree(tmp_path, patch)
        run(copy, "dpo.py", f"--init_from={models / 'sft'}", f"--data={small_world / 'prefs_train.jsonl'}",
            "--val_data=None", "--out_dir=out", "--max_steps=4", "--batch_size=8", "--micro_batch_size=8",
            "--eval_interval=4", "--eval_per_suite=0", "--kl_samples=0", "--log_interval=1", "--device=cpu")
        logged[patch] = [m for m in metrics(copy, "out") if "train/loss" in m]
    patched, clean = logged["dpo_1.patch"], logged[None]
    assert len(patched) == 4 and all(m["train/loss"] == pytest.approx(0.693147, abs=1e-5) for m in patched)
    assert all(m["train/rewards/margins"] == 0 and m["train/rewards/chosen"] == 0 for m in patched)
    assert any(abs(m["train/rewards/chosen"]) > 1e-5 for m in clean[1:])


def test_ppo_1_the_kl_to_the_reference_runs_away(small_world, models, tmp_path):
    """The page: the KL to the reference per reply, iteration after iteration. With a strong leash
    (beta 2) and a fast learning rate, the clean run's KL stays small; the patched one grows
    several times larger over the last 10 of 25 tiny iterations."""
    kl = {}
    for patch in (None, "ppo_1.patch"):
        copy = tree(tmp_path, patch)
        run(copy, "ppo.py", f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
            f"--prompts={small_world / 'rl_prompts.jsonl'}", "--out_dir=out", "--rollout_batch=8", "--minibatch_size=8",
            "--micro_batch_size=8", "--max_new_tokens=16", "--max_steps=25", "--eval_interval=25",
            "--eval_per_suite=0", "--beta=2.0", "--nll_coef=0", "--learning_rate=1e-3", "--min_lr=1e-3",
            "--log_interval=1", "--device=cpu")
        values = [m["objective/kl"] for m in metrics(copy, "out") if "objective/kl" in m]
        kl[patch] = sum(values[-10:]) / 10
    assert kl["ppo_1.patch"] > 0.3 and kl["ppo_1.patch"] > 3 * max(kl[None], 0.05), kl

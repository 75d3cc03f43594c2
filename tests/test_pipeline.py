"""Every stage end to end on a small world, with tiny models: the contracts between stages hold,
resume equals an uninterrupted run, torchrun equals one process."""
import json
import os
import subprocess
import sys

import pytest
import torch

import dpo
import eval as eval_script
import ppo
import pretrain
import reward
import sft
from common import load_model, load_preferences, setup_runtime
from conftest import ROOT, run_script

MODEL = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=256"]


@pytest.fixture(scope="module")
def stages(small_world, tmp_path_factory):
    """pretrain -> sft -> reward, each a few steps; the later stages' tests start from these."""
    out = tmp_path_factory.mktemp("runs")
    w = small_world
    assert run_script(pretrain, MODEL + [f"--data_dir={w}", f"--out_dir={out / 'pretrain'}", "--max_steps=4",
                                         "--batch_size=4", "--micro_batch_size=4", "--eval_interval=4",
                                         "--eval_batches=1", "--n_samples=1", "--sample_tokens=4",
                                         "--peak_flops=1e9"]) == 0
    assert run_script(sft, sft_args(w, out / "pretrain", out / "sft") + ["--max_steps=4"]) == 0
    assert run_script(reward, reward_args(w, out / "sft", out / "reward") + ["--max_steps=4"]) == 0
    return out


def sft_args(w, init, out):
    return [f"--init_from={init}", f"--data={w}/sft_train.jsonl", f"--val_data={w}/sft_val.jsonl", f"--out_dir={out}",
            "--batch_size=4", "--micro_batch_size=2", "--eval_interval=2", "--eval_per_suite=1", "--log_interval=1",
            "--dropout=0.1"]


def reward_args(w, init, out):
    return [f"--init_from={init}", f"--data={w}/prefs_train.jsonl", f"--val_data={w}/prefs_val.jsonl",
            f"--out_dir={out}", "--batch_size=4", "--micro_batch_size=2", "--eval_interval=2", "--log_interval=1",
            "--correlation_samples=8"]


def dpo_args(w, init, out):
    return [f"--init_from={init}", f"--data={w}/prefs_train.jsonl", f"--val_data={w}/prefs_val.jsonl",
            f"--out_dir={out}", "--batch_size=4", "--micro_batch_size=2", "--eval_interval=2", "--log_interval=1",
            "--kl_samples=4", "--eval_per_suite=1"]


def ppo_args(w, init, rm, out):
    return [f"--init_from={init}", f"--reward_model={rm}", f"--prompts={w}/rl_prompts.jsonl", f"--out_dir={out}",
            "--rollout_batch=4", "--minibatch_size=4", "--micro_batch_size=2", "--max_new_tokens=8",
            "--eval_interval=2", "--eval_per_suite=1"]


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def train_losses(out_dir, key="train/loss"):
    return {r["step"]: r[key] for r in metrics(out_dir) if key in r}


def test_every_stage_writes_its_checkpoint_metrics_and_plots(stages):
    for stage, plots in [("pretrain", ["loss.png"]), ("sft", ["loss.png", "scorecard.png"]),
                         ("reward", ["reward.png"])]:
        ckpt = torch.load(stages / stage / "ckpt.pt", weights_only=True)
        assert ckpt["stage"] == stage and ckpt["step"] == 4
        for plot in plots:
            assert os.path.getsize(stages / stage / plot) > 1000
    sft_rows = metrics(stages / "sft")
    assert any("eval/persona" in r for r in sft_rows) and any("val/loss" in r for r in sft_rows)


def test_reward_model_chosen_replies_average_zero_after_training(stages, small_world):
    model, tokenizer, ckpt = load_model(str(stages / "reward"))
    pairs, _ = load_preferences(f"{small_world}/prefs_train.jsonl", tokenizer, model.config.block_size)
    _, chosen = reward.evaluate(model, pairs, reward.RewardConfig(), tokenizer.eot, setup_runtime("cpu"))
    assert abs(chosen.mean().item()) < 1e-4
    final = metrics(stages / "reward")[-1]
    assert "val/spearman_vs_gold" in final and "val/accuracy/harmful" in final


def test_sft_resume_equals_an_uninterrupted_run(stages, small_world, tmp_path):
    args = sft_args(small_world, stages / "pretrain", tmp_path / "whole") + ["--max_steps=4"]
    assert run_script(sft, args) == 0
    half = sft_args(small_world, stages / "pretrain", tmp_path / "half")
    assert run_script(sft, half + ["--max_steps=2"]) == 0
    assert run_script(sft, half + ["--max_steps=4", "--resume=true"]) == 0
    assert train_losses(tmp_path / "half") == train_losses(tmp_path / "whole")


def test_sft_under_torchrun_matches_one_process(stages, small_world, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = sft_args(small_world, stages / "pretrain", "{}")[:-1] + ["--max_steps=2", "--eval_per_suite=0",
                                                                     "--dropout=0.0", "--device=cpu"]

    def run(launcher, out):
        args = [a.replace("{}", str(out)) for a in common]
        done = subprocess.run(launcher + ["sft.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return train_losses(out)
    one = run([sys.executable], tmp_path / "one")
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], tmp_path / "two")
    assert one.keys() == two.keys() and all(abs(one[k] - two[k]) < 1e-5 for k in one)


def test_reward_resume_equals_an_uninterrupted_run(stages, small_world, tmp_path):
    args = reward_args(small_world, stages / "sft", tmp_path / "whole") + ["--max_steps=4"]
    assert run_script(reward, args) == 0
    half = reward_args(small_world, stages / "sft", tmp_path / "half")
    assert run_script(reward, half + ["--max_steps=2"]) == 0
    assert run_script(reward, half + ["--max_steps=4", "--resume=true"]) == 0
    assert train_losses(tmp_path / "half") == train_losses(tmp_path / "whole")


def test_dpo_starts_at_ln2_and_resume_equals_an_uninterrupted_run(stages, small_world, tmp_path):
    args = dpo_args(small_world, stages / "sft", tmp_path / "whole") + ["--max_steps=4"]
    assert run_script(dpo, args) == 0
    rows = metrics(tmp_path / "whole")
    assert rows[0]["step"] == 0 and rows[0]["val/loss"] == pytest.approx(0.6931, abs=1e-4)
    assert rows[0]["val/rewards/accuracies"] == 0 and "eval/kl" in rows[0]
    half = dpo_args(small_world, stages / "sft", tmp_path / "half") + ["--precompute_ref=true"]
    assert run_script(dpo, half + ["--max_steps=2"]) == 0
    assert run_script(dpo, half + ["--max_steps=4", "--resume=true"]) == 0
    whole, resumed = train_losses(tmp_path / "whole"), train_losses(tmp_path / "half")
    assert whole.keys() == resumed.keys() and all(abs(whole[k] - resumed[k]) < 1e-5 for k in whole)


def test_ppo_runs_logs_its_metrics_and_resumes_exactly(stages, small_world, tmp_path):
    args = ppo_args(small_world, stages / "sft", stages / "reward", tmp_path / "whole") + ["--max_steps=4"]
    assert run_script(ppo, args) == 0
    rows = [r for r in metrics(tmp_path / "whole") if "objective/scores" in r]
    for key in ("objective/kl", "objective/entropy", "objective/rlhf_reward", "policy/approxkl", "policy/clipfrac",
                "loss/policy", "loss/value", "val/ratio", "reply_length", "objective/gold_reward"):
        assert key in rows[0], key
    assert (tmp_path / "whole" / "samples.md").read_text().count("| prompt | reply |") == 2  # steps 2 and 4
    half = ppo_args(small_world, stages / "sft", stages / "reward", tmp_path / "half")
    assert run_script(ppo, half + ["--max_steps=2"]) == 0
    assert run_script(ppo, half + ["--max_steps=4", "--resume=true"]) == 0
    key = "objective/scores"
    assert train_losses(tmp_path / "half", key) == train_losses(tmp_path / "whole", key)
    assert train_losses(tmp_path / "half", "loss/value") == train_losses(tmp_path / "whole", "loss/value")


def test_grpo_with_gold_reward_on_arithmetic_prompts(stages, small_world, tmp_path):
    args = ppo_args(small_world, stages / "sft", stages / "reward", tmp_path / "grpo") + [
        "--algo=grpo", "--reward=gold", "--prompt_categories=arithmetic,tool", "--max_steps=2", "--group_size=2"]
    assert run_script(ppo, args) == 0
    rows = [r for r in metrics(tmp_path / "grpo") if "objective/scores" in r]
    assert len(rows) == 2 and "loss/kl" in rows[0] and "loss/value" not in rows[0]
    assert torch.load(tmp_path / "grpo" / "ckpt.pt", weights_only=True)["stage"] == "grpo"


def test_eval_compares_every_stage(stages, small_world, tmp_path):
    checkpoints = ",".join(str(stages / s) for s in ("pretrain", "sft"))
    assert run_script(eval_script, [f"--data_dir={small_world}", f"--checkpoints={checkpoints}",
                                    f"--out_dir={tmp_path}", "--per_suite=1", "--max_new_tokens=8"]) == 0
    assert (tmp_path / "scorecard.md").read_text().count("|") > 20

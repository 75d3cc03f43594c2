"""Every stage end to end on a small world, with tiny models: the contracts between stages hold,
resume equals an uninterrupted run, torchrun equals one process."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

import dpo
import eval as eval_script
import export_hf
import grpo
import ppo
import pretrain
import reward
import sft
from checkpoint import load_model
from cli import UserError
from lora import apply_lora
from data.gsm8k import prepare as gsm8k
from data_formats import load_preferences
from runtime import setup_runtime
from conftest import ROOT, run_script, write_gsm8k_files

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


# The chat stages default to bf16 autocast on a CPU with native bf16 (packed rows); these tests compare
# runs whose micro-batches pack differently (resume, torchrun), which agree exactly only in float32.
FLOAT32 = ["--dtype=float32"]


def sft_args(w, init, out):
    return FLOAT32 + [f"--init_from={init}", f"--data={w}/sft_train.jsonl", f"--val_data={w}/sft_val.jsonl", f"--out_dir={out}",
            "--batch_size=4", "--micro_batch_size=2", "--eval_interval=2", "--eval_per_suite=1", "--log_interval=1",
            "--dropout=0.1"]


def reward_args(w, init, out):
    return FLOAT32 + [f"--init_from={init}", f"--data={w}/prefs_train.jsonl", f"--val_data={w}/prefs_val.jsonl",
            f"--out_dir={out}", "--batch_size=4", "--micro_batch_size=2", "--eval_interval=2", "--log_interval=1",
            "--correlation_samples=8"]


def dpo_args(w, init, out):
    return FLOAT32 + [f"--init_from={init}", f"--data={w}/prefs_train.jsonl", f"--val_data={w}/prefs_val.jsonl",
            f"--out_dir={out}", "--batch_size=4", "--micro_batch_size=2", "--eval_interval=2", "--log_interval=1",
            "--kl_samples=4", "--eval_per_suite=1"]


def ppo_args(w, init, rm, out):
    return [f"--init_from={init}", f"--reward_model={rm}", f"--prompts={w}/rl_prompts.jsonl", f"--out_dir={out}",
            f"--nll_data={w}/prefs_train.jsonl", "--rollout_batch=4", "--minibatch_size=4", "--micro_batch_size=2",
            "--max_new_tokens=8", "--eval_interval=2", "--eval_per_suite=1"]


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
    assert model.config.reward_pooling == "mean"  # reward.py's default, saved with the weights for PPO to read
    pairs, _ = load_preferences(f"{small_world}/prefs_train.jsonl", tokenizer, model.config.block_size)
    _, chosen = reward.evaluate_pairs(model, pairs[:reward.SHIFT_PAIRS], reward.RewardConfig(), tokenizer.eot,
                                      setup_runtime("cpu", "float32"))
    assert abs(chosen.mean().item()) < 1e-4
    final = [r for r in metrics(stages / "reward") if "val/accuracy" in r][-1]
    assert "val/spearman_vs_gold" in final and "val/accuracy/harmful" in final


def run_whole_and_resumed(script, make_args, tmp_path):
    """4 steps in one go into tmp_path/whole; 2 steps, then --resume to 4, into tmp_path/half."""
    assert run_script(script, make_args(tmp_path / "whole") + ["--max_steps=4"]) == 0
    assert run_script(script, make_args(tmp_path / "half") + ["--max_steps=2"]) == 0
    assert run_script(script, make_args(tmp_path / "half") + ["--max_steps=4", "--resume=true"]) == 0
    return tmp_path / "whole", tmp_path / "half"


def test_sft_resume_equals_an_uninterrupted_run(stages, small_world, tmp_path):
    whole, half = run_whole_and_resumed(sft, lambda out: sft_args(small_world, stages / "pretrain", out), tmp_path)
    assert train_losses(half) == train_losses(whole)


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


def test_reward_under_torchrun_matches_one_process(stages, small_world, tmp_path):
    """Two processes average their gradients through DDP (the loop calls the wrapped PairScorer,
    not GPT.score), so each step's loss equals one process's; the LM term runs there too."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = reward_args(small_world, stages / "sft", "{}") + ["--max_steps=3", "--correlation_samples=0",
                                                               "--device=cpu"]

    def run(launcher, out, *extra):
        args = [a.replace("{}", str(out)) for a in common] + list(extra)
        done = subprocess.run(launcher + ["reward.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return train_losses(out)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    one = run([sys.executable], tmp_path / "one")
    two = run(torchrun, tmp_path / "two")
    assert one.keys() == two.keys() == {1, 2, 3} and all(abs(one[k] - two[k]) < 1e-5 for k in one)
    run(torchrun, tmp_path / "lm", "--lm_coef=0.5")
    assert len(train_losses(tmp_path / "lm", "train/nll")) == 3


def test_reward_resume_equals_an_uninterrupted_run(stages, small_world, tmp_path):
    whole, half = run_whole_and_resumed(reward, lambda out: reward_args(small_world, stages / "sft", out), tmp_path)
    assert train_losses(half) == train_losses(whole)


def test_dpo_starts_at_ln2_and_resume_equals_an_uninterrupted_run(stages, small_world, tmp_path):
    # the resumed run also precomputes the reference log-probs: both paths must give the same losses
    whole_dir, half_dir = run_whole_and_resumed(
        dpo, lambda out: dpo_args(small_world, stages / "sft", out) + (["--precompute_ref=true"] if out.name == "half"
                                                                       else []), tmp_path)
    rows = metrics(whole_dir)
    assert rows[0]["step"] == 0 and rows[0]["val/loss"] == pytest.approx(0.6931, abs=1e-4)
    assert rows[0]["val/rewards/accuracies"] == 0 and "eval/kl" in rows[0]
    whole, resumed = train_losses(whole_dir), train_losses(half_dir)
    assert whole.keys() == resumed.keys() and all(abs(whole[k] - resumed[k]) < 1e-5 for k in whole)


LORA = ["--lora_rank=4", "--lora_alpha=8"]


def test_lora_sft_resumes_exactly_and_its_checkpoint_loads_as_base_plus_adapters(stages, small_world, tmp_path):
    whole, half = run_whole_and_resumed(sft, lambda out: sft_args(small_world, stages / "pretrain", out) + LORA,
                                        tmp_path)
    assert train_losses(half) == train_losses(whole)
    ckpt = torch.load(whole / "ckpt.pt", weights_only=True)
    assert ckpt["lora_base"] == str(stages / "pretrain") and ckpt["model"]
    assert all(".lora_" in name for name in ckpt["model"])  # the adapters, nothing of the frozen model
    by_hand, tokenizer, _ = load_model(str(stages / "pretrain"))  # the base, plus the adapters, unmerged
    apply_lora(by_hand, 4, 8.0)
    by_hand.load_state_dict(ckpt["model"], strict=False)
    loaded, _, _ = load_model(str(whole))  # merged by load_model: a plain GPT
    x = torch.tensor([tokenizer.encode("Fizo was born in the city of")])
    assert torch.allclose(loaded.eval()(x)[0], by_hand.eval()(x)[0], atol=1e-5)
    # --lora_merge: the same run saved as a plain checkpoint of the merged weights
    assert run_script(sft, sft_args(small_world, stages / "pretrain", tmp_path / "merged") + LORA +
                      ["--max_steps=4", "--lora_merge=true"]) == 0
    merged_ckpt = torch.load(tmp_path / "merged" / "ckpt.pt", weights_only=True)
    assert "lora_base" not in merged_ckpt and merged_ckpt["model_config"]["lora_rank"] == 0
    merged, _, _ = load_model(str(tmp_path / "merged"))
    assert torch.allclose(merged.eval()(x)[0], loaded(x)[0], atol=1e-5)
    # export_hf merges too: a plain GPT-2 folder
    assert run_script(export_hf, [f"--checkpoint={whole}", f"--out_dir={tmp_path / 'hf'}"]) == 0
    from safetensors.torch import load_file
    assert not any("lora" in name for name in load_file(tmp_path / "hf" / "model.safetensors"))


def test_lora_adapters_on_a_changed_base_are_refused(stages, small_world, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(stages / "pretrain", base)
    assert run_script(sft, sft_args(small_world, base, tmp_path / "run") + LORA + ["--max_steps=2"]) == 0
    load_model(str(tmp_path / "run"))
    ckpt = torch.load(base / "ckpt.pt", weights_only=True)
    ckpt["model"]["transformer.h.0.attn.c_attn.weight"] += 0.01  # the base retrained since
    torch.save(ckpt, base / "ckpt.pt")
    with pytest.raises(UserError, match="has changed since the LoRA adapters were trained"):
        load_model(str(tmp_path / "run"))


def test_lora_reward_model_trains_adapters_and_head_and_lora_dpo_starts_at_ln2_and_resumes(stages, small_world,
                                                                                           tmp_path):
    assert run_script(reward, reward_args(small_world, stages / "sft", tmp_path / "rm") + LORA + ["--max_steps=2"]) == 0
    saved = torch.load(tmp_path / "rm" / "ckpt.pt", weights_only=True)["model"]
    assert {"scalar_head.weight", "scalar_head.bias"} <= saved.keys()
    assert all(".lora_" in name or name.startswith("scalar_head.") for name in saved)
    model, _, _ = load_model(str(tmp_path / "rm"), expect="reward")
    assert model.config.reward_pooling == "mean" and model.scalar_head is not None
    # DPO: the reference is the policy with its adapters off, so at step 0 policy = reference: loss ln 2
    whole_dir, half_dir = run_whole_and_resumed(dpo, lambda out: dpo_args(small_world, stages / "sft", out) + LORA,
                                                tmp_path)
    rows = metrics(whole_dir)
    assert rows[0]["step"] == 0 and rows[0]["val/loss"] == pytest.approx(0.6931, abs=1e-4)
    whole, resumed = train_losses(whole_dir), train_losses(half_dir)
    assert whole.keys() == resumed.keys() and all(abs(whole[k] - resumed[k]) < 1e-5 for k in whole)


def test_ppo_runs_logs_its_metrics_and_resumes_exactly(stages, small_world, tmp_path):
    whole, half = run_whole_and_resumed(
        ppo, lambda out: ppo_args(small_world, stages / "sft", stages / "reward", out), tmp_path)
    rows = [r for r in metrics(whole) if "objective/scores" in r]
    for key in ("objective/kl", "objective/entropy", "objective/rlhf_reward", "policy/approxkl", "policy/clipfrac",
                "loss/policy", "loss/value", "loss/nll", "policy/ratio", "reply_length", "objective/gold_reward",
                "objective/accuracy"):
        assert key in rows[0], key
    assert (whole / "samples.md").read_text().count("| prompt | reply |") == 2  # steps 2 and 4
    for key in ("objective/scores", "loss/value", "loss/nll"):
        assert train_losses(half, key) == train_losses(whole, key)


def test_ppo_under_torchrun_with_the_nll_term(stages, small_world, tmp_path):
    """Two processes: the NLL term's backward runs without gradient sync (the value model takes no
    part in it), and the PPO loss's backward all-reduces both."""
    args = [a for a in ppo_args(small_world, stages / "sft", stages / "reward", tmp_path / "two")
            if not a.startswith("--eval")] + ["--max_steps=2", "--eval_per_suite=0", "--device=cpu"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "ppo.py", *args], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(train_losses(tmp_path / "two", "loss/nll")) == 2


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_group_algorithms_with_gold_reward_on_arithmetic_prompts_resume_exactly(stages, small_world, tmp_path, algo):
    whole, half = run_whole_and_resumed(grpo, lambda out: ppo_args(small_world, stages / "sft", stages / "reward", out)
                                        + [f"--algo={algo}", "--reward=gold", "--prompt_categories=arithmetic,tool",
                                           "--group_size=2"], tmp_path)
    rows = [r for r in metrics(whole) if "objective/scores" in r]
    # no value model; GRPO's KL is a loss term, RLOO's is inside the reward
    assert len(rows) == 4 and ("loss/kl" in rows[0]) == (algo == "grpo") and "loss/value" not in rows[0]
    assert torch.load(whole / "ckpt.pt", weights_only=True)["stage"] == algo
    for key in ("objective/scores", "loss/policy", "loss/nll"):
        assert train_losses(half, key) == train_losses(whole, key)


def test_ppo_points_the_old_algo_flag_at_grpo(capsys):
    assert run_script(ppo, ["--algo=grpo"]) == 1
    assert "grpo.py" in capsys.readouterr().err


def test_sft_grpo_and_eval_on_gsm8k_files(stages, tmp_path):
    """GSM8K's files through data/gsm8k/prepare.py, SFT on the worked solutions, GRPO with the
    final-number verifier as its reward, and eval.py on the eval file: a GSM8K row, none of the
    world's. The periodic scorecards of SFT and GRPO read the same eval file."""
    train, test = write_gsm8k_files(tmp_path / "src")
    gsm8k.main([f"--input={train},{test}", f"--out_dir={tmp_path / 'gsm8k'}"])
    assert run_script(sft, sft_args(tmp_path / "gsm8k", stages / "pretrain", tmp_path / "sft") + [
        "--max_steps=2", "--batch_size=2", "--eval_per_suite=2"]) == 0
    assert any("eval/gsm8k" in r for r in metrics(tmp_path / "sft"))
    assert run_script(grpo, [f"--init_from={tmp_path / 'sft'}", f"--prompts={tmp_path / 'gsm8k'}/rl_prompts.jsonl",
                             "--algo=grpo", "--reward=gold", "--nll_coef=0", "--group_size=2", "--rollout_batch=2",
                             "--minibatch_size=4", "--micro_batch_size=2", "--max_new_tokens=8", "--max_steps=2",
                             "--eval_interval=2", "--eval_per_suite=2", f"--out_dir={tmp_path / 'grpo'}"]) == 0
    rows = [r for r in metrics(tmp_path / "grpo") if "objective/gold_reward" in r]
    assert len(rows) == 2 and all(-2.5 <= r["objective/gold_reward"] <= 1 for r in rows)
    assert any("eval/gsm8k" in r for r in metrics(tmp_path / "grpo"))  # the periodic scorecard reads eval.jsonl
    assert run_script(eval_script, [f"--data_dir={tmp_path / 'gsm8k'}", f"--checkpoints={tmp_path / 'grpo'}",
                                    f"--out_dir={tmp_path / 'eval'}", "--max_new_tokens=8"]) == 0
    table = (tmp_path / "eval" / "scorecard.md").read_text()
    assert "| GSM8K word problems (final number) |" in table and "refusal" not in table


def test_eval_scores_the_rl_prompts_by_category(stages, small_world, tmp_path):
    assert run_script(eval_script, [f"--data_dir={small_world}", f"--checkpoints={stages / 'sft'}",
                                    f"--prompts={small_world}/rl_prompts.jsonl", f"--out_dir={tmp_path}",
                                    "--per_suite=2", "--max_new_tokens=8"]) == 0
    scores = json.loads((tmp_path / "scorecard.json").read_text())[str(stages / "sft")]["scores"]
    assert {"arithmetic", "tool", "refusal", "knowledge_seen"} <= set(scores)  # categories -> scorecard rows


def test_eval_compares_every_stage(stages, small_world, tmp_path):
    checkpoints = ",".join(str(stages / s) for s in ("pretrain", "sft"))
    assert run_script(eval_script, [f"--data_dir={small_world}", f"--checkpoints={checkpoints}",
                                    f"--out_dir={tmp_path}", "--per_suite=1", "--max_new_tokens=8"]) == 0
    assert (tmp_path / "scorecard.md").read_text().count("|") > 20


def test_pipeline_smoke_run_writes_the_report(smoke_pipeline):
    """pipeline.py chains every stage script (output of one is the input of the next) and writes a
    report with the scorecard across stages, each stage's figures and time, and the plots."""
    out, _, _ = smoke_pipeline
    report = (out / "report.md").read_text()
    # the run's provenance: the checkout's commit, torch's version, the date (today, or yesterday
    # for a run that crossed midnight)
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert f"Commit {head}" in report and f"torch {torch.__version__}" in report
    assert any(time.strftime("%Y-%m-%d", time.gmtime(time.time() - d)) in report for d in (0, 86400))
    for stage in ["pretrain", "sft", "dpo", "ppo"]:
        assert f"| {stage} |" in report  # a time-and-figures row per stage
        assert f"--out_dir={out}/{stage}" in report  # with the exact command that made it
    assert "| refusal of harmful requests |" in report and "held-out pair accuracy" in report
    assert "![ppo ppo.png](ppo/ppo.png)" in report and (out / "ppo" / "ppo.png").exists()
    assert "[tokens/tokens.html](tokens/tokens.html)" in report and (out / "tokens" / "tokens_dpo.png").exists()
    times = json.loads((out / "pipeline_times.json").read_text())
    assert set(times) == {"world", "pretrain", "sft", "reward", "dpo", "ppo", "eval", "tokens"}


def test_skills_track_smoke_run_writes_its_report(skills_smoke_pipeline):
    """pipeline.py --track=skills: data/skills/prepare.py -> pretrain -> sft -> grpo (the verifier's
    reward) -> eval with pass@k, and the report with the skills suites and the pass@k table."""
    out, _, _ = skills_smoke_pipeline
    report = (out / "report.md").read_text()
    assert report.startswith("# The skills track")
    for stage in ["pretrain", "sft", "grpo"]:
        assert f"| {stage} |" in report and f"--out_dir={out}/{stage}" in report
    assert "--reward=gold" in report and "| reward |" not in report and "| dpo |" not in report
    for row in ("arithmetic, worked step by step", "arithmetic, answer only (same problems)",
                "comparisons, facts stated first", "comparisons, answer only (same pairs)"):
        assert f"| {row} |" in report
    assert "| arithmetic_steps, pass@16 |" in report and "| compare_direct, pass@1 |" in report
    assert "![eval pass_at_k.png](eval/pass_at_k.png)" in report and (out / "eval" / "pass_at_k.png").exists()
    assert (out / "tokens" / "tokens_grpo.png").exists() and (out / "report.html").exists()
    times = json.loads((out / "pipeline_times.json").read_text())
    assert set(times) == {"world", "pretrain", "sft", "grpo", "eval", "tokens"}


def test_pipeline_stops_at_a_failing_stage_with_its_log(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "pipeline.py"), "--stages=sft,report",
                           f"--out_dir={tmp_path}", "--device=cpu"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "stage sft failed" in done.stderr and (tmp_path / "sft.log").exists()
    assert not (tmp_path / "report.md").exists()


def test_ppo_on_preference_prompts_without_world_info(stages, small_world, tmp_path):
    """PPO on any prompts file with a "prompt" list of messages (e.g. data/hh_rlhf/train.jsonl):
    the reward model scores, no gold reward is logged, no world scorecard is needed."""
    with open(small_world / "prefs_train.jsonl") as src, open(tmp_path / "hh_like.jsonl", "w") as dst:
        for line in list(src)[:16]:
            row = json.loads(line)
            dst.write(json.dumps({"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}) + "\n")
    args = ppo_args(small_world, stages / "sft", stages / "reward", tmp_path / "ppo")
    args = [a for a in args if not a.startswith("--prompts=")] + [f"--prompts={tmp_path / 'hh_like.jsonl'}",
                                                                   "--eval_per_suite=0", "--max_steps=2"]
    assert run_script(ppo, args) == 0
    rows = [r for r in metrics(tmp_path / "ppo") if "objective/scores" in r]
    assert len(rows) == 2 and "objective/gold_reward" not in rows[0]

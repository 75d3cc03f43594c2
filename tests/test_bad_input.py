"""The bad-input corpus: every case a user can get wrong (a flag, a data file, a checkpoint, the
output folder) run through the scripts that read it. Each must end in one `error: ...` line on
stderr and exit status 1, with no traceback, nothing new left in out_dir, and whatever was already
there byte-identical. Also: the run folder's rules (no overwrite without asking, one process per
folder, stale locks and temp files, resume that refuses config changes)."""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

import chat
import dpo
import eval as eval_script
import export_hf
import grpo
import ppo
import pretrain
import reward
import sft
from checkpoint import save_checkpoint
from conftest import FEW, ROOT, TINY, assert_clean_error, run_script, write_jsonl

# ----------------------------------------------------------------------------- flags

FLAG_CASES = [
    ("--batch_size=0", "--batch_size=0: expected >= 1"),
    ("--batch_size=-2", "--batch_size=-2: expected >= 1"),
    ("--micro_batch_size=0", "--micro_batch_size=0: expected >= 1"),
    ("--eval_interval=0", "--eval_interval=0: expected >= 1"),
    ("--log_interval=0", "--log_interval=0: expected >= 1"),
    ("--n_head=3", "--n_embd=32 must be a multiple of --n_head=3"),
    ("--dropout=2", "--dropout=2: expected in [0, 1)"),
    ("--learning_rate=nan", "--learning_rate=nan: expected a finite number"),
    ("--learning_rate=inf", "--learning_rate=inf: expected a finite number"),
    ("--weight_decay=-inf", "--weight_decay=-inf: expected a finite number"),
    ("--grad_clip=1e999", "--grad_clip=1e999: expected a finite number"),
    ("--device=tpu", "--device=tpu: expected one of auto, cpu, cuda, mps"),
    ("--block_size=0", "--block_size=0: expected >= 1"),
    ("--max_steps=-5", "--max_steps=-5: expected >= 1"),
    ("--batch_size=6", "batch_size=6 must be a multiple of micro_batch_size=4"),
]


@pytest.mark.parametrize("flag, message", FLAG_CASES)
def test_bad_pretrain_flags(small_world, tmp_path, capsys, flag, message):
    assert_clean_error(pretrain, TINY + [f"--data_dir={small_world}", flag], tmp_path / "out", capsys, message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(small_world, tmp_path, capsys):
    assert_clean_error(pretrain, TINY + [f"--data_dir={small_world}", "--device=cuda"], tmp_path / "out", capsys,
                       "--device=cuda: this machine has no CUDA device")


@pytest.mark.parametrize("flag, message", [
    ("--max_new_tokens=0", "--max_new_tokens=0: expected >= 1"),
    ("--temperature=-1", "--temperature=-1: expected >= 0"),
    ("--top_k=0", "--top_k=0: expected >= 1"),
    ("--top_p=0", "--top_p=0: expected in (0, 1]"),
])
def test_bad_chat_flags(models, capsys, flag, message):
    code = run_script(chat, [f"--checkpoint={models / 'sft'}", "--prompt=hi", flag])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and message in err, err


def test_no_samples_is_fine(small_world, tmp_path, capsys):
    assert run_script(pretrain, TINY + [f"--data_dir={small_world}", "--n_samples=0",
                                        f"--out_dir={tmp_path / 'out'}"]) == 0
    assert "samples (temperature" not in capsys.readouterr().out


# ----------------------------------------------------------------------------- data files


def broken_world(small_world, tmp_path, breakage):
    """A copy of the small world with one thing broken; returns its folder."""
    data = tmp_path / "data"
    shutil.copytree(small_world, data)
    meta = json.loads((data / "meta.json").read_text())
    if breakage == "short_train":
        (data / "train.bin").write_bytes((data / "train.bin").read_bytes()[:40])
        meta["train_tokens"] = 20
    elif breakage == "id_past_vocab":
        stream = bytearray((data / "val.bin").read_bytes())
        stream[10:12] = (60000).to_bytes(2, "little")
        (data / "val.bin").write_bytes(bytes(stream))
    elif breakage == "unknown_kind":
        meta["tokenizer"] = {"kind": "sentencepiece"}
    elif breakage == "bpe_without_merges":
        meta["tokenizer"] = {"kind": "bpe"}
    (data / "meta.json").write_text(json.dumps(meta))
    return data


@pytest.mark.parametrize("breakage, message", [
    ("short_train", "is longer than the train split (20 tokens"),
    ("id_past_vocab", "val.bin: token 5 is id 60000, but the tokenizer in meta.json has"),
    ("unknown_kind", "meta.json: unknown tokenizer kind 'sentencepiece'"),
    ("bpe_without_merges", "meta.json: a 'bpe' tokenizer needs 'merges'"),
])
def test_bad_token_streams(small_world, tmp_path, capsys, breakage, message):
    data = broken_world(small_world, tmp_path, breakage)
    assert_clean_error(pretrain, TINY + [f"--data_dir={data}"], tmp_path / "out", capsys, message)


NOT_UTF8 = b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'


@pytest.mark.parametrize("script", ["sft", "reward", "dpo", "ppo"])
def test_non_utf8_jsonl_names_the_line(models, small_world, tmp_path, capsys, script):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(open(small_world / "sft_train.jsonl", "rb").readline() + NOT_UTF8)
    args = {"sft": (sft, [f"--init_from={models / 'sft'}", f"--data={bad}", "--val_data=None"]),
            "reward": (reward, [f"--init_from={models / 'sft'}", f"--data={bad}", "--val_data=None"]),
            "dpo": (dpo, [f"--init_from={models / 'sft'}", f"--data={bad}", "--val_data=None"]),
            "ppo": (ppo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
                          f"--prompts={bad}"])}[script]
    flags = FEW if script != "ppo" else FEW[:1]  # PPO's batches are rollout_batch and minibatch_size
    assert_clean_error(args[0], args[1] + flags, tmp_path / "out", capsys, "bad.jsonl:2: not UTF-8 text (byte 0xe9")


PAIR = {"prompt": "What is 2+2?", "chosen": "4.", "rejected": "5."}


@pytest.mark.parametrize("row, message", [
    ({**PAIR, "info": "str"}, "bad.jsonl:2: 'info' must be an object"),
    ({**PAIR, "chosen": 5}, "bad.jsonl:2: expected a string or a list of messages, got int"),
    ({**PAIR, "rejected": "4."}, "bad.jsonl:2: chosen and rejected are the same"),
    ({"prompt": [{"role": "human", "content": "hi"}], "chosen": "a", "rejected": "b"},
     "bad.jsonl:2: message 0: unknown role 'human'"),
    ({"chosen": "a"}, 'bad.jsonl:2: expected {"prompt", "chosen", "rejected"}'),
])
@pytest.mark.parametrize("script", [reward, dpo])
def test_bad_preference_rows(models, tmp_path, capsys, script, row, message):
    bad = write_jsonl(tmp_path / "bad.jsonl", [PAIR, row])
    assert_clean_error(script, [f"--init_from={models / 'sft'}", f"--data={bad}", "--val_data=None"] + FEW,
                       tmp_path / "out", capsys, message)


PROMPT = {"prompt": [{"role": "user", "content": "What is 2+2?"}]}


@pytest.mark.parametrize("rows, message", [
    ([PROMPT, {"prompt": [{"role": "human", "content": "hi"}]}], "bad.jsonl:2: message 0: unknown role 'human'"),
    ([PROMPT, {"prompt": []}], "bad.jsonl:2: expected a non-empty list of messages"),
    ([PROMPT, {"prompt": "hi"}], 'bad.jsonl:2: expected {"prompt": [messages], ...}'),
    ([PROMPT, {"prompt": [{"role": "assistant", "content": "hi"}]}], "bad.jsonl:2: a prompt ends with a user message"),
    ([{"prompt": [{"role": "user", "content": "x" * 1_000_000}]}], "every prompt in"),
])
def test_bad_ppo_prompts_are_caught_at_load(models, tmp_path, capsys, rows, message):
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert_clean_error(ppo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
                             f"--prompts={bad}", "--eval_per_suite=0"] + FEW[:1], tmp_path / "out", capsys, message)


def test_bad_nll_pairs_are_caught_before_the_first_step(models, small_world, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [PAIR, {**PAIR, "rejected": "4."}])
    assert_clean_error(ppo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
                             f"--prompts={small_world}/rl_prompts.jsonl", f"--nll_data={bad}", "--eval_per_suite=0"]
                       + FEW[:1], tmp_path / "out", capsys, "bad.jsonl:2: chosen and rejected are the same")


def test_an_unknown_pass_at_k_suite_is_named(models, small_world, tmp_path, capsys):
    assert_clean_error(eval_script, [f"--checkpoints={models / 'sft'}", f"--data_dir={small_world}", "--pass_at_k=4",
                                     "--pass_suites=arithmetic,sums", "--device=cpu"], tmp_path / "out", capsys,
                       "--pass_suites: no suite sums; the suites are ")


def test_rloo_needs_two_replies_per_prompt(models, small_world, tmp_path, capsys):
    assert_clean_error(grpo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
                              f"--prompts={small_world}/rl_prompts.jsonl", "--algo=rloo", "--group_size=1",
                              "--eval_per_suite=0"] + FEW[:1], tmp_path / "out", capsys,
                       "--algo=rloo needs --group_size of at least 2")


def test_long_prompts_are_dropped_and_counted(models, small_world, tmp_path, capsys):
    rows = [PROMPT] * 3 + [{"prompt": [{"role": "user", "content": "x" * 5000}]}]
    prompts = write_jsonl(tmp_path / "p.jsonl", rows)
    assert run_script(ppo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
                            f"--prompts={prompts}", f"--nll_data={small_world}/prefs_train.jsonl",
                            f"--out_dir={tmp_path / 'out'}", "--max_steps=1",
                            "--rollout_batch=2", "--minibatch_size=2", "--micro_batch_size=2", "--max_new_tokens=4",
                            "--eval_per_suite=0", "--device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "p.jsonl: 3 prompts; 1 dropped, longer than block_size=256 - max_new_tokens=4 (first: " in out
    assert "p.jsonl:4)" in out


# ----------------------------------------------------------------------------- output folders


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_output_folder_that_cannot_be_written_fails_before_any_work(small_world, tmp_path, capsys, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out_dir = blocker / "run" if where == "file" else "/proc/not_here/run"
    code = run_script(pretrain, TINY + [f"--data_dir={small_world}", f"--out_dir={out_dir}"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: --out_dir=") and "cannot write there" in err, err


def test_eval_checks_its_output_folder_first(models, small_world, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = run_script(eval_script, [f"--checkpoints={models / 'sft'}", f"--data_dir={small_world}",
                                    f"--out_dir={blocker / 'eval'}", "--device=cpu"])
    captured = capsys.readouterr()
    assert code == 1 and "cannot write there" in captured.err and "evaluating" not in captured.out


# ----------------------------------------------------------------------------- checkpoints


def crafted(tmp_path, models, change):
    ckpt = torch.load(models / "sft" / "ckpt.pt", weights_only=True)
    path = tmp_path / "crafted" / "ckpt.pt"
    path.parent.mkdir()
    if change == "random_bytes":
        path.write_bytes(os.urandom(5000))
        return path.parent
    if change == "config_mismatch":
        ckpt["model_config"]["n_embd"] = 65536  # the weights are 16 wide: would allocate GBs if built first
    elif change == "config_not_dict":
        ckpt["model_config"] = "big"
    elif change == "model_is_string":
        ckpt["model"] = "weights"
    elif change == "bad_head_split":
        ckpt["model_config"]["n_head"] = 3
    torch.save(ckpt, path)
    return path.parent


CRAFTED = [
    ("random_bytes", "is not a PyTorch checkpoint"),
    ("config_mismatch", "the weights do not match model_config"),
    ("config_not_dict", "model_config must give positive integers"),
    ("model_is_string", "'model' must map parameter names to tensors"),
    ("bad_head_split", "not divisible by n_head=3"),
]


@pytest.mark.parametrize("change, message", CRAFTED)
@pytest.mark.parametrize("script", ["sft", "reward", "dpo", "ppo", "eval", "chat", "export_hf"])
def test_crafted_checkpoints_are_refused_before_anything_is_built(models, small_world, tmp_path, capsys, change,
                                                                   message, script):
    source = crafted(tmp_path, models, change)
    data = [f"--data={small_world}/prefs_train.jsonl", "--val_data=None"]
    module, args = {
        "sft": (sft, [f"--init_from={source}", f"--data={small_world}/sft_train.jsonl"] + FEW),
        "reward": (reward, [f"--init_from={source}"] + data + FEW),
        "dpo": (dpo, [f"--init_from={source}"] + data + FEW),
        "ppo": (ppo, [f"--init_from={source}", f"--reward_model={models / 'reward'}"] + FEW[:1]),
        "eval": (eval_script, [f"--checkpoints={source}", f"--data_dir={small_world}"]),
        "chat": (chat, [f"--checkpoint={source}", "--prompt=hi"]),
        "export_hf": (export_hf, [f"--checkpoint={source}"])}[script]
    assert_clean_error(module, args, tmp_path / "out", capsys, message)


def test_a_second_process_into_a_running_run_stops_at_once(small_world, tmp_path):
    """Two real processes: the first holds the folder while it trains; the second stops at once."""
    out_dir = tmp_path / "out"
    args = [sys.executable, "pretrain.py", *TINY[:-2], "--max_steps=100000", "--eval_interval=100000",
            f"--data_dir={small_world}", f"--out_dir={out_dir}"]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out_dir / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert second.stderr.startswith(f"error: --out_dir={out_dir} is in use by process {first.pid}")
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("script, flag", [(pretrain, "--init_from"), (sft, "--init_from"), (dpo, "--init_from"),
                                          (dpo, "--ref"), (ppo, "--init_from"), (eval_script, "--checkpoints"),
                                          (chat, "--checkpoint")])
def test_a_reward_model_is_refused_where_a_policy_is_expected(models, small_world, tmp_path, capsys, script, flag):
    rm = models / "reward"
    args = {pretrain: TINY + [f"--data_dir={small_world}", f"--init_from={rm}"],
            sft: [f"--init_from={rm}"] + FEW,
            dpo: ([f"--ref={rm}", f"--init_from={models / 'sft'}"] if flag == "--ref" else [f"--init_from={rm}"]) + FEW,
            ppo: [f"--init_from={rm}", f"--reward_model={rm}"] + FEW[:1],
            eval_script: [f"--checkpoints={rm}", f"--data_dir={small_world}", "--device=cpu"],
            chat: [f"--checkpoint={rm}", "--prompt=hi"]}[script]
    out_dir = tmp_path / "out"
    code = run_script(script, args + ([f"--out_dir={out_dir}"] if script is not chat else []))
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and f"{flag}={rm} is a reward model" in err, err
    assert not out_dir.exists()


def test_a_policy_is_refused_as_the_reward_model(models, tmp_path, capsys):
    assert_clean_error(ppo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'sft'}"] + FEW[:1],
                       tmp_path / "out", capsys, "--reward_model=")


def test_disk_full_while_saving_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, models):
    import checkpoint
    ckpt = torch.load(models / "sft" / "ckpt.pt", weights_only=True)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), ckpt)
    before = path.read_bytes()

    def full_disk(obj, f):
        open(f, "wb").write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: "
                           "basic_ios::clear: iostream error")
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(checkpoint.UserError, match=r"no space left on device while saving .*ckpt.pt"):
        save_checkpoint(str(path), ckpt)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ckpt.pt"]  # no partial temp file either


# ----------------------------------------------------------------------------- the run folder


def test_a_second_run_into_a_finished_run_stops_and_leaves_it_intact(small_world, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert run_script(pretrain, TINY + [f"--data_dir={small_world}", f"--out_dir={out_dir}"]) == 0
    capsys.readouterr()
    assert_clean_error(pretrain, TINY + [f"--data_dir={small_world}", "--max_steps=1"], out_dir, capsys,
                       "already holds a run (best.pt, ckpt.pt, loss.png, metrics.jsonl); continue it with "
                       "--resume=true, replace it with --overwrite=true")
    # --overwrite=true replaces it; bad input with --overwrite=true still loses nothing
    bad = broken_world(small_world, tmp_path, "unknown_kind")
    assert_clean_error(pretrain, TINY + [f"--data_dir={bad}", "--overwrite=true"], out_dir, capsys,
                       "unknown tokenizer kind")
    assert run_script(pretrain, TINY + [f"--data_dir={small_world}", f"--out_dir={out_dir}", "--max_steps=1",
                                        "--overwrite=true"]) == 0
    rows = [json.loads(line) for line in open(out_dir / "metrics.jsonl")]
    assert max(r["step"] for r in rows) == 1  # the new run's log only


def test_a_locked_folder_stops_a_second_process_and_a_stale_lock_is_taken_over(small_world, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    holder = open(out_dir / ".lock", "a+")
    holder.write("process 4242\n")
    holder.flush()
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
    assert_clean_error(pretrain, TINY + [f"--data_dir={small_world}"], out_dir, capsys,
                       "is in use by process 4242")
    holder.close()  # that process died: its lock went with it, the file stays behind
    assert (out_dir / ".lock").exists()
    (out_dir / "ckpt.pt.tmp.999999").write_bytes(b"half a checkpoint")  # and a save it never finished
    assert run_script(pretrain, TINY + [f"--data_dir={small_world}", f"--out_dir={out_dir}"]) == 0
    assert sorted(os.listdir(out_dir)) == ["best.pt", "ckpt.pt", "loss.png", "metrics.jsonl"]


def test_resume_refuses_changes_that_break_exactness_and_allows_harmless_ones(small_world, tmp_path, capsys):
    out_dir = tmp_path / "out"
    args = TINY + [f"--data_dir={small_world}", f"--out_dir={out_dir}"]
    assert run_script(pretrain, args) == 0
    capsys.readouterr()
    assert_clean_error(pretrain, args + ["--resume=true", "--batch_size=8", "--micro_batch_size=8"], out_dir, capsys,
                       "--resume: --batch_size was 4 in")
    assert_clean_error(pretrain, args + ["--resume=true", "--seed=1"], out_dir, capsys, "--resume: --seed was 1337")
    assert run_script(pretrain, args + ["--resume=true", "--max_steps=3", "--log_interval=1"]) == 0
    out = capsys.readouterr().out
    assert "--resume: max_steps changed from 2 to 3" in out and "step 3/3" in out

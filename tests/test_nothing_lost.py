"""Nothing lost, everywhere: the six classes of hostile input, each on the shared function that
fixes it, then end to end through every script that reads data and every script that writes
files. Each end-to-end case ends in exit status 1, one `error:` line naming the file and line or
the flag, no traceback, and every file that was in the output folder before byte-identical."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import bench
import checkpoint
import dpo
import eval as eval_script
import export_hf
import grpo
import pipeline
import ppo
import pretrain
import reward
import sft
from cli import Folder, Path, UserError, check_default_follows, parse_value, read_preset
from conftest import FEW, ROOT, TINY, assert_clean_error, run_script, snapshot, write_jsonl
from data_formats import load_conversations, load_preferences, read_jsonl
from evaluation import check_world_row, val_losses
from metrics import MetricsLog
from model import GPT, GPTConfig
from run_folder import TRAINING_RUN, claim_run_folder
from runtime import setup_runtime
from tokenizer import Tokenizer, check_messages

RT = setup_runtime("cpu", "float32")
TOK = Tokenizer({"kind": "byte"})
USER = {"role": "user", "content": "What is 2+2?"}
DEEP = "[" * 200_000 + "]" * 200_000  # deeper than Python's JSON parser can recurse


# ----------------------------------------------------------------------------- 1. a field of the wrong type


@pytest.mark.parametrize("calls, message", [
    (5, "message 1: tool_calls must be a list of calls, got int"),
    (True, "message 1: tool_calls must be a list of calls, got bool"),
    ([5], "message 1: a tool call must look like"),
    ([{"function": {"name": "calculator", "arguments": {"expression": 7}}}], "message 1: a tool call must look like"),
    ([{"function": {"name": "calculator", "arguments": "{not json"}}], "message 1: a tool call must look like"),
])
def test_check_messages_checks_every_tool_call(calls, message):
    with pytest.raises(ValueError, match=message):
        check_messages([USER, {"role": "assistant", "content": "", "tool_calls": calls}])


def test_read_jsonl_names_the_line_of_json_nested_too_deeply(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"messages": []}\n' + DEEP + "\n")
    with pytest.raises(UserError, match=r"deep.jsonl:2: invalid JSON \(nested too deeply"):
        read_jsonl(str(path))


@pytest.mark.parametrize("row, message", [
    ({"prompt": 5, "chosen": "a", "rejected": "b"}, "bad.jsonl:1: 'prompt' must be a string or a list of messages"),
    ({"prompt": "q", "chosen": [{"role": "assistant", "content": "", "tool_calls": True}], "rejected": "b"},
     "bad.jsonl:1: message 1: tool_calls must be a list"),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "info": {"pair": ["x"]}}, "bad.jsonl:1: 'info.pair'"),
])
def test_load_preferences_checks_every_field(tmp_path, row, message):
    bad = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(UserError, match=message):
        load_preferences(str(bad), TOK, 256)


@pytest.mark.parametrize("info, message", [
    ({"category": "knowledge"}, "info does not hold what the 'knowledge' checker reads"),
    ({"category": ["tool"]}, "is not one the world's checkers know"),
    ({"category": "weather"}, "is not one the world's checkers know"),
    ({"category": "tool", "answer": None}, None),  # the checker reads a missing number as no match: fine
])
def test_world_rows_are_checked_against_what_the_checkers_read(info, message):
    row = {"prompt": [USER], "info": info}
    if message is None:
        check_world_row(row)
    else:
        with pytest.raises(ValueError, match=message):
            check_world_row(row)


# ----------------------------------------------------------------------------- 2. floats that are not finite


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e999", "-Infinity"])
def test_every_float_option_must_be_finite(text):
    with pytest.raises(UserError, match=f"--x={text}: expected a finite number"):
        parse_value(text, float, "x")
    assert parse_value("1e-3", float, "x") == 1e-3


def test_a_loss_that_is_not_finite_stops_the_run_and_metrics_stay_strict_json(tmp_path):
    log = MetricsLog(str(tmp_path), RT, max_steps=10, log_interval=1)
    log.step(1, **{"train/loss": 2.0})
    with pytest.raises(UserError, match=r"step 2: train/loss is nan: training diverged"):
        log.step(2, **{"train/loss": float("nan")})
    with pytest.raises(UserError, match=r"step 3: grad_norm is inf"):
        log.step(3, grad_norm=float("inf"), **{"train/loss": 1.0})
    with pytest.raises(UserError, match=r"step 4: val/loss is nan"):
        log.report(4, **{"val/loss": float("nan")})
    log.report(5, **{"val/spearman_vs_gold": float("nan"), "val/accuracy": 0.5})  # not a loss: written as null

    def refuse(token):
        raise AssertionError(f"{token} in metrics.jsonl")
    rows = [json.loads(line, parse_constant=refuse) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 5] and rows[1]["val/spearman_vs_gold"] is None


def test_a_diverging_run_stops_before_writing_over_its_checkpoint(small_world, tmp_path, capsys):
    """A learning rate of 1e30 breaks the weights at the first update; the run stops at the next
    loss it sees, naming the step, and the checkpoint of step 0 stays as it was."""
    out = tmp_path / "out"
    code = run_script(pretrain, TINY + [f"--data_dir={small_world}", f"--out_dir={out}", "--learning_rate=1e30",
                                        "--min_lr=1e30", "--warmup_steps=0", "--max_steps=4", "--eval_interval=1"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: step 1: val/loss is nan") and "Traceback" not in err, err
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 0 and all(torch.isfinite(t).all() for t in ckpt["model"].values())


# ----------------------------------------------------------------------------- 3, 4. output folders


def test_a_script_refuses_a_folder_that_holds_another_kind_of_output(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt.pt").write_bytes(b"a training run")
    with pytest.raises(UserError, match=r"holds files this script does not write \(ckpt.pt\)"):
        claim_run_folder(str(run), False, True, RT, outputs=("scorecard.md", "scorecard.json"), resumable=False)
    with pytest.raises(UserError, match="already holds a run .*; replace it with --overwrite=true"):
        claim_run_folder(str(run), False, False, RT, outputs=("ckpt.pt",), resumable=False)
    assert sorted(os.listdir(run)) == ["ckpt.pt"]


def test_a_refused_run_changes_nothing_and_a_run_deletes_only_what_it_wrote(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    files = {"ckpt.pt": b"old run", "loss.png": b"old plot", "ckpt.pt.tmp.4242": b"killed save"}
    for name, data in files.items():
        (run / name).write_bytes(data)
    before = snapshot(run)
    with pytest.raises(UserError, match="already holds a run"):
        claim_run_folder(str(run), False, False, RT)
    assert snapshot(run) == before  # the stale temp file too: a refused run deletes nothing
    (run / "notes.tmp.txt").write_bytes(b"the user's")
    with pytest.raises(UserError, match=r"holds files this script does not write \(notes.tmp.txt\)"):
        claim_run_folder(str(run), False, True, RT)
    os.remove(run / "notes.tmp.txt")
    folder = claim_run_folder(str(run), True, False, RT)  # resume: the plot stays until it is redrawn
    folder.begin()
    assert sorted(os.listdir(run)) == [".lock", "ckpt.pt", "loss.png"]  # only the temp file of its own save went
    folder.release()
    folder = claim_run_folder(str(run), False, True, RT)  # overwrite: its own outputs go, at begin()
    assert (run / "ckpt.pt").exists()
    folder.begin()
    assert os.listdir(run) == [".lock"]
    folder.release()
    assert set(TRAINING_RUN) >= {"ckpt.pt", "loss.png", "ppo.png", "grpo.png"}


# ----------------------------------------------------------------------------- 5. helper paths


def test_a_folder_option_given_a_file_and_a_file_option_given_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="--data_dir=.*: expected a folder, but it is a file"):
        parse_value(str(tmp_path / "f"), Folder, "data_dir")
    with pytest.raises(UserError, match="--data=.*: expected a file, but it is a folder"):
        parse_value(str(tmp_path), Path, "data")
    assert parse_value(str(tmp_path / "new"), Folder, "out_dir") == str(tmp_path / "new")  # made later


def test_a_preset_that_is_not_utf8_names_its_line(tmp_path):
    preset = tmp_path / "p.cfg"
    preset.write_bytes(b"max_steps = 3\nout_dir = caf\xe9\n")
    with pytest.raises(UserError, match=r"p.cfg:2: not UTF-8 text \(byte 0xe9 at column 14\)"):
        read_preset(str(preset))


def test_gpt2_weights_that_cannot_be_downloaded_are_one_line(monkeypatch, gpt2_tokenizer):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")
    monkeypatch.setattr(checkpoint.GPT, "from_pretrained", offline)
    with pytest.raises(UserError, match=r"^--init_from=gpt2-medium: could not load GPT-2's weights: We couldn't "
                                        r"connect to 'https://huggingface.co' to load the files\. \(transformers"):
        checkpoint.load_model("gpt2-medium")


def test_chat_with_standard_input_closed(models):
    done = subprocess.run(f"{sys.executable} chat.py --checkpoint={models / 'sft'} <&-", shell=True, cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("error: standard input is closed"), done.stderr
    assert done.stderr.count("\n") == 1


def test_sigterm_stops_a_run_with_one_line_and_its_checkpoint_intact(small_world, tmp_path):
    out = tmp_path / "out"
    run = subprocess.Popen([sys.executable, "pretrain.py", *TINY[:-2], "--max_steps=100000", "--eval_interval=5",
                            f"--data_dir={small_world}", f"--out_dir={out}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    run.send_signal(signal.SIGTERM)
    err = run.communicate(timeout=60)[1]
    assert run.returncode == 143 and err.startswith("stopped: the process received SIGTERM") and err.count("\n") == 1
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] >= 0
    assert sorted(n for n in os.listdir(out) if ".tmp" in n) == []


SWALLOWING_MAIN = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
from cli import run_main

class Finalized:
    def __del__(self):  # SIGTERM lands while a finalizer runs: Python can only print and drop what it raises
        os.kill(os.getpid(), signal.SIGTERM)
        t = time.time()
        while time.time() - t < 0.2:
            pass

def main():
    try:  # a library's broad except around the moment of the signal
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
    except Exception:
        pass
    print("a broad except swallowed SIGTERM", flush=True)

def main_with_finalizer():
    Finalized()  # dropped at once: __del__ runs here
    for _ in range(300):  # the run goes on unless SIGTERM is raised again
        time.sleep(0.01)
    print("a finalizer swallowed SIGTERM", flush=True)

run_main(main if sys.argv[1] == "except" else main_with_finalizer)
"""


@pytest.mark.parametrize("where", ["except", "finalizer"])
def test_sigterm_is_not_swallowed_by_a_broad_except_or_a_finalizer(tmp_path, where):
    script = tmp_path / "swallow.py"
    script.write_text(SWALLOWING_MAIN.format(root=ROOT))
    done = subprocess.run([sys.executable, str(script), where], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143 and done.stdout == ""
    assert done.stderr.startswith("stopped: the process received SIGTERM") and done.stderr.count("\n") == 1


# ----------------------------------------------------------------------------- 6. defaults that fit only the world


def test_a_default_data_path_must_match_the_source_of_the_data_it_goes_with(tmp_path):
    cfg = ppo.PPOConfig(prompts=str(tmp_path / "hh.jsonl"), nll_data=os.path.join(ROOT, "data/world/prefs_train.jsonl"))
    with pytest.raises(UserError, match=r"--nll_data is left at its default data/world/prefs_train.jsonl, the "
                                        r"built-in world's, but --prompts=.*hh.jsonl is other data: .*--nll_coef=0"):
        check_default_follows(cfg, "prompts", "nll_data", "--nll_coef=0")
    check_default_follows(ppo.PPOConfig(prompts=os.path.join(ROOT, "data/world/rl_prompts.jsonl"),
                                        nll_data=os.path.join(ROOT, "data/world/prefs_train.jsonl")),
                          "prompts", "nll_data", "")


def test_reference_precompute_prints_progress(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=320, n_layer=1, n_head=2, n_embd=16))
    pairs = [{"chosen": ([1, 2, 3], [0, 1, 1]), "rejected": ([1, 2, 4], [0, 1, 1])} for _ in range(70)]
    dpo.reference_logprobs(model, pairs, 0, RT, batch_size=32, every_seconds=0)
    out = capsys.readouterr().out
    assert "reference log-probs: 32/70 pairs" in out and "reference log-probs: 70/70 pairs" in out
    assert all("ref" in p for p in pairs)


def test_eval_val_loss_reads_only_per_suite_chats(small_world):
    torch.manual_seed(0)
    tokenizer = Tokenizer(json.load(open(small_world / "meta.json"))["tokenizer"])
    model = GPT(GPTConfig(block_size=256, vocab_size=448, n_layer=1, n_head=2, n_embd=16))
    chats, _ = load_conversations(str(small_world / "sft_val.jsonl"), tokenizer, 256)
    two, _ = val_losses(model, tokenizer, str(small_world), RT, max_chats=2)
    every, _ = val_losses(model, tokenizer, str(small_world), RT)
    # by hand: the first two chats' summed NLL over their assistant tokens
    total, count = 0.0, 0
    for ids, mask in chats[:2]:
        logits, _ = model(torch.tensor([ids[:-1]]))
        logprobs = torch.log_softmax(logits[0].double(), -1)
        for t in range(1, len(ids)):
            if mask[t]:
                total, count = total - logprobs[t - 1, ids[t]].item(), count + 1
    assert two == pytest.approx(total / count, rel=1e-5) and every != two


# ----------------------------------------------------------------------------- end to end: scripts that read data


BAD_CALL = {"messages": [USER, {"role": "assistant", "content": "4", "tool_calls": 5}]}
BAD_PAIR = {"prompt": [USER], "chosen": [{"role": "assistant", "content": "4", "tool_calls": True}],
            "rejected": "5"}


@pytest.mark.parametrize("script", ["sft", "reward", "dpo", "ppo", "grpo", "eval"])
def test_a_bad_row_in_every_script_that_reads_data(models, small_world, tmp_path, capsys, script):
    """A run already in out_dir, --overwrite=true and one bad row: the error names the line, and
    the earlier run is untouched (it would only go once every input is checked)."""
    good_pair = json.loads(open(small_world / "prefs_train.jsonl").readline())
    conversations = write_jsonl(tmp_path / "chats.jsonl", [json.loads(open(small_world / "sft_train.jsonl").readline()),
                                                           BAD_CALL])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [good_pair, BAD_PAIR])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": [USER]}, {"prompt": [USER], "info": {"category": 5}}])
    deep = tmp_path / "deep.jsonl"
    deep.write_text(json.dumps({"prompt": [USER]}) + "\n" + DEEP + "\n")
    rl = [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}", f"--nll_data={pairs}",
          "--max_steps=1", "--device=cpu"]
    module, args, message = {
        "sft": (sft, [f"--init_from={models / 'sft'}", f"--data={conversations}", "--val_data=None"] + FEW,
                "chats.jsonl:2: message 1: tool_calls must be a list of calls, got int"),
        "reward": (reward, [f"--init_from={models / 'sft'}", f"--data={pairs}", "--val_data=None"] + FEW,
                   "pairs.jsonl:2: message 1: tool_calls must be a list of calls, got bool"),
        "dpo": (dpo, [f"--init_from={models / 'sft'}", f"--data={pairs}", "--val_data=None"] + FEW,
                "pairs.jsonl:2: message 1: tool_calls must be a list of calls, got bool"),
        "ppo": (ppo, rl + [f"--prompts={prompts}"], "prompts.jsonl:2: info.category 5 is not one"),
        "grpo": (grpo, rl + [f"--prompts={deep}"], "deep.jsonl:2: invalid JSON (nested too deeply"),
        "eval": (eval_script, [f"--checkpoints={models / 'sft'}", f"--data_dir={small_world}", f"--prompts={prompts}",
                               "--device=cpu"], "prompts.jsonl:1: expected a world prompt with an info.category"),
    }[script]
    out = tmp_path / "out"
    out.mkdir()
    earlier = ("scorecard.md", "scorecard.json") if script == "eval" else ("ckpt.pt", "metrics.jsonl", "loss.png")
    for name in earlier:
        (out / name).write_bytes(os.urandom(64))
    assert_clean_error(module, args + ["--overwrite=true"], out, capsys, message)


# ----------------------------------------------------------------------------- end to end: scripts that write


WRITERS = ["pretrain", "sft", "reward", "dpo", "ppo", "grpo", "eval", "export_hf", "bench", "pipeline"]


def writer_args(script, models, small_world):
    return {
        "pretrain": (pretrain, TINY + [f"--data_dir={small_world}"]),
        "sft": (sft, [f"--init_from={models / 'sft'}", f"--data={small_world}/sft_train.jsonl",
                      f"--val_data={small_world}/sft_val.jsonl"] + FEW),
        "reward": (reward, [f"--init_from={models / 'sft'}", f"--data={small_world}/prefs_train.jsonl",
                            f"--val_data={small_world}/prefs_val.jsonl"] + FEW),
        "dpo": (dpo, [f"--init_from={models / 'sft'}", f"--data={small_world}/prefs_train.jsonl",
                      f"--val_data={small_world}/prefs_val.jsonl"] + FEW),
        "ppo": (ppo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
                      f"--prompts={small_world}/rl_prompts.jsonl", f"--nll_data={small_world}/prefs_train.jsonl",
                      "--max_steps=1", "--device=cpu"]),
        "grpo": (grpo, [f"--init_from={models / 'sft'}", f"--reward_model={models / 'reward'}",
                        f"--prompts={small_world}/rl_prompts.jsonl", f"--nll_data={small_world}/prefs_train.jsonl",
                        "--max_steps=1", "--device=cpu"]),
        "eval": (eval_script, [f"--checkpoints={models / 'sft'}", f"--data_dir={small_world}", "--device=cpu"]),
        "export_hf": (export_hf, [f"--checkpoint={models / 'sft'}"]),
        "bench": (bench, ["--only=generation", "--device=cpu"]),
        "pipeline": (pipeline, [f"--data_dir={small_world}", "--stages=report", "--device=cpu"]),
    }[script]


@pytest.mark.parametrize("script", WRITERS)
def test_every_script_that_writes_refuses_a_folder_holding_something_else(models, small_world, tmp_path, capsys,
                                                                         script):
    module, args = writer_args(script, models, small_world)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file")
    (out / "notes.tmp.1").write_text("looks like a temp file, is the user's")
    assert_clean_error(module, args, out, capsys, f"--out_dir={out} holds files this script does not write")


@pytest.mark.parametrize("script", ["eval", "export_hf", "bench"])
def test_a_second_run_of_a_writer_needs_overwrite(models, small_world, tmp_path, capsys, script):
    module, args = writer_args(script, models, small_world)
    out = tmp_path / "out"
    earlier = {"eval": "scorecard.md", "export_hf": "model.safetensors", "bench": "bench.md"}[script]
    out.mkdir()
    (out / earlier).write_bytes(os.urandom(64))
    assert_clean_error(module, args, out, capsys, f"--out_dir={out} already holds a run ({earlier}); replace it with "
                                                  f"--overwrite=true")


def test_eval_and_export_refuse_a_training_run_folder(models, small_world, tmp_path, capsys):
    for script in ("eval", "export_hf"):
        module, args = writer_args(script, models, small_world)
        assert_clean_error(module, args, models / "sft", capsys, "holds files this script does not write (ckpt.pt)")

"""pretrain.py: torchrun equals one process, exact resume after SIGKILL, clear errors on bad input."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import pretrain
import runtime
from cli import parse_config
from conftest import ROOT, run_script
from data_formats import write_token_streams
from tokenizer import Tokenizer

TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--eval_batches=2", "--n_samples=1",
        "--sample_tokens=4", "--device=cpu", "--peak_flops=1e9"]


@pytest.fixture(scope="module")
def byte_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("bytes")
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "cloud"]
    text = " ".join(rng.choice(words, 6000))
    tok = Tokenizer({"kind": "byte"})
    write_token_streams(str(out), tok, {"train": tok.encode(text[:30000]), "val": tok.encode(text[30000:])})
    return out


def losses(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_two_processes_with_torchrun_match_one_process(byte_data, tmp_path):
    args = TINY + [f"--data_dir={byte_data}", "--batch_size=8", "--micro_batch_size=2", "--max_steps=4",
                   "--eval_interval=4", "--log_interval=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "pretrain.py", f"--out_dir={tmp_path / 'one'}", *args], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "pretrain.py", f"--out_dir={tmp_path / 'two'}", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr
    assert "2 process(es)" in two.stdout and "2 micro-step(s)" in two.stdout
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        assert abs(a[step] - b[step]) < 1e-5


def test_resume_after_sigkill_reproduces_the_losses_exactly(byte_data, tmp_path):
    """All three runs are fresh processes under the same environment: one thread, and MKL's strict
    conditional-numerical-reproducibility mode, whose matmuls give the same bits whatever the
    memory alignment. A run inside pytest's process, whose heap earlier tests have shaped, once
    differed from a fresh process in the last bit of a loss (a CI run)."""
    args = TINY + [f"--data_dir={byte_data}", "--batch_size=4", "--micro_batch_size=2", "--max_steps=120",
                   "--eval_interval=7", "--log_interval=1", "--dropout=0.1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_CBWR": "AUTO,STRICT"}

    def pretrain_command(out_dir, *extra):
        return [sys.executable, "pretrain.py", f"--out_dir={out_dir}", *args, *extra]

    whole = subprocess.run(pretrain_command(tmp_path / "whole"), cwd=ROOT, env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen(pretrain_command(killed), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(killed / "metrics.jsonl") and max(losses(killed), default=0) >= 40:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert max(losses(killed)) < 120
    resumed = subprocess.run(pretrain_command(killed, "--resume=true"), cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(killed) == losses(tmp_path / "whole")  # identical floats, every step


def test_gradients_are_all_reduced_once_per_step_on_the_last_micro_step(byte_data, tmp_path, monkeypatch):
    """pretrain.py's own loop under DDP (a one-process gloo group): 3 micro-steps per optimizer
    step, and the gradients cross the network once per step, not once per micro-step."""
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    calls = []

    class OneProcessDDP(runtime.Runtime):  # the DDP code paths, with a single process
        ddp = True

    def wrap_and_count(model, rt):
        model = runtime.wrap_ddp(model, rt)

        def count(state, bucket):
            calls.append(len(calls))
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut
        model.register_comm_hook(None, count)
        return model
    monkeypatch.setattr(pretrain, "setup_runtime", lambda *args, **kwargs: OneProcessDDP(torch.device("cpu")))
    monkeypatch.setattr(pretrain, "wrap_ddp", wrap_and_count)
    try:
        assert run_script(pretrain, TINY + [f"--data_dir={byte_data}", f"--out_dir={tmp_path / 'out'}",
                                            "--max_steps=2", "--batch_size=6", "--micro_batch_size=2"]) == 0
        assert len(calls) == 2  # two steps of three micro-steps each: one all-reduce per step (one bucket)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("breakage, message", [
    ("no_train", "train.bin: missing"),
    ("empty_train", "train.bin: empty file"),
    ("truncated_val", "val.bin: .* bytes, but meta.json says"),
    ("no_meta", "meta.json: missing"),
    ("bad_meta", "meta.json: malformed"),
    ("long_block", "--block_size=50000 is longer than the val split"),
])
def test_bad_data_gives_one_clear_line_and_exit_1(byte_data, tmp_path, capsys, breakage, message):
    import re
    import shutil
    data = tmp_path / "data"
    shutil.copytree(byte_data, data)
    extra = []
    if breakage == "no_train":
        os.remove(data / "train.bin")
    elif breakage == "empty_train":
        open(data / "train.bin", "w").close()
    elif breakage == "truncated_val":
        with open(data / "val.bin", "r+b") as f:
            f.truncate(101)
    elif breakage == "no_meta":
        os.remove(data / "meta.json")
    elif breakage == "bad_meta":
        (data / "meta.json").write_text('{"tokenizer": 3}')
    else:
        extra = ["--block_size=50000"]
    code = run_script(pretrain, TINY + [f"--data_dir={data}", f"--out_dir={tmp_path / 'out'}"] + extra)
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err), err
    assert not os.path.exists(tmp_path / "out" / "ckpt.pt")


def test_vocabulary_mismatch_with_init_from_is_refused(byte_data, small_world, tmp_path, capsys):
    assert run_script(pretrain, TINY + [f"--data_dir={small_world}", f"--out_dir={tmp_path / 'bpe'}",
                                        "--max_steps=1", "--batch_size=2", "--micro_batch_size=2"]) == 0
    capsys.readouterr()
    code = run_script(pretrain, TINY + [f"--data_dir={byte_data}", f"--init_from={tmp_path / 'bpe'}",
                                        f"--out_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert code == 1 and "vocabulary mismatch" in err and "bpe" in err and "byte" in err


def test_presets_parse_with_the_scripts_they_are_for():
    presets = {f: open(os.path.join(ROOT, "config", f)).read() for f in os.listdir(os.path.join(ROOT, "config"))}
    assert presets
    for name in presets:
        script = name.split("_")[0]
        scripts = {"sft": "sft", "dpo": "dpo", "reward": "reward", "ppo": "ppo", "grpo": "grpo"}
        module = __import__(scripts.get(script, "pretrain"))
        config_cls = next(v for k, v in vars(module).items() if k.endswith("Config") and isinstance(v, type)
                          and v.__module__ == module.__name__)
        parse_config(config_cls, [f"--config=config/{name}"])

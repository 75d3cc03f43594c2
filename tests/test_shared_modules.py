"""The shared modules: cli.py (config CLI), checkpoint.py, runtime.py (schedule, batches), metrics.py,
data_formats.py (token streams, JSONL), profiler.py (the phases of a sampled stack)."""
import collections
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest
import torch

from checkpoint import load_checkpoint, load_model, save_checkpoint
from cli import UserError, config_help, parse_config
import profiler
from conftest import ROOT, checkpoint_dict
from data_formats import open_token_stream, read_jsonl, read_meta, write_token_streams
from metrics import MetricsLog, read_metrics
from model import GPT, GPTConfig
from runtime import batch_indices, lr_at, setup_runtime
from tokenizer import Tokenizer


@dataclass
class DemoConfig:
    learning_rate: float = 6e-4  # peak learning rate
    max_steps: int = 100  # optimizer steps
    compile: bool = False  # torch.compile the model
    out_dir: str = "out/demo"  # where checkpoints go
    top_k: Optional[int] = None  # sample only from the k likeliest tokens


def test_parse_config_types_values_from_fields():
    c = parse_config(DemoConfig, ["--learning_rate=1e-3", "--max_steps=2e3", "--compile=true", "--top_k=5"])
    assert c == DemoConfig(learning_rate=1e-3, max_steps=2000, compile=True, top_k=5)
    assert parse_config(DemoConfig, ["--top_k=None", "--compile=0"]).top_k is None
    assert parse_config(DemoConfig, []) == DemoConfig()


def test_parse_config_rejects_typos_with_suggestions():
    with pytest.raises(UserError, match="unknown option --learning_rat; did you mean --learning_rate"):
        parse_config(DemoConfig, ["--learning_rat=1"])
    with pytest.raises(UserError, match="--max_steps=ten: expected int"):
        parse_config(DemoConfig, ["--max_steps=ten"])
    with pytest.raises(UserError, match="expected bool"):
        parse_config(DemoConfig, ["--compile=maybe"])
    with pytest.raises(UserError, match="look like --key=value"):
        parse_config(DemoConfig, ["max_steps=3"])


def test_presets_load_and_later_flags_win(tmp_path):
    preset = tmp_path / "preset.cfg"
    preset.write_text("# a preset\nmax_steps = 5000\nout_dir = 'out/big'  # quoted is fine\n\nlearning_rate=1e-3\n")
    c = parse_config(DemoConfig, [f"--config={preset}", "--max_steps=7"])
    assert (c.max_steps, c.out_dir, c.learning_rate) == (7, "out/big", 1e-3)
    preset.write_text("max_stepz = 5\n")
    with pytest.raises(UserError, match=r"preset.cfg:1: unknown option --max_stepz; did you mean --max_steps"):
        parse_config(DemoConfig, [f"--config={preset}"])


def test_help_lists_every_field_with_default_and_doc():
    text = config_help(DemoConfig)
    assert "--learning_rate=0.0006  (float)  peak learning rate" in text
    assert "--top_k=None  (int or None)  sample only from the k likeliest tokens" in text
    assert text.count("\n  --") == 5


def tiny_checkpoint(step=3):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=260, n_layer=1, n_head=2, n_embd=16))
    opt = model.configure_optimizer(1e-3, 0.1, (0.9, 0.95), "cpu")
    model(torch.randint(0, 260, (2, 16)), torch.randint(0, 260, (2, 16)))[1].backward()
    opt.step()
    return model, opt, checkpoint_dict(model, Tokenizer({"kind": "byte"}), "pretrain", step, DemoConfig(),
                                       {"val/loss": 1.5}, opt)


def test_checkpoint_round_trip(tmp_path):
    model, opt, state = tiny_checkpoint()
    save_checkpoint(str(tmp_path / "run" / "ckpt.pt"), state)
    assert os.listdir(tmp_path / "run") == ["ckpt.pt"]  # no temp file left behind
    loaded, tok, ckpt = load_model(str(tmp_path / "run"))
    assert ckpt["step"] == 3 and ckpt["stage"] == "pretrain" and ckpt["metrics"] == {"val/loss": 1.5}
    assert tok.spec == {"kind": "byte"} and ckpt["config"]["out_dir"] == "out/demo"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    opt2 = loaded.configure_optimizer(1e-3, 0.1, (0.9, 0.95), "cpu")
    opt2.load_state_dict(ckpt["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


class RunsCode:
    def __reduce__(self):
        return (open, ("PWNED_MARKER", "w"))  # would create a file when unpickled


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": RunsCode(), "model_config": {}, "tokenizer": {}}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="refusing to load"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_truncated_missing_and_foreign_checkpoints_give_clear_errors(tmp_path):
    *_, state = tiny_checkpoint()
    save_checkpoint(str(tmp_path / "ckpt.pt"), state)
    data = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(str(tmp_path / "cut.pt"))
    with pytest.raises(UserError, match="no checkpoint at .*nowhere/ckpt.pt; run pretrain.py"):
        load_checkpoint(str(tmp_path / "nowhere"), hint="run pretrain.py")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a checkpoint of this project"):
        load_checkpoint(str(tmp_path / "other.pt"))


def test_lr_schedule_warmup_then_cosine():
    kw = dict(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi / 2)) * 0.9)  # halfway: 0.55
    assert lr_at(110, **kw) == pytest.approx(0.1) and lr_at(500, **kw) == pytest.approx(0.1)


def test_batch_indices_are_a_pure_function_of_seed_and_step_and_cover_each_epoch():
    assert batch_indices(1, 5, 10, 4) == batch_indices(1, 5, 10, 4)
    assert batch_indices(1, 5, 10, 4) != batch_indices(2, 5, 10, 4)
    first_epoch = [i for s in range(5) for i in batch_indices(0, s, 10, 2)]
    assert sorted(first_epoch) == list(range(10))
    epoch = [i for s in range(2) for i in batch_indices(0, s, 10, 4)]  # 2 batches of 4, 2 examples wait
    assert len(set(epoch)) == 8


def test_metrics_log_writes_progress_rows_plots_and_truncates_on_resume(tmp_path, capsys):
    rt = setup_runtime("cpu", "float32")
    log = MetricsLog(str(tmp_path), rt, max_steps=6, log_interval=2)
    log.write(0, **{"val/loss": 6.0})
    for step in range(1, 5):
        log.step(step, tokens=100, lr=1e-3, **{"train/loss": 5.0 - step})
    out = capsys.readouterr().out
    assert "step 2/6 | loss 3.0000 | lr 1.00e-03 |" in out and "tok/s" in out and "eta" in out
    assert "step 1/6" not in out  # every log_interval steps only
    rows = read_metrics(str(tmp_path))
    assert [(r["step"], r.get("train/loss")) for r in rows] == [(0, None), (2, 3.0), (4, 1.0)]
    assert all(r["tokens_per_s"] > 0 for r in rows[1:])
    log.plot("loss.png", {"loss": ["train/loss", "val/loss"]})
    assert os.path.getsize(tmp_path / "loss.png") > 1000
    MetricsLog(str(tmp_path), rt, max_steps=6, log_interval=2, start_step=2, resume=True)
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [0, 2]  # rows past the checkpoint happen again
    MetricsLog(str(tmp_path), rt, max_steps=6, log_interval=2)
    assert read_metrics(str(tmp_path)) == []  # a fresh run starts a fresh log


def test_help_prints_comments_that_go_on_over_several_lines():
    @dataclass
    class Wrapped:
        nll_coef: float = 1.0  # weight of the NLL term;
        #                        it keeps chosen replies likely
        # a section heading, not help text
        beta: float = 0.1  # strength of the pull

    text = config_help(Wrapped)
    assert "--nll_coef=1.0  (float)  weight of the NLL term; it keeps chosen replies likely" in text
    assert "section heading" not in text and "--beta=0.1  (float)  strength of the pull" in text


def test_token_streams_round_trip_and_bad_files_are_named(tmp_path):
    tok = Tokenizer({"kind": "byte"})
    write_token_streams(str(tmp_path), tok, {"train": tok.encode("hello world"), "val": tok.encode("hi")})
    meta = read_meta(str(tmp_path))
    assert meta["dtype"] == "uint16" and meta["train_tokens"] == 11 and meta["tokenizer"] == {"kind": "byte"}
    assert bytes(open_token_stream(str(tmp_path), "train", meta).astype(np.uint8)) == b"hello world"
    with open(tmp_path / "train.bin", "r+b") as f:
        f.truncate(7)
    with pytest.raises(UserError, match="train.bin: 7 bytes, but meta.json says 11 uint16 tokens"):
        open_token_stream(str(tmp_path), "train", meta)
    open(tmp_path / "val.bin", "w").close()
    with pytest.raises(UserError, match="val.bin: empty file"):
        open_token_stream(str(tmp_path), "val", meta)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match="meta.json: malformed"):
        read_meta(str(tmp_path))
    os.remove(tmp_path / "meta.json")
    with pytest.raises(UserError, match="meta.json: missing"):
        read_meta(str(tmp_path))


def test_read_jsonl_names_the_bad_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(UserError, match=r"d.jsonl:3: invalid JSON"):
        read_jsonl(str(tmp_path / "d.jsonl"))
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no rows"):
        read_jsonl(str(tmp_path / "e.jsonl"))


def test_profiler_puts_each_stack_in_the_first_phase_it_matches():
    loop = ["main/profiler.py:main", "python3.11/runpy.py:run_path", "main/sft.py:<module>", "main/cli.py:run_main",
            "main/sft.py:main"]
    forward = loop + ["modules/module.py:_wrapped_call_impl", "modules/module.py:_call_impl", "main/model.py:forward"]
    assert profiler.phase_of(forward, "sft.py") == "forward"
    # the same forward pass inside an evaluation's sampling counts for the evaluation
    in_eval = loop + ["main/sft.py:evaluate_and_save", "main/evaluation.py:chat_scorecard",
                      "main/generation.py:respond", "main/model.py:generate"] + forward[len(loop):]
    assert profiler.phase_of(in_eval, "sft.py") == "evaluation: sampling"
    saving = loop + ["main/sft.py:evaluate_and_save", "main/checkpoint.py:save_checkpoint"]
    assert profiler.phase_of(saving, "sft.py") == "checkpoint writes"
    assert profiler.phase_of(loop + ["torch/_tensor.py:backward"], "sft.py") == "backward"
    assert profiler.phase_of(loop + ["optim/optimizer.py:wrapper", "optim/adam.py:step"], "sft.py") == "optimizer"
    assert profiler.phase_of(loop, "sft.py") == profiler.LOOP_PYTHON
    assert profiler.phase_of(loop[:3] + ["<frozen importlib._bootstrap>:_load"], "sft.py") == profiler.START_UP


def test_profiler_table_splits_the_wall_time_by_samples():
    text = profiler.table(collections.Counter({"forward": 30, "backward": 10}), 8.0)
    assert "| forward | 6.0 | 75% |" in text and "| backward | 2.0 | 25% |" in text and "| **wall time** | **8.0** |" in text


def test_profiler_runs_a_script_and_passes_its_exit_status_on(tmp_path):
    out = tmp_path / "p.json"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "profiler.py"), f"--json={out}", "--interval=0.002",
                           "eval.py", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "where the time went in eval.py" in done.stdout
    data = json.loads(out.read_text())
    assert data["script"] == "eval.py" and sum(data["samples"].values()) > 0
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "profiler.py"), "eval.py", "--per_suite=-1"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --per_suite=-1")

"""A real-shaped smoke run: fixture files in the exact shape of the public datasets (a FineWeb-Edu
parquet shard, a plain text file, Alpaca's JSON list, ShareGPT, HH-RLHF's gzipped transcripts,
Open-Assistant's message trees), converted by their own prepare.py as a user would, then every stage on the results
with the GPT-2 tokenizer and a tiny model for a few steps: pretrain, sft, reward, dpo, ppo (with
prompts too long for the context among them) and eval. What breaks after conversion shows here."""
import gzip
import json
import os
import subprocess
import sys

import pytest

import dpo
import eval as eval_script
import ppo
import pretrain
import reward
import sft
from conftest import ROOT, run_script

pytest.importorskip("pyarrow")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

TINY = ["--device=cpu", "--max_steps=2", "--eval_interval=2", "--log_interval=1"]
WORDS = ("river stone cloud alpha beta gamma delta forest light orbit signal garden winter copper lantern "
         "harbor meadow pencil violin thunder").split()


def text(i, n):
    """A deterministic pseudo-sentence of n words."""
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)).capitalize() + "."


def convert(name, *args, cwd):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "data", name, "prepare.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def hh_row(human, chosen, rejected):
    dialogue = f"\n\nHuman: {human}\n\nAssistant:"
    return json.dumps({"chosen": f"{dialogue} {chosen}", "rejected": f"{dialogue} {rejected}"})


def oasst_tree(i):
    """One Open-Assistant tree as in the public *.trees.jsonl export: a prompter message with ranked
    assistant replies (rank 0 is the best)."""
    def message(role, body, rank=None, replies=()):
        return {"message_id": f"m{i}-{body[:8]}-{rank}", "parent_id": None, "text": body, "role": role,
                "lang": "en", "review_count": 3, "review_result": True, "deleted": False, "rank": rank,
                "synthetic": False, "model_name": None, "emojis": {}, "labels": {}, "replies": list(replies)}
    prompt = message("prompter", text(i, 8), replies=[message("assistant", text(i + 1, 12), rank=0),
                                                      message("assistant", text(i + 2, 5), rank=1)])
    return json.dumps({"message_tree_id": f"t{i}", "tree_state": "ready_for_export", "prompt": prompt})


@pytest.fixture(scope="module")
def public_files(tmp_path_factory):
    """The fixture files, shaped like the public downloads."""
    d = tmp_path_factory.mktemp("public")
    docs = [text(i, 40 + i % 13) for i in range(60)]
    pq.write_table(pa.table({"text": docs, "id": [f"<urn:uuid:{i}>" for i in range(60)],
                             "score": [3.1] * 60, "token_count": [50] * 60}), d / "000_00000.parquet",
                   row_group_size=16)
    alpaca = [{"instruction": text(i, 6), "input": text(i + 3, 4) if i % 3 == 0 else "", "output": text(i + 5, 10)}
              for i in range(24)]
    (d / "alpaca_data.json").write_text(json.dumps(alpaca, indent=4))
    sharegpt = [{"id": f"s{i}", "conversations": [{"from": "human", "value": text(i, 7)},
                                                  {"from": "gpt", "value": text(i + 1, 9)}]} for i in range(12)]
    (d / "sharegpt.json").write_text(json.dumps(sharegpt))
    hh = [hh_row(text(i, 8), text(i + 1, 9), text(i + 2, 4)) for i in range(20)]
    hh += [hh_row(text(i, 300), text(i + 1, 6), text(i + 2, 3)) for i in range(6)]  # prompts longer than the context
    with gzip.open(d / "train.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(hh) + "\n")
    with gzip.open(d / "test.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(hh[:4] + hh[-2:]) + "\n")
    with gzip.open(d / "oasst.trees.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(oasst_tree(i) for i in range(16)) + "\n")
    return d


def test_every_stage_runs_on_real_shaped_data(public_files, small_world, gpt2_tokenizer, tmp_path, capsys):
    d, out = public_files, tmp_path
    convert("fineweb", f"--input={d / '000_00000.parquet'}", f"--out_dir={out / 'fineweb'}", "--val_every=5",
            "--num_proc=1", cwd=tmp_path)
    convert("alpaca", f"--input={d / 'alpaca_data.json'}", f"--out_dir={out / 'alpaca'}", "--val_size=4",
            cwd=tmp_path)
    convert("sharegpt", f"--input={d / 'sharegpt.json'}", f"--out_dir={out / 'sharegpt'}", "--val_size=2",
            cwd=tmp_path)
    convert("hh_rlhf", f"--input={d / 'train.jsonl.gz'},{d / 'test.jsonl.gz'}", f"--out_dir={out / 'hh'}",
            cwd=tmp_path)
    convert("oasst", f"--input={d / 'oasst.trees.jsonl.gz'}", f"--out_dir={out / 'oasst'}", "--val_size=2",
            cwd=tmp_path)

    (d / "book.txt").write_text("\n".join(text(i, 30) for i in range(80)), encoding="utf-8")
    convert("shakespeare", f"--input={d / 'book.txt'}", f"--out_dir={out / 'book'}", cwd=tmp_path)

    model = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=128"]
    batches = ["--batch_size=4", "--micro_batch_size=2"]
    # a plain text file (data/shakespeare/prepare.py takes any, with the GPT-2 tokenizer)
    assert run_script(pretrain, TINY + model + batches + [
        f"--data_dir={out / 'book'}", f"--out_dir={out / 'pretrain_book'}", "--eval_batches=1", "--n_samples=1",
        "--sample_tokens=4", "--peak_flops=1e9"]) == 0
    assert run_script(pretrain, TINY + model + batches + [
        f"--data_dir={out / 'fineweb'}", f"--out_dir={out / 'pretrain'}", "--eval_batches=1", "--n_samples=1",
        "--sample_tokens=4", "--peak_flops=1e9"]) == 0
    for data in ("alpaca", "sharegpt"):
        assert run_script(sft, TINY + batches + [
            f"--init_from={out / 'pretrain'}", f"--data={out / data / 'train.jsonl'}",
            f"--val_data={out / data / 'val.jsonl'}", f"--out_dir={out / ('sft_' + data)}"]) == 0
    assert run_script(sft, TINY + batches + [
        f"--init_from={out / 'pretrain'}", f"--data={out / 'oasst' / 'sft_train.jsonl'}",
        f"--val_data={out / 'oasst' / 'sft_val.jsonl'}", f"--out_dir={out / 'sft_oasst'}"]) == 0
    hh = [f"--data={out / 'hh' / 'train.jsonl'}", f"--val_data={out / 'hh' / 'val.jsonl'}"]
    capsys.readouterr()
    assert run_script(reward, TINY + batches + hh + [f"--init_from={out / 'sft_alpaca'}",
                                                     f"--out_dir={out / 'reward'}"]) == 0
    printed = capsys.readouterr().out
    assert "train.jsonl: 26 pairs, 6 with the start of the prompt cut to fit block_size=128" in printed
    assert "val.jsonl: 6 pairs, 2 with the start of the prompt cut" in printed  # val is reported too
    assert "by category" not in printed  # HH pairs carry no category
    assert run_script(dpo, TINY + batches + hh + [f"--init_from={out / 'sft_alpaca'}", "--kl_samples=4",
                                                  f"--out_dir={out / 'dpo'}"]) == 0
    printed = capsys.readouterr().out
    assert "eval/kl " in printed and "KL to the reference nan" not in printed  # sampled on the val prompts
    assert run_script(dpo, TINY + batches + [
        f"--data={out / 'oasst' / 'prefs_train.jsonl'}", f"--val_data={out / 'oasst' / 'prefs_val.jsonl'}",
        f"--init_from={out / 'sft_oasst'}", f"--out_dir={out / 'dpo_oasst'}"]) == 0
    # PPO on HH's prompts: the 6 long ones cannot leave max_new_tokens of room in 128 tokens
    assert run_script(ppo, TINY + [f"--init_from={out / 'sft_alpaca'}", f"--reward_model={out / 'reward'}",
                                   f"--prompts={out / 'hh' / 'train.jsonl'}", f"--out_dir={out / 'ppo'}",
                                   f"--nll_data={out / 'hh' / 'train.jsonl'}",
                                   "--rollout_batch=4", "--minibatch_size=4", "--micro_batch_size=2",
                                   "--max_new_tokens=16", "--eval_per_suite=0"]) == 0
    printed = capsys.readouterr().out
    assert "train.jsonl: 20 prompts; 6 dropped, longer than block_size=128 - max_new_tokens=16" in printed
    rows = [json.loads(line) for line in open(out / "ppo" / "metrics.jsonl") if "reply_length" in line]
    assert rows and all(r["reply_length"] > 2 for r in rows)  # no batch squeezed by its longest prompt
    # eval: the world's suites with a GPT-2-tokenizer model; its text val loss cannot be computed
    assert run_script(eval_script, [f"--checkpoints={out / 'sft_alpaca'}", f"--data_dir={small_world}",
                                    f"--out_dir={out / 'eval'}", "--per_suite=1", "--max_new_tokens=8",
                                    "--device=cpu"]) == 0
    printed = capsys.readouterr().out
    assert "no pretraining-text val loss: its tokenizer (Tokenizer(gpt2" in printed
    assert "| val loss, pretraining text | - |" in printed


def test_lora_presets_from_gpt2_weights_through_sft_dpo_and_export(public_files, gpt2_tokenizer, tmp_path):
    """The gpt2-large LoRA presets' path with a tiny GPT-2 in Hugging Face format in place of gpt2-large:
    SFT on Alpaca with adapters and the embedding trained, DPO on HH-RLHF with adapters on top, then
    export; transformers' model from the export equals what load_model rebuilds from the adapter chain."""
    import torch
    import transformers

    import export_hf
    from checkpoint import load_model
    d, out = public_files, tmp_path
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=128, n_embd=32, n_layer=1, n_head=2)) \
        .save_pretrained(out / "tiny_gpt2")
    convert("alpaca", f"--input={d / 'alpaca_data.json'}", f"--out_dir={out / 'alpaca'}", "--val_size=4", cwd=out)
    convert("hh_rlhf", f"--input={d / 'train.jsonl.gz'},{d / 'test.jsonl.gz'}", f"--out_dir={out / 'hh'}", cwd=out)
    small = TINY + ["--batch_size=4", "--micro_batch_size=2"]
    assert run_script(sft, ["--config=config/sft_gpt2_large_alpaca_lora.cfg", f"--init_from={out / 'tiny_gpt2'}",
                            f"--data={out / 'alpaca' / 'train.jsonl'}", f"--val_data={out / 'alpaca' / 'val.jsonl'}",
                            f"--out_dir={out / 'sft'}"] + small) == 0
    assert run_script(dpo, ["--config=config/dpo_hh_large_lora.cfg", f"--init_from={out / 'sft'}",
                            f"--data={out / 'hh' / 'train.jsonl'}", f"--val_data={out / 'hh' / 'val.jsonl'}",
                            f"--out_dir={out / 'dpo'}", "--kl_samples=2"] + small) == 0
    saved = torch.load(out / "dpo" / "ckpt.pt", weights_only=True)
    assert saved["lora_base"] == str(out / "sft") and all(".lora_" in name for name in saved["model"])
    assert run_script(export_hf, [f"--checkpoint={out / 'dpo'}", f"--out_dir={out / 'hf'}"]) == 0
    ours, tokenizer, _ = load_model(str(out / "dpo"))
    theirs = transformers.GPT2LMHeadModel.from_pretrained(str(out / "hf")).eval()
    ids = torch.tensor([tokenizer.encode("Below is an instruction that describes a task.")])
    with torch.no_grad():
        assert (theirs(ids).logits - ours.eval()(ids)[0]).abs().max().item() <= 1e-5

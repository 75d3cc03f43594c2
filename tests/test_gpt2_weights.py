"""GPT-2 weight import/export against Hugging Face's own GPT2LMHeadModel (a second implementation)."""
import json

import pytest
import torch

import export_hf
from checkpoint import load_model, save_checkpoint
from conftest import checkpoint_dict, run_script
from model import GPT, GPTConfig
from tokenizer import Tokenizer, padded_vocab_size

transformers = pytest.importorskip("transformers")


def random_hf_gpt2(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=300, n_positions=48, n_embd=64, n_layer=3, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    # GPT2's init leaves biases and LayerNorms at 0/1: perturb everything so a mis-mapped weight shows
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.02 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    return hf


def test_import_gives_the_same_logits(tmp_path):
    hf = random_hf_gpt2(tmp_path)
    ours = GPT.from_pretrained(str(tmp_path / "hf")).eval()
    idx = torch.randint(0, 300, (2, 40))
    with torch.no_grad():
        expected = hf(idx).logits
        logits, _ = ours(idx)
    assert (logits - expected).abs().max().item() <= 1e-5


def test_export_loads_in_transformers_with_the_same_logits(tmp_path):
    torch.manual_seed(1)
    ours = GPT(GPTConfig(block_size=32, vocab_size=128, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.02 * torch.randn_like(p))
    for safe in (True, False):
        out = tmp_path / f"export_{safe}"
        ours.export_hf(str(out), safe_serialization=safe)
        hf = transformers.GPT2LMHeadModel.from_pretrained(str(out)).eval()
        idx = torch.randint(0, 128, (3, 32))
        with torch.no_grad():
            assert (hf(idx).logits - ours(idx)[0]).abs().max().item() <= 1e-5


def test_export_without_biases(tmp_path):
    torch.manual_seed(2)
    ours = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=1, n_head=2, n_embd=16, bias=False)).eval()
    ours.export_hf(str(tmp_path / "nobias"))
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "nobias")).eval()
    idx = torch.randint(0, 64, (1, 16))
    with torch.no_grad():
        assert (hf(idx).logits - ours(idx)[0]).abs().max().item() <= 1e-5


def test_load_model_from_hf_dir_adds_rows_for_chat_tokens(tmp_path, gpt2_tokenizer):
    random_hf_gpt2(tmp_path)
    model, tokenizer, ckpt = load_model(str(tmp_path / "hf"))
    assert ckpt is None and tokenizer.spec == {"kind": "gpt2"}
    assert model.config.vocab_size == 50304 >= tokenizer.n_vocab
    assert model.lm_head.weight is model.transformer.wte.weight
    new_rows = model.transformer.wte.weight[300:]
    assert torch.allclose(new_rows, model.transformer.wte.weight[:300].mean(0).expand_as(new_rows))


def test_export_cli_writes_a_folder_transformers_loads(tmp_path, capsys):
    tokenizer = Tokenizer({"kind": "byte"})
    torch.manual_seed(3)
    ours = GPT(GPTConfig(block_size=32, vocab_size=padded_vocab_size(tokenizer.n_vocab), n_layer=2, n_head=2,
                         n_embd=32)).eval()
    save_checkpoint(str(tmp_path / "run" / "ckpt.pt"), checkpoint_dict(ours, tokenizer, "sft"))
    assert run_script(export_hf, [f"--checkpoint={tmp_path / 'run'}", f"--out_dir={tmp_path / 'hf'}",
                                  "--format=bin"]) == 0
    assert (tmp_path / "hf" / "pytorch_model.bin").exists()
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "hf")).eval()
    idx = torch.randint(0, tokenizer.n_vocab, (2, 32))
    with torch.no_grad():
        assert (hf(idx).logits - ours(idx)[0]).abs().max().item() <= 1e-5
    spec = json.loads((tmp_path / "hf" / "tokenizer_spec.json").read_text())
    assert Tokenizer(spec).spec["kind"] == "byte" and spec["special_tokens"]["<|im_end|>"] == tokenizer.im_end

    ours.add_scalar_head()  # a reward model: refused with a clear message
    save_checkpoint(str(tmp_path / "rm" / "ckpt.pt"), checkpoint_dict(ours, tokenizer, "reward"))
    assert run_script(export_hf, [f"--checkpoint={tmp_path / 'rm'}", f"--out_dir={tmp_path / 'hf2'}"]) == 1
    assert "scalar head" in capsys.readouterr().err

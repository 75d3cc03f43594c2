"""
Export a checkpoint of any stage to Hugging Face's GPT-2 format, for transformers and its ecosystem.

    python export_hf.py --checkpoint=out/sft --out_dir=out/sft_hf
    python export_hf.py --checkpoint=out/dpo_hh --out_dir=out/dpo_hh_hf --format=bin   # pytorch_model.bin

Then, in Python:
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained("out/sft_hf")   # same logits as ours (tests/test_gpt2_weights.py)

The folder gets config.json, the weights (model.safetensors, or pytorch_model.bin) and
tokenizer_spec.json, our tokenizer spec with the chat template's special-token ids (a model
fine-tuned from GPT-2 uses GPT-2's BPE plus those tokens; a world model uses its own BPE, which
tokenizer.Tokenizer(spec) rebuilds). Reward and value models are refused: their scalar head has no
counterpart in GPT2LMHeadModel.
"""

import json
import os
from dataclasses import dataclass

from checkpoint import load_model
from cli import Folder, UserError, parse_config, run_main
from run_folder import claim_run_folder

# what export_hf.py writes into out_dir (transformers may add generation_config.json when it saves there)
HF_FILES = ("config.json", "generation_config.json", "model.safetensors", "pytorch_model.bin", "tokenizer_spec.json")


@dataclass
class ExportConfig:
    checkpoint: str = "out/sft"  # a run folder (its ckpt.pt) or a .pt file
    out_dir: Folder = "out/sft_hf"  # where config.json, the weights and tokenizer_spec.json go
    overwrite: bool = False  # replace an earlier export in out_dir
    format: str = "safetensors"  # safetensors or bin


def main():
    cfg = parse_config(ExportConfig, description=__doc__)
    if cfg.format not in ("safetensors", "bin"):
        raise UserError(f"--format={cfg.format}: expected safetensors or bin")
    out_folder = claim_run_folder(cfg.out_dir, False, cfg.overwrite, outputs=HF_FILES, resumable=False)
    model, tokenizer, _ = load_model(cfg.checkpoint)
    if model.scalar_head is not None:
        raise UserError(f"{cfg.checkpoint} is a reward/value model: its scalar head has no GPT2LMHeadModel "
                        "counterpart; export a policy (pretrain, sft, dpo, ppo or grpo) instead")
    out_folder.begin()  # the checkpoint is read and checked: from here on export_hf.py writes out_dir
    model.export_hf(cfg.out_dir, safe_serialization=cfg.format == "safetensors", eot_id=tokenizer.eot)
    spec = {**tokenizer.spec, "special_tokens": {name: tokenizer.enc.encode_single_token(name)
                                                 for name in sorted(tokenizer.enc.special_tokens_set)}}
    with open(os.path.join(cfg.out_dir, "tokenizer_spec.json"), "w") as f:
        json.dump(spec, f)
    out_folder.release()
    weights = "model.safetensors" if cfg.format == "safetensors" else "pytorch_model.bin"
    print(f"wrote {cfg.out_dir}: config.json, {weights}, tokenizer_spec.json "
          f"({model.num_params() / 1e6:.2f}M parameters, {tokenizer})")


if __name__ == "__main__":
    run_main(main)

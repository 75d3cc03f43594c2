"""
Checkpoints and model loading. A checkpoint is out/<run>/ckpt.pt: a dict of tensors and plain
Python values (each stage writes its own, visibly: weights, model config, tokenizer spec, run
config, stage, step, metrics, and for resume the optimizer state), saved atomically and loaded
with torch.load(weights_only=True), so that loading never runs code. load_model() builds a model
and its tokenizer from a run folder, a .pt file, or GPT-2's weights (gpt2, gpt2-medium, ...).
"""

import os

import torch

from cli import UserError, resolve_path
from model import GPT, config_from_dict, resize_vocab
from tokenizer import Tokenizer, padded_vocab_size

# ----------------------------------------------------------------------------- saving and loading

CHECKPOINT_FORMAT = 1


def save_checkpoint(path, state):
    """Write atomically: to a temp file in the same folder, then rename over the old one, so a
    crash mid-write leaves the previous checkpoint intact (rename is atomic on POSIX)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def checkpoint_path(init_from):
    """'out/sft' -> 'out/sft/ckpt.pt'; a path to a .pt file stays as it is."""
    return os.path.join(init_from, "ckpt.pt") if os.path.isdir(init_from) or not init_from.endswith(".pt") \
        else init_from


def load_checkpoint(path, hint=""):
    """Load a checkpoint with torch.load(weights_only=True): tensors and plain data only, never
    code (a pickle that would run code on load is refused)."""
    path = checkpoint_path(path)
    if not os.path.exists(path):
        raise UserError(f"no checkpoint at {path}" + (f"; {hint}" if hint else ""))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "Unpickler" in type(e).__name__:
            raise UserError(f"{path} holds objects other than tensors and plain data; refusing to load it "
                            f"(torch.load weights_only=True)") from None
        raise UserError(f"{path} is truncated or corrupt ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or not {"model", "model_config", "tokenizer"} <= ckpt.keys():
        raise UserError(f"{path} is not a checkpoint of this project (expected keys model, model_config, "
                        f"tokenizer)")
    return ckpt


def load_for_resume(out_dir, stage):
    """out_dir/ckpt.pt for --resume: it must be a checkpoint of this stage with its optimizer state."""
    checkpoint = load_checkpoint(os.path.join(out_dir, "ckpt.pt"), "nothing to resume; run without --resume")
    if checkpoint.get("stage") != stage or "optimizer" not in checkpoint:
        raise UserError(f"{out_dir}/ckpt.pt is a {checkpoint.get('stage')} checkpoint without resume state; "
                        f"cannot resume {stage} from it")
    return checkpoint


# ----------------------------------------------------------------------------- models

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def is_hf_source(init_from):
    return init_from in GPT2_NAMES or os.path.isfile(os.path.join(init_from, "config.json"))


def load_model(init_from, device="cpu", dropout=None, scalar_head=None, hint=""):
    """A model and its tokenizer from a checkpoint (out/<run> or a .pt file) or from GPT-2
    weights in Hugging Face format. Returns (model, tokenizer, checkpoint dict or None).

    scalar_head=True adds a freshly initialised scalar head when the source has none (a reward
    model starting from an SFT model); dropout overrides the stored rate."""
    if init_from not in GPT2_NAMES:
        init_from = resolve_path(init_from)
    if is_hf_source(init_from):
        tokenizer = Tokenizer({"kind": "gpt2"})
        model = GPT.from_pretrained(init_from, dropout=dropout or 0.0)
        # room for the chat special tokens after GPT-2's 50,257 (new rows: the mean embedding)
        resize_vocab(model, padded_vocab_size(tokenizer.n_vocab))
        ckpt = None
    else:
        ckpt = load_checkpoint(init_from, hint)
        tokenizer = Tokenizer(ckpt["tokenizer"])
        config = config_from_dict(ckpt["model_config"])
        model = GPT(config)
        model.load_state_dict(ckpt["model"])
    if dropout is not None:
        set_dropout(model, dropout)
    if scalar_head and model.scalar_head is None:
        model.add_scalar_head()
    return model.to(device), tokenizer, ckpt


def set_dropout(model, p):
    model.config.dropout = p
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = p


def check_same_tokenizer(spec_a, spec_b, what_a, what_b):
    if spec_a != spec_b:
        def describe(s):
            return s.get("kind") + (f" ({len(s['merges']) + 256} tokens)" if "merges" in s else "")
        raise UserError(f"vocabulary mismatch: {what_a} uses the {describe(spec_a)} tokenizer but {what_b} uses "
                        f"{describe(spec_b)}; prepare the data with the model's tokenizer")

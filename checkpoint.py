"""
Checkpoints and model loading. A checkpoint is out/<run>/ckpt.pt: a dict of tensors and plain
Python values (each stage writes its own, visibly: weights, model config, tokenizer spec, run
config, stage, step, metrics, and for resume the optimizer state), saved atomically and loaded
with torch.load(weights_only=True), so that loading never runs code. load_model() builds a model
and its tokenizer from a run folder, a .pt file, or GPT-2's weights (gpt2, gpt2-medium, ...).
"""

import dataclasses
import errno
import logging
import os
import shutil

import torch

from cli import UserError, resolve_path
from lora import LORA_TARGETS, apply_lora, base_fingerprint, merge_lora, merged_state_dict, trainable_state
from model import GPT, config_from_dict, resize_vocab
from tokenizer import Tokenizer, check_tokenizer_spec, padded_vocab_size

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
    except (OSError, RuntimeError) as e:  # torch reports a full disk as a RuntimeError of its stream writer
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free  # the partial temp file still there
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or free < 100e6:
            raise UserError(f"no space left on device while saving {path} ({free / 1e6:,.0f} MB free); the "
                            f"previous checkpoint, if any, is intact") from None
        raise UserError(f"could not save {path}: {e}") from None
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
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive
            raise UserError(f"{path} is not a PyTorch checkpoint (not the zip file torch.save writes): "
                            f"another format, or corrupt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise UserError(f"{path} holds objects other than tensors and plain data; refusing to load it "
                            f"(torch.load weights_only=True)") from None
        raise UserError(f"{path} is truncated or corrupt ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or not {"model", "model_config", "tokenizer"} <= ckpt.keys():
        raise UserError(f"{path} is not a checkpoint of this project (expected keys model, model_config, "
                        f"tokenizer)")
    check_checkpoint(ckpt, path)
    return ckpt


def check_checkpoint(ckpt, path):
    """The checkpoint's parts are what they claim, before anything is allocated: the tokenizer spec
    is valid, the model config is a sane GPTConfig, and the weights have exactly the names and
    shapes that config gives (compared on the meta device, which allocates no memory)."""
    try:
        check_tokenizer_spec(ckpt["tokenizer"])
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
    config = ckpt["model_config"]
    sizes = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd")
    if not isinstance(config, dict) or not all(isinstance(config.get(k), int) and config[k] > 0 for k in sizes):
        raise UserError(f"{path}: model_config must give positive integers {', '.join(sizes)}")
    if config["n_embd"] % config["n_head"]:
        raise UserError(f"{path}: model_config has n_embd={config['n_embd']}, not divisible by "
                        f"n_head={config['n_head']}")
    weights = ckpt["model"]
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise UserError(f"{path}: 'model' must map parameter names to tensors")
    adapters = "lora_base" in ckpt
    if adapters and not (isinstance(config.get("lora_rank"), int) and config["lora_rank"] > 0 and isinstance(
            ckpt["lora_base"], str) and set(str(config.get("lora_targets")).split(",")) <= LORA_TARGETS.keys()):
        raise UserError(f"{path}: a LoRA checkpoint needs lora_base (a path) and model_config's lora_rank > 0 and "
                        f"lora_targets (of {', '.join(LORA_TARGETS)})")
    with torch.device("meta"):
        model = GPT(config_from_dict(config))  # always plain: apply_lora adds the adapters
        if adapters:  # the file holds only what trained: the adapters (and a scalar head)
            add_saved_adapters(model, config)
        expected = {k: tuple(v.shape) for k, v in (trainable_state(model) if adapters else model.state_dict()).items()}
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        name = wrong[0]
        raise UserError(f"{path}: the weights do not match model_config ({name}: "
                        f"{found.get(name, 'missing')} in the file, {expected.get(name, 'none')} expected)")


# Config fields that may change on --resume: they do not change what the steps compute (or, for
# max_steps, they change it on purpose). Any other change would make the resumed run differ from
# an uninterrupted one, and is refused.
RESUME_MAY_CHANGE = {"max_steps", "log_interval", "eval_interval", "eval_batches", "eval_per_suite", "n_samples",
                     "sample_tokens", "kl_samples", "correlation_samples", "device", "compile", "peak_flops",
                     "resume", "overwrite", "sweep", "score"}


def load_for_resume(out_dir, stage, config, rt):
    """out_dir/ckpt.pt for --resume: a checkpoint of this stage, with its optimizer state, saved
    with a config that differs from this one only in fields that keep the resume exact."""
    checkpoint = load_checkpoint(os.path.join(out_dir, "ckpt.pt"), "nothing to resume; run without --resume")
    if checkpoint.get("stage") != stage or "optimizer" not in checkpoint:
        raise UserError(f"{out_dir}/ckpt.pt is a {checkpoint.get('stage')} checkpoint without resume state; "
                        f"cannot resume {stage} from it")
    saved, now = checkpoint.get("config") or {}, dataclasses.asdict(config)
    changed = {k: (saved[k], now[k]) for k in now if k in saved and saved[k] != now[k]}
    refused = {k: v for k, v in changed.items() if k not in RESUME_MAY_CHANGE}
    if refused:
        name, (before, after) = next(iter(refused.items()))
        raise UserError(f"--resume: --{name} was {before} in {out_dir}/ckpt.pt and is {after} now; a resumed run "
                        f"must keep it (changed: {', '.join(refused)}). Start a new run in another --out_dir instead")
    for name, (before, after) in changed.items():
        rt.print(f"--resume: {name} changed from {before} to {after}")
    return checkpoint


# ----------------------------------------------------------------------------- models

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def is_hf_source(init_from):
    return init_from in GPT2_NAMES or os.path.isfile(os.path.join(init_from, "config.json"))


def load_model(init_from, device="cpu", dropout=None, scalar_head=None, hint="", expect=None, what="--init_from"):
    """A model and its tokenizer from a checkpoint (out/<run> or a .pt file) or from GPT-2
    weights in Hugging Face format. Returns (model, tokenizer, checkpoint dict or None).

    scalar_head=True adds a freshly initialised scalar head when the source has none (a reward
    model starting from an SFT model); dropout overrides the stored rate. expect="policy" refuses
    a reward model (it has no language-model head worth sampling), expect="reward" anything else;
    `what` names the flag in that error."""
    if init_from not in GPT2_NAMES:
        init_from = resolve_path(init_from)
    if is_hf_source(init_from):
        if expect == "reward":
            raise UserError(f"{what}={init_from} is a GPT-2 language model; a reward model was expected")
        tokenizer = Tokenizer({"kind": "gpt2"})
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # the hub logs every failed request; the error below says it once
        try:
            model = GPT.from_pretrained(init_from, dropout=dropout or 0.0)
        except (OSError, ImportError) as e:  # offline and not cached, a broken folder, no transformers
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{what}={init_from}: could not load GPT-2's weights: {reason} (transformers downloads "
                            f"them from the Hugging Face hub on first use and caches them in HF_HOME)") from None
        finally:
            logging.disable(previous)
        # room for the chat special tokens after GPT-2's 50,257 (new rows: the mean embedding)
        resize_vocab(model, padded_vocab_size(tokenizer.n_vocab))
        ckpt = None
    else:
        ckpt = load_checkpoint(init_from, hint)
        check_kind(ckpt, expect, what, init_from)
        tokenizer = Tokenizer(ckpt["tokenizer"])
        if "lora_base" in ckpt:
            model = load_lora_checkpoint(ckpt, init_from)
        else:
            model = GPT(config_from_dict(ckpt["model_config"]))
            model.load_state_dict(ckpt["model"])
    if dropout is not None:
        set_dropout(model, dropout)
    if scalar_head and model.scalar_head is None:
        model.add_scalar_head()
    return model.to(device), tokenizer, ckpt


def load_lora_checkpoint(ckpt, source):
    """The model of a LoRA checkpoint: its base (loaded from lora_base, itself any source load_model
    takes), checked to be the base the adapters were trained on, plus the adapters, merged."""
    config = ckpt["model_config"]
    model, tokenizer, _ = load_model(ckpt["lora_base"], hint=f"it is the base model of the LoRA adapters in {source}")
    if tokenizer.spec != ckpt["tokenizer"]:
        raise UserError(f"{source}: its base model {ckpt['lora_base']} has another tokenizer than the adapters")
    if config.get("scalar_head") and model.scalar_head is None:
        model.add_scalar_head()  # a reward model's head: trained with the adapters, saved with them
    if base_fingerprint(model) != ckpt.get("lora_base_fingerprint"):
        raise UserError(f"{source}: its base model {ckpt['lora_base']} has changed since the LoRA adapters were "
                        f"trained on it (retrained or overwritten?); the adapters only fit the weights they were "
                        f"trained with")
    add_saved_adapters(model, config)
    model.load_state_dict(ckpt["model"], strict=False)  # the adapter keys were checked by check_checkpoint
    model.config.reward_pooling = config.get("reward_pooling", model.config.reward_pooling)
    return merge_lora(model)


def add_saved_adapters(model, config):
    """The LoRA layers a checkpoint's model_config describes (no dropout: they are only evaluated)."""
    return apply_lora(model, config["lora_rank"], config.get("lora_alpha", 16.0), 0.0, config["lora_targets"],
                      config.get("lora_embeddings", False))


def model_weights(model, init_from=None, merge=False):
    """A checkpoint's weights: {"model", "model_config"} of a plain model; with LoRA layers, only the
    adapters and what else trains, plus lora_base (init_from) and the base's fingerprint, or (merge)
    the merged weights of a plain model, with the adapters kept apart for --resume."""
    if not model.config.lora_rank:
        return {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config)}
    if merge:
        return {"model": merged_state_dict(model), "model_config": {**dataclasses.asdict(model.config), "lora_rank": 0},
                "lora_adapters": trainable_state(model), "lora_base_fingerprint": base_fingerprint(model)}
    return {"model": trainable_state(model), "model_config": dataclasses.asdict(model.config),
            "lora_base": init_from, "lora_base_fingerprint": base_fingerprint(model)}


def restore_weights(model, checkpoint):
    """--resume: put a checkpoint's weights back, the adapters of a LoRA run (on the same base)."""
    if not model.config.lora_rank:
        model.load_state_dict(checkpoint["model"])
        return
    adapters = checkpoint.get("lora_adapters", checkpoint["model"])
    if checkpoint.get("lora_base_fingerprint", base_fingerprint(model)) != base_fingerprint(model):
        raise UserError("--resume: the base model has changed since this LoRA run started")
    missing, unexpected = model.load_state_dict(adapters, strict=False)
    if unexpected or set(missing) & set(trainable_state(model)):
        raise UserError("--resume: the checkpoint's adapters do not match --lora_rank and --lora_targets")


def check_kind(ckpt, expect, what, source):
    """expect="policy" refuses a reward model, expect="reward" anything else (None: either)."""
    is_reward = ckpt.get("stage") == "reward" or ckpt["model_config"].get("scalar_head", False)
    if expect == "policy" and is_reward:
        raise UserError(f"{what}={source} is a reward model; a language model (pretrain, sft, dpo, ppo) was "
                        f"expected here")
    if expect == "reward" and not is_reward:
        raise UserError(f"{what}={source} is a {ckpt.get('stage')} checkpoint; a reward model (reward.py) "
                        f"was expected here")


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

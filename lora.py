"""
LoRA (Hu et al. 2021): fine-tune a big model by training a small low-rank update of some of its
weight matrices, with every original weight frozen. A target Linear y = W x + b becomes

    y = W x + b + (alpha / r) * B A x        A: (r, in), B: (out, r), r << in, out

A starts random and B at zero, so training starts exactly at the base model. Only A and B (and a
reward model's scalar head, which is new anyway) get gradients and AdamW state: for GPT-2 124M at
r = 8 on the attention projections, 0.6M trainable numbers instead of 124M, and an optimizer state
200 times smaller (bench.py measures it). After training, W + (alpha / r) B A is an ordinary weight
again (merge_lora): the merged model is a plain GPT, as fast as the base.

sft.py, reward.py and dpo.py take --lora_rank (0: full fine-tuning, the default), --lora_alpha,
--lora_dropout, --lora_targets, --lora_embeddings and --lora_merge. Their checkpoints then hold the
adapters and a pointer to the base model (checkpoint.model_weights); checkpoint.load_model rebuilds
the base, adds the adapters and merges.
"""

import contextlib
import math

import torch
import torch.nn as nn

# --lora_targets: which Linear layers of each block get an adapter
LORA_TARGETS = {"attn": ("attn.c_attn", "attn.c_proj"), "mlp": ("mlp.c_fc", "mlp.c_proj")}


class LoRALinear(nn.Linear):
    """A frozen nn.Linear plus a trainable low-rank update. A subclass of nn.Linear, so that the
    base weight and bias keep their names in the state dict (".weight", ".bias") next to the
    adapter's (".lora_A", ".lora_B")."""

    def __init__(self, base, rank, alpha, dropout=0.0):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        self.weight, self.bias = base.weight, base.bias  # the same tensors, not copies
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        device = base.weight.device
        # A as nn.Linear initialises its weights (Kaiming uniform), B zero: B A = 0 at the start
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=device))
        self.scaling = alpha / rank  # so that changing r does not change the update's scale (Hu et al. 4.1)
        self.lora_dropout = nn.Dropout(dropout)
        self.adapter_on = True

    def forward(self, x):
        y = super().forward(x)
        if not self.adapter_on:
            return y
        # (..., in) -> (..., r) -> (..., out): two thin matmuls, never the (out, in) product B A
        return y + (self.lora_dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def merged_weight(self):
        return self.weight + (self.lora_B @ self.lora_A) * self.scaling


def lora_layers(model):
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def apply_lora(model, rank, alpha, dropout=0.0, targets="attn", embeddings=False):
    """Freeze every weight of a GPT and give the targets (comma-separated LORA_TARGETS keys) of every
    block a LoRA adapter; a scalar head, if any, stays trainable, and so does the token embedding
    (tied to the output layer) with `embeddings`. Records rank, alpha, targets and embeddings in
    model.config, which the checkpoint saves. Returns the model."""
    names = [suffix for key in targets.split(",") for suffix in LORA_TARGETS[key]]
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.transformer.h:
        for name in names:
            parent_name, child = name.split(".")
            parent = getattr(block, parent_name)
            setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    if model.scalar_head is not None:
        model.scalar_head.requires_grad_(True)
    # GPT-2's vocabulary has no chat tokens: load_model adds their rows, all equal to the mean
    # embedding, and frozen they would stay equal, so the model could never tell them apart
    model.transformer.wte.weight.requires_grad_(embeddings)
    model.config.lora_rank, model.config.lora_alpha, model.config.lora_targets = rank, alpha, targets
    model.config.lora_embeddings = embeddings
    return model


def merge_lora(model):
    """Fold every adapter into its weight, W + (alpha / r) B A, and put plain nn.Linear layers back:
    the result is an ordinary GPT (lora_rank 0) that computes what the adapted model did."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                  device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    plain.weight.copy_(child.merged_weight())
                    if child.bias is not None:
                        plain.bias.copy_(child.bias)
                setattr(module, child_name, plain)
    model.config.lora_rank = 0
    return model


def trainable_state(model):
    """What a LoRA checkpoint saves: the tensors that train (adapters, and a scalar head)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def count_trainable(model):
    """(trainable, total) parameters; a tied matrix counts once."""
    params = list(model.parameters())  # parameters() yields a shared tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@contextlib.contextmanager
def adapters_off(model):
    """Run the model as its frozen base: every adapter switched off inside the block."""
    layers = lora_layers(model)
    for layer in layers:
        layer.adapter_on = False
    try:
        yield model
    finally:
        for layer in layers:
            layer.adapter_on = True


class BaseModelView:
    """DPO's reference with LoRA: the policy with its adapters off. The base weights are frozen (no
    gradient, and AdamW holds only the adapters, so weight decay cannot touch them either), so with
    the adapters off the network computes exactly the model training started from, at every step:
    the reference of DPO with no second copy of the model in memory. Called like the model."""

    def __init__(self, model):
        self.model = model

    def __call__(self, *args, **kwargs):
        with adapters_off(self.model):
            return self.model(*args, **kwargs)


def base_fingerprint(model):
    """Float64 sums of weights that stay frozen whatever the LoRA options (position embedding, first
    block's attention, final LayerNorm; not the token embedding, which --lora_embeddings trains):
    saved with the adapters, so that loading them onto a base that has changed since is refused."""
    with torch.no_grad():
        return [model.transformer.wpe.weight.double().sum().item(),
                model.transformer.h[0].attn.c_attn.weight.double().sum().item(),
                model.transformer.ln_f.weight.double().sum().item()]


def merged_state_dict(model):
    """The state dict of the merged model (what merge_lora would give), without changing the model."""
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            state[f"{name}.weight"] = module.merged_weight().detach()
    return {k: state.get(k, v) for k, v in model.state_dict().items() if ".lora_" not in k}

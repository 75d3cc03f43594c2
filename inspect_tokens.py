"""
See inside a run, token by token: what each stage changed in a reply, and where the alignment
stages put their credit. Loss curves say that DPO or PPO changed the model; these views say which
tokens they moved.

    python inspect_tokens.py                               # out/ (python pipeline.py's run) -> out/tokens/
    python inspect_tokens.py --run=out_skills              # the skills track: log-probs and a GRPO group
    python inspect_tokens.py --suite=persona --views=logprobs,reward
    python inspect_tokens.py --prompt="Who is Rupe Tendorel?" --reply="Rupe Tendorel is a painter." \
        --out_dir=out/tokens_rupe

The prompt is held-out prompt --index of --suite (or --prompt), the reply the greedy reply of
--sample_from (or --reply). Views, each printed as a table, drawn to tokens_<view>.png and shown
on tokens.html (a self-contained page: tokens coloured, numbers on hover):
  logprobs  each stage's log p of every reply token and the change from the stage it was trained
            from: what SFT, DPO, PPO and GRPO moved (all at temperature 1)
  dpo       DPO's implicit reward beta * (log pi - log ref) per token, for the chosen and the
            rejected reply of a preference pair; their sums are the pair's rewards/chosen and
            rewards/rejected in dpo.py's loss (Rafailov et al. 2023)
  reward    the reward model's scalar head at every reply token; the pooled reward (the mean over
            the reply's own tokens, or the last token's value) is what PPO is trained on
  ppo       one PPO rollout, sampled at PPO's temperature: log pi and log ref, the per-token KL
            penalty, the value estimate, the score at the last token, the GAE advantage and return
            (before whitening over the batch)
  grpo      one GRPO group: group_size replies sampled at GRPO's temperature, each one's score and
            group-relative advantage, the same on all its tokens
Every number comes from the function the stage trains with (credit.py, model.token_logprobs, the
reward model's pool_reward, rollouts.py), not from a second copy.
"""

import json
import os
from dataclasses import dataclass
from typing import Optional

import torch
from matplotlib.figure import Figure

from checkpoint import load_checkpoint, load_model
from cli import Device, Folder, NonNegativeInt, PositiveInt, UserError, parse_config, repo_path, resolve_path, run_main
from credit import gae, group_advantages, implicit_rewards, per_token_rewards
from data.world.prepare import world_folder
from data_formats import as_messages, read_jsonl
from evaluation import has_category, load_suites, reply_budget, rollout_gold
from generation import Reply, respond
from html_report import colour_rgba, esc, token_view_html, view_scale, write_page
from rollouts import Rollouts, reference_logprobs, rollout_tensors, training_scores
from run_folder import claim_run_folder
from runtime import setup_runtime
from tools import Tools

POLICY_STAGES = ("pretrain", "sft", "dpo", "ppo", "grpo")
PARENT = {"sft": "pretrain", "dpo": "sft", "ppo": "sft", "grpo": "sft"}  # the stage each was trained from
VIEWS = ("logprobs", "dpo", "reward", "ppo", "grpo")
TOKENS_OUTPUTS = ("tokens.json", "tokens.html", "tokens_*.png")  # what this script writes into out_dir


@dataclass
class InspectConfig:
    run: Folder = "out"  # a pipeline's output folder: the stages' runs are run/pretrain, run/sft, run/dpo, ...
    data_dir: Optional[Folder] = None  # the world (held-out suites, val pairs; empty: the one the SFT run used)
    views: str = ",".join(VIEWS)  # comma-separated views; one whose stage the run lacks is skipped with a note
    suite: str = ""  # the prompt is one of this suite's held-out prompts (empty: refusal, or the track's first suite)
    index: NonNegativeInt = 0  # which of the suite's prompts, from 0
    prompt: str = ""  # a user message of your own instead of the suite's prompt
    reply: str = ""  # the reply to inspect (empty: the greedy reply of sample_from, tools executed)
    sample_from: str = ""  # the stage whose reply is inspected (empty: the run's last policy stage)
    pair: NonNegativeInt = 0  # the DPO view's preference pair: its line in the world's prefs_val.jsonl, from 0
    group_size: PositiveInt = 4  # replies in the GRPO view's group
    max_new_tokens: NonNegativeInt = 0  # longest sampled reply (0: the scorecard's budget for the prompt, and
    #                                     each RL run's own max_new_tokens for its rollout or group)
    out_dir: Optional[Folder] = None  # tokens.json, tokens.html and a PNG per view (empty: run/tokens)
    overwrite: bool = False  # replace an earlier inspection in out_dir
    seed: int = 1337  # seed of the sampled PPO rollout and GRPO group
    device: Device = "auto"  # auto, cpu, cuda, mps


# ----------------------------------------------------------------------------- replies as tokens


def reply_from_messages(tokenizer, prompt, messages):
    """An assistant reply given as messages (a text, a preference pair's side) as the Reply that
    generation would have produced: its tokens after the prompt's assistant header, 1 where the
    assistant wrote them (0 on tool turns), ending with its <|im_end|>."""
    ids, mask = tokenizer.render_chat(prompt + messages)
    start = len(tokenizer.render_prompt(prompt))
    ids, mask = ids[start:], mask[start:]
    while mask and mask[-1] == 0:  # the newline after the last <|im_end|>
        ids, mask = ids[:-1], mask[:-1]
    return Reply(messages=messages, ended=True, tokens=ids, action_mask=mask)


def generated_tokens(tokenizer, reply):
    """The text of each token the model generated (tool output left out), in order."""
    return [tokenizer.decode([t]) for t, a in zip(reply.tokens, reply.action_mask) if a]


@torch.no_grad()
def reply_logprobs(model, tokenizer, prompt, reply, device, temperature=1.0):
    """log p of each generated reply token (N,), logits divided by temperature as in training: the
    same function PPO and GRPO use for the reference."""
    ids, action, _ = rollout_tensors(tokenizer, [prompt], [reply], device)
    return reference_logprobs(model, ids, temperature, 1)[0][action[0] > 0]


def line(label, tokens, series, colour, note=""):
    return {"label": label, "tokens": tokens, "series": {k: [float(x) for x in v] for k, v in series.items()},
            "colour": colour, "note": note}


# ----------------------------------------------------------------------------- the views


def logprobs_view(models, tokenizer, prompt, reply, device):
    """For each stage with a parent in the run: both stages' log p of every token, and the change."""
    tokens = generated_tokens(tokenizer, reply)
    logps = {stage: reply_logprobs(model, tokenizer, prompt, reply, device) for stage, model in models.items()}
    lines = []
    for stage in logps:
        parent = PARENT.get(stage)
        if parent in logps:
            change = logps[stage] - logps[parent]
            lines.append(line(f"{stage} - {parent}: change of log p, total {change.sum():+.2f} nats", tokens,
                              {f"log p {parent}": logps[parent], f"log p {stage}": logps[stage], "change": change},
                              "change"))
    return {"name": "logprobs", "title": "What each stage moved: log p of the reply's tokens",
            "caption": "Each line: a stage against the stage it was trained from (green: the stage made the token "
                       "more likely). The reply is the same on every line.", "lines": lines, "scale": "line"}


def dpo_view(policy, ref, tokenizer, pair, beta, device):
    """DPO's implicit reward per token for the pair's chosen and rejected reply."""
    lines = []
    for side in ("chosen", "rejected"):
        reply = reply_from_messages(tokenizer, pair["prompt"], pair[side])
        logp = reply_logprobs(policy, tokenizer, pair["prompt"], reply, device)
        ref_logp = reply_logprobs(ref, tokenizer, pair["prompt"], reply, device)
        reward = implicit_rewards(logp, ref_logp, beta)
        lines.append(line(f"{side}: implicit reward {reward.sum():+.3f} (the sum: dpo.py's rewards/{side})",
                          generated_tokens(tokenizer, reply),
                          {"log pi (dpo)": logp, "log ref (sft)": ref_logp, "beta (log pi - log ref)": reward},
                          "beta (log pi - log ref)"))
    prompt = pair["prompt"][-1]["content"]
    return {"name": "dpo", "title": "DPO's implicit reward, token by token",
            "caption": f"Preference pair of prompt {prompt!r}, beta {beta}. DPO raises the chosen reply's "
                       f"reward and lowers the rejected one's; the colours show on which tokens it did.",
            "lines": lines}


@torch.no_grad()
def reward_view(reward_model, tokenizer, replies, device):
    """The reward model's scalar head at every token of each (label, prompt, reply), and the pooled reward."""
    lines = []
    for label, prompt, reply in replies:
        ids, action, _ = rollout_tensors(tokenizer, [prompt], [reply], device)
        reply_mask = torch.nn.functional.pad(action, (1, 0)) > 0  # (1, T): action[t] is about token t + 1
        values = reward_model.score(ids)[0][reply_mask[0]]  # (N,) the head at each reply token
        reward = reward_model.reward(ids, reply_mask)[0].item()  # pooled as reward.py trained it
        lines.append(line(f"{label}: reward {reward:+.3f} ({reward_model.config.reward_pooling} of the values)",
                          generated_tokens(tokenizer, reply), {"head value": values}, "head value"))
    return {"name": "reward", "title": "The reward model's per-token head",
            "caption": "The scalar head read at each reply token; the reward is their "
                       + ("mean over the reply's own tokens." if reward_model.config.reward_pooling == "mean"
                          else "value at the last token."), "lines": lines}


@torch.no_grad()
def ppo_view(policy, value, ref, reward_model, ckpt, tokenizer, row, reply, rt):
    """One PPO rollout through the functions ppo.py trains with: per-token rewards, then GAE."""
    cfg = ckpt["config"]
    ids, action, last = rollout_tensors(tokenizer, [row["prompt"]], [reply], rt.device)
    logprobs = reference_logprobs(policy, ids, cfg["temperature"], 1)  # (1, T - 1)
    ref_logprobs = reference_logprobs(ref, ids, cfg["temperature"], 1)
    values = value.score(ids)[:, :-1]  # (1, T - 1): the value of the state before each token
    gold, _ = rollout_gold([row], [reply])
    scores = training_scores(Rollouts([row], [reply], ids, action, last),
                             reward_model if cfg["reward"] == "model" else None, gold, cfg["missing_eos_score"], rt)
    beta = ckpt.get("kl_beta", cfg["beta"])
    rewards, kl = per_token_rewards(scores, logprobs, ref_logprobs, action, last, beta)
    advantages, returns = gae(rewards, values, action, cfg["gamma"], cfg["lam"])
    at = action[0] > 0
    series = {"log pi": logprobs[0][at], "log ref": ref_logprobs[0][at], "-beta KL": -beta * kl[0][at],
              "value": values[0][at], "reward": rewards[0][at], "advantage (GAE)": advantages[0][at],
              "return": returns[0][at]}
    label = (f"score {scores[0].item():+.3f} at the last token"
             + (f", gold reward {gold[0].item():+.2f}" if gold is not None else ""))
    tokens = generated_tokens(tokenizer, reply)
    # the same rollout three times, coloured by where the penalty, the expectation and the credit sit
    lines = [line(f"{name} ({label})", tokens, series, name) for name in ("-beta KL", "value", "advantage (GAE)")]
    return {"name": "ppo", "title": "A PPO rollout: KL penalty, value, reward and advantage per token",
            "caption": f"Sampled from the PPO policy at temperature {cfg['temperature']}. Reward: -beta (log pi - "
                       f"log ref) on every token (beta {beta:.3g}), plus the score on the last one; GAE (gamma "
                       f"{cfg['gamma']}, lambda {cfg['lam']}) carries it back through the value model. The "
                       f"advantage is shown before ppo.py whitens it over the batch.", "lines": lines, "scale": "line"}


def grpo_view(policy, reward_model, ckpt, tokenizer, row, group_size, max_new_tokens, tools, seed, rt):
    """A group of replies to one prompt, scored as grpo.py scores them, and GRPO's advantages."""
    cfg = ckpt["config"]
    generator = torch.Generator(device=rt.device).manual_seed(seed)
    replies = respond(policy, tokenizer, [row["prompt"]] * group_size, max_new_tokens, cfg["temperature"],
                      tools=tools, generator=generator)
    ids, action, last = rollout_tensors(tokenizer, [row["prompt"]] * group_size, replies, rt.device)
    gold, _ = rollout_gold([row] * group_size, replies)
    scores = training_scores(Rollouts([row] * group_size, replies, ids, action, last),
                             reward_model if cfg["reward"] == "model" else None, gold, cfg["missing_eos_score"], rt)
    advantages = group_advantages(scores, group_size)
    lines = []
    for i, (reply, score, advantage) in enumerate(zip(replies, scores.tolist(), advantages.tolist())):
        tokens = generated_tokens(tokenizer, reply)
        lines.append(line(f"reply {i + 1}: score {score:+.2f}, advantage {advantage:+.2f}", tokens,
                          {"score": [score] * len(tokens), "advantage": [advantage] * len(tokens)}, "advantage"))
    return {"name": "grpo", "title": "A GRPO group: one advantage per reply, on all its tokens",
            "caption": f"{group_size} replies sampled from the GRPO policy at temperature {cfg['temperature']}, "
                       f"scored by {'the verifier' if cfg['reward'] == 'gold' else 'the reward model'}; each "
                       f"reply's advantage is its score normalised by the group's mean and std"
                       + (" (this run trained with --process_reward: per-step advantages, not shown)"
                          if cfg.get("process_reward") else "") + ".", "lines": lines}


# ----------------------------------------------------------------------------- output


def print_view(view):
    print(f"\n== {view['title']}")
    for ln in view["lines"]:
        print(f"-- {ln['label']}")
        names = list(ln["series"])
        print("  " + f"{'token':>16} " + " ".join(f"{n[:16]:>16}" for n in names))
        for k, token in enumerate(ln["tokens"]):
            print("  " + f"{repr(token)[:16]:>16} " + " ".join(f"{ln['series'][n][k]:>+16.3f}" for n in names))


def draw_view(path, view, width=110):
    """The view as a PNG: each line's label, then its tokens in boxes coloured as on the page
    (monospace, wrapped at width characters)."""
    placed, row = [], 0.0
    for ln in view["lines"]:
        scale = view_scale(view, ln)
        placed.append((row, 0, f"{ln['label']}   (full colour at |x| = {scale:.3g})", None, scale))
        row, col = row + 1, 0
        for token, value in zip(ln["tokens"], ln["series"][ln["colour"]]):
            text = token.replace("\n", "\u21b5")
            if col + len(text) > width:
                row, col = row + 1, 0
            placed.append((row, col, text, value, scale))
            col += len(text)
            if token.endswith("\n"):  # the reply's own line breaks, as on the page
                row, col = row + 1, 0
        row += 1.6
    # one x unit = one character of 9 pt monospace (0.6 em wide), the axes 98% of the figure
    fig = Figure(figsize=(width * 0.6 * 9 / 72 / 0.98, 0.32 * (row + 1.5)))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.axis("off")
    ax.set_xlim(0, width)
    ax.set_ylim(row, -1.5)
    ax.text(0, -1.2, f"{view['title']} (green > 0, red < 0)", fontsize=10, weight="bold", va="center")
    for r, c, text, value, scale in placed:
        if value is None:
            ax.text(c, r, text, fontsize=9, va="center", style="italic")
        else:
            ax.text(c, r, text, family="monospace", fontsize=9, va="center",
                    bbox=dict(facecolor=colour_rgba(value, scale), edgecolor="none", pad=1.5))
    fig.savefig(path + ".tmp.png", dpi=110)
    os.replace(path + ".tmp.png", path)


# ----------------------------------------------------------------------------- main


def stage_runs(run):
    """{stage: its folder} for the stages of the run that hold a checkpoint."""
    stages = {s: os.path.join(run, s) for s in (*POLICY_STAGES, "reward")}
    return {s: path for s, path in stages.items() if os.path.exists(os.path.join(path, "ckpt.pt"))}


def load_pair(path, index):
    """The preference pair on line index + 1 of path as {"prompt", "chosen", "rejected"} messages
    (None when the world has no pairs file)."""
    if not os.path.isfile(path):
        return None
    rows = list(read_jsonl(path))
    if index >= len(rows):
        raise UserError(f"--pair={index}: {path} holds {len(rows)} pairs")
    line, row = rows[index]
    if not isinstance(row, dict) or not {"chosen", "rejected"} <= row.keys():
        raise UserError(f'{path}:{line}: expected {{"prompt", "chosen", "rejected"}}')
    try:
        return {"prompt": as_messages(row.get("prompt", []), "user"), "chosen": as_messages(row["chosen"], "assistant"),
                "rejected": as_messages(row["rejected"], "assistant")}
    except ValueError as e:
        raise UserError(f"{path}:{line}: {e}") from None


def pick_prompt(cfg, suites):
    """The world row inspected: the suite's first held-out prompt, or the user's own message."""
    if cfg.prompt:
        return {"prompt": [{"role": "user", "content": cfg.prompt}]}
    suite = cfg.suite or ("refusal" if "refusal" in suites else next(iter(suites)))
    if suite not in suites:
        raise UserError(f"--suite={suite}: no such held-out suite; the suites are {', '.join(suites)}")
    if cfg.index >= len(suites[suite]):
        raise UserError(f"--index={cfg.index}: the suite {suite} holds {len(suites[suite])} prompts")
    return suites[suite][cfg.index]


def main():
    cfg = parse_config(InspectConfig, description=__doc__)
    rt = setup_runtime(cfg.device, seed=cfg.seed)
    views = cfg.views.split(",")
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise UserError(f"--views: no view {', '.join(unknown)}; the views are {','.join(VIEWS)}")
    runs = stage_runs(cfg.run)
    policies = [s for s in POLICY_STAGES if s in runs]
    if not policies:
        raise UserError(f"--run={cfg.run} holds no <stage>/ckpt.pt for any of {', '.join(POLICY_STAGES)}: run "
                        f"python pipeline.py, or point --run at a pipeline's output folder")
    sample_from = cfg.sample_from or policies[-1]
    if sample_from not in runs:
        raise UserError(f"--sample_from={sample_from}: {cfg.run} has no such stage; it has {', '.join(policies)}")
    out_dir = cfg.out_dir or os.path.join(cfg.run, "tokens")
    out_folder = claim_run_folder(out_dir, False, cfg.overwrite, outputs=TOKENS_OUTPUTS, resumable=False)
    # every checkpoint read (weights_only) and the world found before anything is written
    ckpts = {s: load_checkpoint(path) for s, path in runs.items()}
    data_dir = cfg.data_dir
    if data_dir is None:
        chat = next((c for s, c in ckpts.items() if s != "pretrain" and "data" in c.get("config", {})), None)
        data_dir = (chat and world_folder(resolve_path(chat["config"]["data"]))) or repo_path("data", "world")
    if not os.path.isfile(os.path.join(data_dir, "eval.jsonl")):
        raise UserError(f"--data_dir={data_dir} holds no eval.jsonl (the world's held-out suites)")
    row = pick_prompt(cfg, load_suites(data_dir))
    pair = load_pair(os.path.join(data_dir, "prefs_val.jsonl"), cfg.pair) if {"dpo", "reward"} & set(views) else None
    out_folder.begin()

    models, tokenizer = {}, None
    for stage in policies:
        models[stage], tokenizer, _ = load_model(runs[stage], rt.device, dropout=0.0)
        models[stage].eval()
    tools = Tools.with_encyclopedia(data_dir)
    reward_model = None
    if "reward" in runs:
        reward_model = load_model(runs["reward"], rt.device, dropout=0.0, expect="reward")[0].eval()
    prompt = row["prompt"]
    if cfg.reply:
        reply = reply_from_messages(tokenizer, prompt, [{"role": "assistant", "content": cfg.reply}])
    else:
        budget = cfg.max_new_tokens or reply_budget(tokenizer, [row])  # a worked problem needs ~190 tokens
        reply = respond(models[sample_from], tokenizer, [prompt], budget, tools=tools)[0]
    print(f"prompt: {prompt[-1]['content']}\nreply ({'given' if cfg.reply else sample_from + ', greedy'}): "
          f"{reply.text}")

    made, skipped = [], []
    if "logprobs" in views:
        made.append(logprobs_view(models, tokenizer, prompt, reply, rt.device))
    if "dpo" in views:
        if pair and "sft" in models:
            made.append(dpo_view(models["dpo"], models["sft"], tokenizer, pair, ckpts["dpo"]["config"]["beta"],
                                 rt.device))
        else:
            skipped.append("dpo (needs run/dpo, run/sft and the world's prefs_val.jsonl)")
    if "reward" in views:
        if reward_model is not None:
            replies = [(f"reply ({sample_from})", prompt, reply)]
            if pair:
                replies += [(f"pair {cfg.pair}, {side}", pair["prompt"],
                             reply_from_messages(tokenizer, pair["prompt"], pair[side]))
                            for side in ("chosen", "rejected")]
            made.append(reward_view(reward_model, tokenizer, replies, rt.device))
        else:
            skipped.append("reward (needs run/reward)")
    def gold_missing(stage):  # a run trained on the verifier needs a world prompt, whose answer it knows
        return ckpts[stage]["config"]["reward"] == "gold" and not has_category(row)

    if "ppo" in views:
        if "ppo" in models and "sft" in models and "value_model" in ckpts["ppo"] and not gold_missing("ppo"):
            value = load_model(runs["reward"] if "reward" in runs else runs["sft"], rt.device, dropout=0.0,
                               scalar_head=True)[0]
            value.load_state_dict(ckpts["ppo"]["value_model"])
            temperature = ckpts["ppo"]["config"]["temperature"]
            generator = torch.Generator(device=rt.device).manual_seed(cfg.seed)
            budget = cfg.max_new_tokens or ckpts["ppo"]["config"]["max_new_tokens"]
            rollout = reply if cfg.reply else respond(models["ppo"], tokenizer, [prompt], budget,
                                                      temperature, tools=tools, generator=generator)[0]
            made.append(ppo_view(models["ppo"], value.eval(), models["sft"], reward_model, ckpts["ppo"], tokenizer,
                                 row, rollout, rt))
        else:
            skipped.append("ppo (needs run/ppo and run/sft, and a world prompt (--suite) if it trained on "
                           "--reward=gold)")
    if "grpo" in views:
        if "grpo" in models and ckpts["grpo"]["config"].get("algo", "grpo") == "grpo" and not gold_missing("grpo"):
            made.append(grpo_view(models["grpo"], reward_model, ckpts["grpo"], tokenizer, row, cfg.group_size,
                                  cfg.max_new_tokens or ckpts["grpo"]["config"]["max_new_tokens"], tools, cfg.seed,
                                  rt))
        else:
            skipped.append("grpo (needs run/grpo, trained with --algo=grpo, and a world prompt (--suite) if it trained "
                           "on --reward=gold)")

    for view in made:
        print_view(view)
        draw_view(os.path.join(out_dir, f"tokens_{view['name']}.png"), view)
    with open(os.path.join(out_dir, "tokens.json"), "w") as f:
        json.dump({"run": cfg.run, "prompt": prompt[-1]["content"], "reply": reply.text, "views": made,
                   "skipped": skipped}, f, indent=1)
    body = [f"<p>Run <code>{esc(cfg.run)}</code>. Prompt: <b>{esc(prompt[-1]['content'])}</b></p>"]
    body += [token_view_html(view, os.path.join(out_dir, f"tokens_{view['name']}.png")) for view in made]
    write_page(os.path.join(out_dir, "tokens.html"), "Token by token", "\n".join(body))
    for note in skipped:
        print(f"skipped the view {note}")
    out_folder.release()
    print(f"wrote {out_dir}/tokens.html, tokens.json and {len(made)} PNGs")


if __name__ == "__main__":
    run_main(main)

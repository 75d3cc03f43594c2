"""inspect_tokens.py and report.html: the token views hold the stages' own numbers (checked
against the training code's other path and a float64 recomputation), the page opens from disk."""
import json
import re
import statistics
from html.parser import HTMLParser

import pytest
import torch

import dpo
import inspect_tokens
import reward
from checkpoint import load_checkpoint, load_model
from data_formats import load_preferences, read_jsonl
from evaluation import load_suites
from generation import respond
from conftest import assert_clean_error, run_script

VOID_TAGS = {"meta", "br", "img", "hr", "input", "link"}


class TagChecker(HTMLParser):
    """Every element closed in order; every resource the page names."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.sources = [], [], []

    def handle_starttag(self, tag, attrs):
        self.sources += [value for name, value in attrs if name in ("src", "href")]
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_report_html_is_one_self_contained_page(smoke_pipeline):
    out, _, _ = smoke_pipeline
    page = (out / "report.html").read_text()
    checker = TagChecker()
    checker.feed(page)
    assert checker.errors == [] and checker.stack == []
    # nothing fetched: no script, no stylesheet link, every image inline
    assert "<script" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    assert checker.sources and all(s.startswith("data:image/png;base64,") for s in checker.sources)
    assert len(checker.sources) >= 5  # pretraining's and SFT's losses, the reward model's, DPO's and PPO's curves
    for stage in ("world", "pretrain", "sft", "reward", "dpo", "ppo", "eval", "tokens"):
        assert f'<div class="stage"><b>{stage}</b>' in page  # the pipeline picture
    assert "<th>pretrain</th><th>sft</th><th>dpo</th><th>ppo</th>" in page  # the scorecard side by side
    assert "refusal of harmful requests" in page and "<b>refusal</b>" in page  # a reply per stage
    for title in ("What each stage moved", "DPO&#x27;s implicit reward", "per-token head", "A PPO rollout"):
        assert title in page


def test_token_views_are_the_stages_own_numbers(smoke_pipeline):
    """Each view against the training code's own path (dpo.py's sequence log-probs and loss,
    reward.py's pair scorer) or a float64 recomputation (log-probs, GAE)."""
    out, data, _ = smoke_pipeline
    models = {s: load_model(str(out / s), "cpu", dropout=0.0)[0].eval() for s in ("pretrain", "sft", "dpo", "ppo")}
    tokenizer = load_model(str(out / "sft"))[1]
    rm = load_model(str(out / "reward"), "cpu", dropout=0.0)[0].eval()
    row = load_suites(str(data), 1)["refusal"][0]
    reply = respond(models["sft"], tokenizer, [row["prompt"]], 12)[0]

    # log-probs: the change is the difference of the two stages', each a float64 full forward pass
    view = inspect_tokens.logprobs_view(models, tokenizer, row["prompt"], reply, "cpu")
    assert [ln["label"].split(":")[0] for ln in view["lines"]] == ["sft - pretrain", "dpo - sft", "ppo - sft"]
    ids = torch.tensor([tokenizer.render_prompt(row["prompt"]) + reply.tokens])
    n = len(reply.tokens)
    for ln in view["lines"]:
        stage = ln["label"].split(" ")[0]
        model64 = load_model(str(out / stage), "cpu", dropout=0.0)[0].double().eval()
        with torch.no_grad():
            logits = model64(ids[:, :-1])[0][0].log_softmax(-1)  # (T - 1, V): position t predicts token t + 1
        expected = logits[-n:].gather(1, ids[0, -n:, None]).squeeze(1)
        assert ln["series"][f"log p {stage}"] == pytest.approx(expected.tolist(), abs=1e-4)
        parent = inspect_tokens.PARENT[stage]
        change = [a - b for a, b in zip(ln["series"][f"log p {stage}"], ln["series"][f"log p {parent}"])]
        assert ln["series"]["change"] == pytest.approx(change, abs=1e-6)
        assert "".join(ln["tokens"]) == tokenizer.decode(reply.tokens)

    # DPO: the per-token implicit rewards sum to dpo.py's rewards/chosen and rewards/rejected
    rows = [r for _, r in read_jsonl(str(data / "prefs_val.jsonl"))]
    pair = {k: rows[0][k] for k in ("prompt", "chosen", "rejected")}
    beta = load_checkpoint(str(out / "dpo"))["config"]["beta"]
    view = inspect_tokens.dpo_view(models["dpo"], models["sft"], tokenizer, pair, beta, "cpu")
    train_pair = load_preferences(str(data / "prefs_val.jsonl"), tokenizer, models["sft"].config.block_size)[0][:1]
    with torch.no_grad():
        pi_c, pi_r = dpo.pair_logprobs(models["dpo"], train_pair, tokenizer.eot, "cpu")
        ref_c, ref_r = dpo.pair_logprobs(models["sft"], train_pair, tokenizer.eot, "cpu")
    _, chosen, rejected = dpo.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta)
    assert chosen.item() == pytest.approx(beta * (pi_c - ref_c).item(), abs=1e-6)  # Rafailov et al.'s r = beta log(pi/ref)
    chosen_line, rejected_line = view["lines"]
    assert sum(chosen_line["series"]["beta (log pi - log ref)"]) == pytest.approx(chosen.item(), abs=1e-4)
    assert sum(rejected_line["series"]["beta (log pi - log ref)"]) == pytest.approx(rejected.item(), abs=1e-4)

    # the reward model: the mean of the per-token head is reward.py's pooled reward of the pair
    replies = [(side, pair["prompt"], inspect_tokens.reply_from_messages(tokenizer, pair["prompt"], pair[side]))
               for side in ("chosen", "rejected")]
    view = inspect_tokens.reward_view(rm, tokenizer, replies, "cpu")
    with torch.no_grad():
        r_c, r_r, _ = reward.pair_rewards(reward.PairScorer(rm), train_pair, tokenizer.eot, "cpu")
    for ln, expected in zip(view["lines"], (r_c.item(), r_r.item())):
        values = ln["series"]["head value"]
        assert sum(values) / len(values) == pytest.approx(expected, abs=1e-4)
        assert f"reward {expected:+.3f}" in ln["label"]


def test_ppo_view_is_gae_over_the_kl_penalised_rewards(smoke_pipeline):
    """The PPO view's advantages equal the textbook GAE recursion, in float64, over the rewards
    -beta KL per token plus the score at the last token, from the view's own series."""
    out, data, _ = smoke_pipeline
    ckpt = load_checkpoint(str(out / "ppo"))
    models = {s: load_model(str(out / s), "cpu", dropout=0.0)[0].eval() for s in ("sft", "ppo")}
    tokenizer = load_model(str(out / "sft"))[1]
    value = load_model(str(out / "reward"), "cpu", dropout=0.0, scalar_head=True)[0]
    value.load_state_dict(ckpt["value_model"])
    rm = load_model(str(out / "reward"), "cpu", dropout=0.0)[0].eval()
    row = load_suites(str(data), 1)["refusal"][0]
    reply = respond(models["ppo"], tokenizer, [row["prompt"]], 12)[0]
    rt = inspect_tokens.setup_runtime("cpu", "float32")
    view = inspect_tokens.ppo_view(models["ppo"], value.eval(), models["sft"], rm, ckpt, tokenizer, row, reply, rt)
    assert [ln["colour"] for ln in view["lines"]] == ["-beta KL", "value", "advantage (GAE)"]
    series = view["lines"][0]["series"]
    score = float(re.search(r"score ([-+][\d.]+)", view["lines"][0]["label"]).group(1))
    beta, gamma, lam = ckpt["kl_beta"], ckpt["config"]["gamma"], ckpt["config"]["lam"]
    n = len(series["log pi"])
    kl = [a - b for a, b in zip(series["log pi"], series["log ref"])]
    rewards = [-beta * k + (series["reward"][-1] + beta * kl[-1] if t == n - 1 else 0.0) for t, k in enumerate(kl)]
    assert series["reward"] == pytest.approx(rewards, abs=1e-5)
    assert series["reward"][-1] + beta * kl[-1] == pytest.approx(score, abs=1e-3)
    advantages, next_value, next_advantage = [0.0] * n, 0.0, 0.0
    for t in reversed(range(n)):
        delta = rewards[t] + gamma * next_value - series["value"][t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[t], next_value = next_advantage, series["value"][t]
    assert series["advantage (GAE)"] == pytest.approx(advantages, abs=1e-4)
    assert series["return"] == pytest.approx([a + v for a, v in zip(advantages, series["value"])], abs=1e-4)


def test_grpo_view_holds_each_replys_group_normalised_score(skills_smoke_pipeline):
    """The skills track's GRPO group: advantage = (score - group mean) / group std (the sample std,
    as torch.std), the same on every token of a reply."""
    out, _, _ = skills_smoke_pipeline
    views = {v["name"]: v for v in json.loads((out / "tokens" / "tokens.json").read_text())["views"]}
    lines = views["grpo"]["lines"]
    scores = [ln["series"]["score"][0] for ln in lines]
    mean, std = statistics.mean(scores), statistics.stdev(scores)
    for ln, score in zip(lines, scores):
        assert len(set(ln["series"]["advantage"])) == 1
        assert ln["series"]["advantage"][0] == pytest.approx((score - mean) / (std + 1e-6), abs=1e-4)
    assert "logprobs" in views and "dpo" not in views


def test_inspect_tokens_on_a_given_reply_and_its_clean_errors(smoke_pipeline, tmp_path, capsys):
    out, data, _ = smoke_pipeline
    target = tmp_path / "tokens"
    args = [f"--run={out}", f"--data_dir={data}", "--prompt=Who are you?", "--reply=I am a helper.",
            "--views=logprobs,reward", "--device=cpu"]
    assert run_script(inspect_tokens, args + [f"--out_dir={target}"]) == 0
    shown = json.loads((target / "tokens.json").read_text())
    assert shown["prompt"] == "Who are you?" and shown["reply"] == "I am a helper."
    assert [v["name"] for v in shown["views"]] == ["logprobs", "reward"]
    assert "".join(shown["views"][0]["lines"][0]["tokens"]) == "I am a helper.<|im_end|>"
    assert (target / "tokens_logprobs.png").exists() and (target / "tokens.html").exists()
    capsys.readouterr()
    assert_clean_error(inspect_tokens, args + [f"--out_dir={target}"], target, capsys, "--overwrite=true")
    assert_clean_error(inspect_tokens, [f"--run={out}", "--views=logprobs,attention"], tmp_path / "a", capsys,
                       "no view attention")
    assert_clean_error(inspect_tokens, [f"--run={out}", f"--data_dir={data}", "--suite=poetry"], tmp_path / "b",
                       capsys, "--suite=poetry: no such held-out suite")
    assert_clean_error(inspect_tokens, [f"--run={tmp_path}"], tmp_path / "c", capsys, "holds no <stage>/ckpt.pt")

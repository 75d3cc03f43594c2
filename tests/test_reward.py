"""reward.py: the Bradley-Terry loss, centering, where the score is read, truncation."""
import json
import math

import pytest
import torch

from batching import pad_batch, pad_right
from cli import UserError
from data_formats import load_preferences, render_pair
import torch.nn.functional as F

from model import GPT, GPTConfig, last_real_index, pool_reward
from reward import PairScorer, bradley_terry_loss, pair_rewards, score_replies, spearman
from runtime import setup_runtime
from tokenizer import Tokenizer


def test_loss_is_ln2_when_rewards_tie():
    r = torch.tensor([0.0, 1.7, -3.2])
    assert torch.allclose(bradley_terry_loss(r, r), torch.full((3,), math.log(2)))


def test_loss_margin_and_centering_by_hand():
    # r_c = 1.5, r_r = 0.5, margin 0.2: -log sigmoid(0.8) = log(1 + e^-0.8); centering 0.01 * (1.5 + 0.5)^2
    loss = bradley_terry_loss(torch.tensor([1.5]), torch.tensor([0.5]), margin=0.2, center_coef=0.01)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.8)) + 0.01 * 4.0, abs=1e-6)


def tiny_reward_model(pooling="last"):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=32, vocab_size=300, n_layer=2, n_head=2, n_embd=16, scalar_head=True,
                         reward_pooling=pooling)).eval()


def by_hand(model, ids, mask):
    """The reward of one unpadded row, from its own forward pass: the head at the last reply token
    ("last"), or the float64 average of the head over the reply tokens ("mean")."""
    values = model.score(torch.tensor([ids]))[0].double()
    reply = [t for t, m in enumerate(mask) if m]
    if model.config.reward_pooling == "last":
        return values[reply[-1]].item()
    return sum(values[t].item() for t in reply) / len(reply)


def test_pooling_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0, 9.0], [5.0, 6.0, 7.0, 9.0, 9.0]])
    mask = torch.tensor([[0, 1, 0, 1, 0], [0, 0, 1, 0, 0]])  # a prompt, a tool result between two reply tokens
    assert pool_reward(values, mask, "last").tolist() == [4.0, 7.0]
    assert pool_reward(values, mask, "mean").tolist() == [3.0, 7.0]  # (2 + 4) / 2: the tool token's 3 left out
    with pytest.raises(ValueError, match="reward_pooling must be one of"):
        pool_reward(values, mask, "max")


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_the_reward_ignores_prompt_tool_tokens_and_padding(pooling):
    model = tiny_reward_model(pooling)
    rows = [([5, 6, 7, 8, 9, 10], [0, 0, 1, 0, 1, 1]), ([11, 12], [0, 1]), ([13, 14, 15, 16], [0, 1, 1, 1])]
    alone = [by_hand(model, ids, mask) for ids, mask in rows]
    right, reply_mask = pad_right(rows, 0, "cpu")
    assert model.reward(right, reply_mask).tolist() == pytest.approx(alone, abs=1e-5)
    T = max(len(ids) for ids, _ in rows)  # left padding: the positions move, the rewards do not
    left = torch.tensor([[0] * (T - len(ids)) + ids for ids, _ in rows])
    real = torch.tensor([[0] * (T - len(ids)) + [1] * len(ids) for ids, _ in rows])
    left_mask = torch.tensor([[0] * (T - len(ids)) + mask for ids, mask in rows])
    assert last_real_index(real).tolist() == [T - 1] * 3
    values = model.score(left, real)
    assert pool_reward(values, left_mask, pooling).tolist() == pytest.approx(alone, abs=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pair_rewards_match_separate_scoring(pooling):
    model = tiny_reward_model(pooling)
    pairs = [{"chosen": ([1, 2, 3], [0, 1, 1]), "rejected": ([1, 2, 4, 5, 6], [0, 1, 1, 0, 1])},
             {"chosen": ([7, 8, 9, 10], [0, 0, 1, 1]), "rejected": ([7, 8], [0, 1])}]
    chosen, rejected, nll = pair_rewards(PairScorer(model), pairs, 0, "cpu")
    assert nll is None
    for i, p in enumerate(pairs):
        assert chosen[i].item() == pytest.approx(by_hand(model, *p["chosen"]), abs=1e-5)
        assert rejected[i].item() == pytest.approx(by_hand(model, *p["rejected"]), abs=1e-5)


def test_the_lm_term_is_the_chosen_replies_mean_nll_in_float64():
    """GRM's regulariser: the chosen replies' next-token NLL, from the pass that scores the pair,
    against a float64 loop over the reply tokens by hand (and model.forward with pad_batch)."""
    model = tiny_reward_model()
    pairs = [{"chosen": ([1, 2, 3, 4, 5], [0, 0, 1, 1, 1]), "rejected": ([1, 2, 6], [0, 0, 1])},
             {"chosen": ([7, 8, 9], [0, 1, 1]), "rejected": ([7, 8, 10, 11, 12, 13], [0, 1, 1, 1, 1, 1])}]
    chosen, rejected, nll = pair_rewards(PairScorer(model), pairs, 0, "cpu", with_nll=True)
    terms = []
    for p in pairs:
        ids, mask = p["chosen"]
        logits = model(torch.tensor([ids]))[0][0].double()  # (T, vocab)
        terms += [-torch.log_softmax(logits[t - 1], -1)[ids[t]].item() for t in range(1, len(ids)) if mask[t]]
    assert len(terms) == 5 and nll.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    x, y = pad_batch([p["chosen"] for p in pairs], 0, "cpu")
    assert nll.item() == pytest.approx(F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten(), ignore_index=-1).item(),
                                       rel=1e-5)
    assert torch.equal(chosen, pair_rewards(PairScorer(model), pairs, 0, "cpu")[0])  # the rewards do not change


def test_truncation_keeps_the_end_of_the_reply():
    tok = Tokenizer({"kind": "byte"})
    prompt = [{"role": "user", "content": "a long question " * 10}]
    reply = [{"role": "assistant", "content": "the answer"}]
    full, full_mask, was_cut = render_pair(tok, prompt, reply, 10_000)
    assert not was_cut
    cut, cut_mask, was_cut = render_pair(tok, prompt, reply, 40)
    assert was_cut and len(cut) == 40 and cut == full[-40:] and cut_mask == full_mask[-40:]
    assert cut[-1] == tok.im_end and tok.decode(cut).endswith("the answer<|im_end|>")
    assert sum(cut_mask) == len("the answer") + 1  # the reply and its end-of-turn, nothing of the prompt
    # "assistant\n" header (1 + 10 bytes) + 10 + im_end = 22 tokens: a reply that alone does not fit is refused
    with pytest.raises(ValueError, match="the reply alone is 22 tokens"):
        render_pair(tok, prompt, reply, 21)


def test_preference_files_report_cut_and_dropped_pairs_and_name_bad_lines(tmp_path):
    tok = Tokenizer({"kind": "byte"})
    rows = [{"prompt": "q" * 60, "chosen": "yes", "rejected": "no"},  # fits only with its prompt cut
            {"prompt": "q", "chosen": "y" * 80, "rejected": "no"},  # the chosen reply alone is too long
            {"prompt": "q", "chosen": "yes", "rejected": "no"}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pairs, report = load_preferences(str(tmp_path / "p.jsonl"), tok, 64)
    assert len(pairs) == 2 and "2 pairs, 1 with the start of the prompt cut" in report
    assert "1 dropped, the reply alone longer than block_size (first: " in report and report.endswith("p.jsonl:2)")
    for bad, message in [({"prompt": "q", "chosen": 5, "rejected": "no"}, "expected a string or a list of messages"),
                         ({"prompt": "q", "chosen": "a", "rejected": "b", "info": "str"}, "'info' must be an object"),
                         ({"prompt": [{"role": "human", "content": "q"}], "chosen": "a", "rejected": "b"},
                          "message 0: unknown role 'human'")]:
        (tmp_path / "bad.jsonl").write_text(json.dumps(rows[2]) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(UserError, match=f"bad.jsonl:2: {message}"):
            load_preferences(str(tmp_path / "bad.jsonl"), tok, 64)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_score_replies_equals_the_training_path(pooling):
    tok = Tokenizer({"kind": "byte"})
    torch.manual_seed(0)
    tok_model = GPT(GPTConfig(block_size=64, vocab_size=320, n_layer=1, n_head=2, n_embd=16, scalar_head=True,
                              reward_pooling=pooling)).eval()
    tool_reply = [{"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "2+2"}}}]},
                  {"role": "tool", "content": "4"}, {"role": "assistant", "content": "4."}]
    prompts, replies = ["hi", "what is 2+2?", "what is 2+2?"], ["hello!", "4", tool_reply]
    scores = score_replies(tok_model, tok, prompts, replies, setup_runtime("cpu", "float32"))
    for p, r, s in zip(prompts, replies, scores):
        r = r if isinstance(r, list) else [{"role": "assistant", "content": r}]
        ids, mask, _ = render_pair(tok, [{"role": "user", "content": p}], r, 64)
        assert s == pytest.approx(by_hand(tok_model, ids, mask), abs=1e-5)
    # the reply's mask covers the call and the answer, never the tool's result
    ids, mask, _ = render_pair(tok, [{"role": "user", "content": prompts[2]}], tool_reply, 64)
    assert tok.decode([t for t, m in zip(ids, mask) if m]) == "<|tool_call|>calculator(2+2)<|im_end|>4.<|im_end|>"


def test_spearman_by_hand():
    # ranks differ by one swap: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [1, 1, 2]) == pytest.approx(1.0)  # ties get average ranks

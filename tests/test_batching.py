"""batching.py: padding and packing. A packed sequence must compute what it computes alone: its
logits, SFT's loss and gradients, the reward model's rewards and DPO's log-probs, each compared
with the same sequences one a row, in float32."""
import pytest
import torch

import dpo
import sft
from batching import pack_batch, pack_rows, pack_sequences, pad_batch, pad_right, unpack
from model import GPT, GPTConfig
from reward import PairScorer, pair_rewards

torch.manual_seed(0)
GEN = torch.Generator().manual_seed(0)


def random_examples(n, lo=5, hi=40, vocab=64):
    lengths = torch.randint(lo, hi, (n,), generator=GEN).tolist()
    examples = []
    for n_tokens in lengths:
        ids = torch.randint(0, vocab, (n_tokens,), generator=GEN).tolist()
        cut = n_tokens // 3  # a prompt, then the reply the loss and rewards read
        examples.append((ids, [0] * cut + [1] * (n_tokens - cut)))
    return examples


def tiny_gpt(scalar_head=False):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=64, vocab_size=64, n_layer=2, n_head=2, n_embd=32, scalar_head=scalar_head))


def test_pack_rows_is_first_fit_decreasing_by_hand():
    # sorted: 7 (a), 6 (b), 5 (c), 4 (d), 3 (e), 2 (f) into rows of 10: a -> row 0 (3 left), b -> row 1 (4 left),
    # c -> row 2 (5 left), d -> row 1 (0 left), e -> row 0 (0 left), f -> row 2 (3 left)
    assert pack_rows([4, 7, 2, 6, 3, 5], 10) == [[1, 4], [3, 0], [5, 2]]
    with pytest.raises(ValueError, match="does not fit"):
        pack_rows([11], 10)


def test_a_packed_row_computes_what_each_sequence_computes_alone():
    model = tiny_gpt().eval()
    examples = random_examples(9)
    ids, segments, where = pack_sequences(examples, 0, 64, "cpu")
    assert ids.size(0) < len(examples) and set(segments.unique().tolist()) >= {0, 1, 2}
    logits = unpack(model(ids, segments=segments)[0], where)
    for i, (seq, _) in enumerate(examples):
        alone, _ = model(torch.tensor([seq]))
        assert torch.allclose(logits[i, :len(seq)], alone[0], atol=1e-5)
        assert (logits[i, len(seq):] == 0).all()


def test_sft_loss_and_gradients_packed_equal_padded():
    examples = random_examples(12)
    n_tokens = sum(sum(m[1:]) for _, m in examples)
    grads, losses = [], []
    for pack_length in (None, 64):
        model = tiny_gpt()
        total = 0.0
        for x, y, segments in sft.micro_batches(examples, 0, 4, "cpu", pack_length):
            logits, _ = model(x, segments=segments)
            loss = sft.summed_loss(logits, y) / n_tokens
            loss.backward()
            total += loss.item()
        losses.append(total)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    x, y, _ = pack_batch(examples, 0, 64, "cpu")
    assert int((y != -1).sum()) == n_tokens == int((pad_batch(examples, 0, "cpu")[1] != -1).sum())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_reward_model_packed_equals_one_reply_a_row(pooling):
    model = tiny_gpt(scalar_head=True).eval()
    model.config.reward_pooling = pooling
    examples = random_examples(10)
    pairs = [{"chosen": examples[i], "rejected": examples[i + 5]} for i in range(5)]
    padded = pair_rewards(PairScorer(model), pairs, 0, "cpu")
    packed = pair_rewards(PairScorer(model), pairs, 0, "cpu", pack_length=64)
    ids, mask = pad_right([p["chosen"] for p in pairs], 0, "cpu")
    assert torch.allclose(padded[0], model.reward(ids, mask), atol=1e-5)  # the padded path is GPT.reward's
    for a, b in zip(padded[:2], packed[:2]):
        assert torch.allclose(a, b, atol=1e-5)


def test_dpo_log_probs_packed_equal_one_sequence_a_row():
    model = tiny_gpt().eval()
    examples = random_examples(8)
    padded = dpo.sequence_logprobs(model, examples, 0, "cpu")
    packed = dpo.sequence_logprobs(model, examples, 0, "cpu", pack_length=64)
    for i, (seq, mask) in enumerate(examples):  # by hand: the reply tokens' log-probs, one sequence alone
        logits, _ = model(torch.tensor([seq[:-1]]))
        logprobs = torch.log_softmax(logits[0].double(), -1)
        expected = sum(logprobs[t - 1, seq[t]].item() for t in range(1, len(seq)) if mask[t])
        assert padded[i].item() == pytest.approx(expected, abs=1e-4)
        assert packed[i].item() == pytest.approx(expected, abs=1e-4)


def test_packed_rows_under_bf16_autocast_stay_within_bf16_rounding_of_float32():
    # the chat stages' default on a CPU with native bf16: autocast must not break the segment mask
    model = tiny_gpt().eval()
    examples = random_examples(9)
    ids, segments, where = pack_sequences(examples, 0, 64, "cpu")
    exact = unpack(model(ids, segments=segments)[0], where)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = unpack(model(ids, segments=segments)[0], where).float()
    for i, (seq, _) in enumerate(examples):
        # bf16 keeps 8 bits of mantissa: relative error ~2^-8 per op, a few ops deep
        assert torch.allclose(rounded[i, :len(seq)], exact[i, :len(seq)], atol=0.05, rtol=0.05)
        assert (rounded[i, len(seq):] == 0).all()

"""sft.py's batches and loss, the calculator (tools.py), generation with tools, chat.py's CLI, the
scorecard (evaluation.py) and eval.py."""
import collections
import decimal
import itertools
import json
import os
import random
import subprocess
import sys
import time
from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch

import chat
import eval as eval_script
import evaluation
import generation
from batching import pad_batch
from checkpoint import save_checkpoint
from cli import UserError
from conftest import ROOT, checkpoint_dict, run_script
from data.skills.prompts import EVAL_SUITES as SKILLS_SUITES, TASK_SUITES
from data_formats import load_conversations, read_meta
from evaluation import ROWS, load_suites, val_losses
from generation import respond
from model import GPT, GPTConfig, Generation
from runtime import setup_runtime
from sft import evaluate_loss, summed_loss
from tokenizer import Tokenizer, tool_call_message
from tools import Tools, calculator

# rows of the skills track's own suites (knowledge_seen is the world's too)
SKILLS_KEYS = set(SKILLS_SUITES + TASK_SUITES) - {"knowledge_seen"} | {"unfaithful"}

TOK = Tokenizer({"kind": "byte"})


def test_targets_are_exactly_the_assistant_tokens():
    examples = [TOK.render_chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]),
                TOK.render_chat([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}])]
    x, y = pad_batch(examples, TOK.eot, "cpu")
    for i, (ids, mask) in enumerate(examples):
        n = len(ids) - 1
        assert x[i, :n].tolist() == ids[:-1]
        expected = [t if m else -1 for t, m in zip(ids[1:], mask[1:])]
        assert y[i, :n].tolist() == expected and (y[i, n:] == -1).all()
    assert TOK.decode([t for t in y[0].tolist() if t != -1]) == "yo<|im_end|>"


def test_an_all_masked_batch_gives_zero_not_nan():
    logits = torch.randn(2, 5, 320, requires_grad=True)
    loss = summed_loss(logits, torch.full((2, 5), -1)) / 7  # the global batch's token count comes from elsewhere
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(logits.grad).all()


def write_jsonl(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_conversation_files_errors_name_the_line_and_long_examples_are_dropped(tmp_path):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    long = {"messages": [{"role": "user", "content": "x" * 300}, {"role": "assistant", "content": "ok"}]}
    write_jsonl(tmp_path / "a.jsonl", [good, long, good])
    examples, report = load_conversations(str(tmp_path / "a.jsonl"), TOK, 64)
    assert len(examples) == 2
    assert "2 conversations; 1 dropped, longer than the model's context of 64 tokens (first: " in report
    assert report.endswith("a.jsonl:2)")
    write_jsonl(tmp_path / "b.jsonl", [good, {"messages": [{"role": "user", "content": "no reply"}]}])
    with pytest.raises(UserError, match=r"b.jsonl:2: no assistant message"):
        load_conversations(str(tmp_path / "b.jsonl"), TOK, 64)
    write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "wizard", "content": "x"}]}])
    with pytest.raises(UserError, match=r"c.jsonl:1: message 0: unknown role 'wizard'"):
        load_conversations(str(tmp_path / "c.jsonl"), TOK, 64)


@pytest.mark.parametrize("expression, expected", [
    ("2*(3+4)", "14"), ("7/2", "3.5"), ("-3 - -2", "-1"), ("1/3", "0.3333333333"), ("3847*29", "111563"),
    ("0.1+0.2", "0.3"), ("(((1)))", "1"),
])
def test_calculator_computes(expression, expected):
    assert calculator(expression) == expected


E29 = "1" + "0" * 29  # 10**29, the largest power of 10 a literal may spell (MAX_DIGITS = 30)


@pytest.mark.parametrize("expression, expected", [
    # exact: integers and finite decimals print in full, positionally, without trailing zeros
    ("12345678901 + 0.5", "12345678901.5"), ("1/8", "0.125"), ("-15/4", "-3.75"), ("10/4", "2.5"),
    ("6/3", "2"), ("0.1 + 0.2", "0.3"), ("0.000001", "0.000001"), ("2.50 * 1", "2.5"), ("-0", "0"),
    ("0.5 - 0.5", "0"), ("1/1024", "0.0009765625"), ("99999999999999999999 * 99999999999999999999",
     "9999999999999999999800000000000000000001"), ("0.12345678901234567890123456789/100000000000",
     "0.0000000000012345678901234567890123456789"),  # 40 places, MAX_DECIMALS: still exact
    # rounded: 10 significant digits, positional, the integer part never cut
    ("1/3", "0.3333333333"), ("200/3", "66.66666667"), ("2/7", "0.2857142857"), ("-2/3", "-0.6666666667"),
    ("1 - 1/3000000000000", "1"), ("12345678901 + 1/3", "12345678901"),
    (E29 + "/3*1000000000", "3" * 38), ("1/3/1000000000000000/1000000000000000", "0." + "0" * 30 + "3" * 10),
    # rounded with an exponent only below MAX_DECIMALS places: 1e-58 needs 58, past the cap of 40
    ("1/3/" + E29 + "/" + E29, "3.333333333e-59"), ("-1/3/" + E29 + "/" + E29, "-3.333333333e-59"),
    ("0.12345678901234567890123456789/1000000000000", "0.000000000000123456789"),  # 41 places: rounded
    ("0." + "0" * 28 + "1/" + E29, "1e-58"), ("(1 - 1/3000000000000)/" + E29 + "/" + E29, "1e-58"),
])
def test_calculator_prints_exact_decimals_exactly_and_rounds_the_rest(expression, expected):
    assert calculator(expression) == expected


def test_calculator_terminating_decimals_round_trip_exactly():
    """Random a/(2**i * 5**j) against Python's decimal as an independent reference: exact in plain
    positional notation (no exponent, no trailing zeros), and back to the same Fraction."""
    rng = random.Random(0)
    for _ in range(300):
        a = rng.randint(-10 ** 12, 10 ** 12)
        i, j = rng.randint(0, 30), rng.randint(0, 30)
        result = calculator(f"{a}/{2 ** i}/{5 ** j}")
        exact = Fraction(a, 2 ** i * 5 ** j)
        assert Fraction(result) == exact
        with decimal.localcontext() as ctx:
            ctx.prec = 100  # enough for every digit, so the division is exact
            assert result == format((decimal.Decimal(a) / 2 ** i / 5 ** j).normalize(), "f")


def test_calculator_rounds_non_terminating_results_to_ten_significant_digits():
    """a/b, b free of 2 and 5, so a/b is an integer or never ends; against decimal's 10-digit rounding."""
    rng = random.Random(1)
    for _ in range(300):
        a, b = rng.randint(-10 ** 8, 10 ** 8), rng.choice([3, 7, 11, 13, 21, 99, 12347, 999983])
        if Fraction(a, b).denominator == 1:
            continue
        with decimal.localcontext() as ctx:
            ctx.prec = 10
            assert calculator(f"{a}/{b}") == format((decimal.Decimal(a) / b).normalize(), "f")


@pytest.mark.parametrize("hostile", [
    "__import__('os').system('touch PWNED')", "9**9**9", "9" * 10_000, "", "   ", "١٢٣+1", "１２+3",
    "(" * 5000 + "1" + ")" * 5000, "(" * 30 + "1" + ")" * 30, "1/0", "2*", "1..2", "abs(-1)", None, 12,
    "99999999999999999999*99999999999999999999*99999999999999999999",
])
def test_calculator_refuses_hostile_input_fast_with_an_error_string(hostile, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    result = calculator(hostile)
    assert result.startswith("error: ") and time.perf_counter() - start < 0.5
    assert not os.path.exists(tmp_path / "PWNED")


def tiny_chat_checkpoint(path, tokenizer, vocab_size, stage="sft", block_size=128):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32))
    save_checkpoint(str(path / "ckpt.pt"), checkpoint_dict(model, tokenizer, stage))
    return model


def test_respond_runs_tool_calls_and_keeps_token_views_aligned(monkeypatch):
    """respond() with a scripted model: first turn calls the calculator, second turn answers."""
    call = [TOK.tool_call] + TOK.encode("calculator(6*7)") + [TOK.im_end]
    answer = TOK.encode("It is 42.") + [TOK.im_end]
    contexts = []

    def scripted_generate(model, prompts, max_new_tokens, *args, **kwargs):
        contexts.append(prompts[0])
        turn = call if len(contexts) == 1 else answer
        return Generation(torch.tensor([turn]), torch.full((1, len(turn)), -0.5), torch.tensor([len(turn)]),
                          torch.tensor([True]))
    monkeypatch.setattr(generation, "generate", scripted_generate)
    model = GPT(GPTConfig(block_size=128, vocab_size=320, n_layer=1, n_head=2, n_embd=16))
    question = [{"role": "user", "content": "What is 6*7?"}]
    (reply,) = respond(model, TOK, [question], max_new_tokens=40, tools=Tools())
    assert reply.messages == [tool_call_message("6*7"), {"role": "tool", "content": "42"},
                              {"role": "assistant", "content": "It is 42."}]
    assert reply.ended and reply.text == "It is 42."
    tool = TOK.tool_turn("42")
    assert reply.tokens == call + tool + answer
    assert reply.action_mask == [1] * len(call) + [0] * len(tool) + [1] * len(answer)
    assert reply.logprobs == [-0.5] * len(call) + [0.0] * len(tool) + [-0.5] * len(answer)
    # the second turn continued from the prompt, the call and the tool's turn, token for token
    assert contexts[1] == TOK.render_prompt(question) + call + tool
    assert contexts[1] == TOK.render_prompt(question + reply.messages[:2])


def test_chat_prompt_mode_round_trip(tmp_path):
    tiny_chat_checkpoint(tmp_path, TOK, 320)
    out = subprocess.run([sys.executable, "chat.py", f"--checkpoint={tmp_path}", "--prompt=Hello there",
                          "--max_new_tokens=8", "--device=cpu"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()  # an (untrained) answer, printed
    missing = subprocess.run([sys.executable, "chat.py", f"--checkpoint={tmp_path / 'nope'}", "--prompt=hi"],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no checkpoint")


def test_eval_writes_the_scorecard_for_a_tiny_checkpoint(small_world, tmp_path, capsys):
    tokenizer = Tokenizer(read_meta(str(small_world))["tokenizer"])
    tiny_chat_checkpoint(tmp_path / "sft", tokenizer, 448, block_size=256)
    tiny_chat_checkpoint(tmp_path / "base", tokenizer, 448, stage="pretrain", block_size=256)
    code = run_script(eval_script, [f"--data_dir={small_world}", f"--out_dir={tmp_path / 'eval'}",
                                    f"--checkpoints={tmp_path / 'base'},{tmp_path / 'sft'}", "--per_suite=2",
                                    "--max_new_tokens=8", "--device=cpu"])
    assert code == 0
    table = (tmp_path / "eval" / "scorecard.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    # every row but GSM8K's and the skills track's, which need data/gsm8k and data/skills
    assert list(rows) == [label for label, key in ROWS
                          if key != "gsm8k" and key not in SKILLS_KEYS]
    assert "%" in rows["persona"].split("|")[3] and rows["persona"].split("|")[2].strip() == "-"  # base: no chat
    assert "%" in rows["knowledge (SFT-seen people)"].split("|")[2]  # base: completion probes
    data = json.loads((tmp_path / "eval" / "scorecard.json").read_text())
    assert set(data) == {str(tmp_path / "base"), str(tmp_path / "sft")}


def test_pass_at_k_is_the_unbiased_estimator_by_enumeration():
    """pass@k against every way of drawing k of n samples, c of them right."""
    for n, c in [(5, 0), (5, 2), (6, 6), (8, 3)]:
        for k in range(1, n + 1):
            draws = list(itertools.combinations([True] * c + [False] * (n - c), k))
            assert evaluation.pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws))


def test_pass_at_k_curves_count_each_prompts_own_samples(small_world, monkeypatch):
    """Prompt i gets i right replies among its n = 4 samples, in batches that split the prompts:
    the curve is the mean of the estimator over counts 0, 1, 2, by hand."""
    rows = load_suites(str(small_world))["arithmetic"][:3]
    which = {json.dumps(row["prompt"]): i for i, row in enumerate(rows)}
    drawn = collections.Counter()

    def fake_respond(model, tokenizer, prompts, max_new_tokens, temperature, tools, generator):
        assert temperature == 1.0
        replies = []
        for prompt in prompts:
            i = which[json.dumps(prompt)]
            right = drawn[i] < i
            drawn[i] += 1
            replies.append(SimpleNamespace(ended=True, messages=rows[i]["reference"] if right else
                                           [{"role": "assistant", "content": "I am not sure."}]))
        return replies

    monkeypatch.setattr(evaluation, "respond", fake_respond)
    curves = evaluation.pass_at_k_curves(None, None, {"arithmetic": rows}, ["arithmetic"], 4,
                                         Tools.with_encyclopedia(str(small_world)), setup_runtime("cpu", "float32"), batch_size=8,
                                         max_new_tokens=96)
    # c = 1: pass@k = k/4; c = 2: 1 - C(2, k) / C(4, k) = 1/2, 5/6, 1, 1
    assert curves["arithmetic"] == pytest.approx([(0 + 1 / 4 + 1 / 2) / 3, (0 + 1 / 2 + 5 / 6) / 3,
                                                  (0 + 3 / 4 + 1) / 3, (0 + 1 + 1) / 3])
    assert drawn == {0: 4, 1: 4, 2: 4}


def test_eval_writes_pass_at_k_for_a_tiny_checkpoint(small_world, tmp_path):
    tokenizer = Tokenizer(read_meta(str(small_world))["tokenizer"])
    tiny_chat_checkpoint(tmp_path / "sft", tokenizer, 448, block_size=256)
    assert run_script(eval_script, [f"--data_dir={small_world}", f"--out_dir={tmp_path / 'eval'}",
                                    f"--checkpoints={tmp_path / 'sft'}", "--per_suite=2", "--max_new_tokens=8",
                                    "--pass_at_k=3", "--pass_suites=arithmetic,code_tool", "--device=cpu"]) == 0
    curves = json.loads((tmp_path / "eval" / "scorecard.json").read_text())[str(tmp_path / "sft")]["pass_at_k"]
    assert set(curves) == {"arithmetic", "code_tool"} and all(len(c) == 3 for c in curves.values())
    for curve in curves.values():  # pass@k never falls with k; pass@3 of 3 samples is a share of 2 prompts
        assert curve == sorted(curve) and curve[-1] in (0.0, 0.5, 1.0)
    table = (tmp_path / "eval" / "scorecard.md").read_text()
    assert "| arithmetic, pass@1 |" in table and "| code_tool, pass@3 |" in table
    assert os.path.getsize(tmp_path / "eval" / "pass_at_k.png") > 1000


def test_sft_val_loss_in_padded_batches_equals_the_scorecard_one_chat_at_a_time(small_world):
    """Two implementations of the chat val loss: sft.py's (right-padded batches, summed loss over
    unmasked targets) and the scorecard's (one unpadded conversation at a time)."""
    tokenizer = Tokenizer(read_meta(str(small_world))["tokenizer"])
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=256, vocab_size=448, n_layer=2, n_head=2, n_embd=32)).eval()
    examples, _ = load_conversations(str(small_world / "sft_val.jsonl"), tokenizer, 256)
    rt = setup_runtime("cpu", "float32")
    chat_loss, text_loss = val_losses(model, tokenizer, str(small_world), rt)
    assert evaluate_loss(model, examples, tokenizer.eot, rt, batch_size=7) == pytest.approx(chat_loss, rel=1e-5)
    assert 5 < text_loss < 7  # an untrained model: about ln(448) = 6.1


def test_chat_prompt_with_a_search_round_trip(small_world, tmp_path, monkeypatch, capsys):
    """chat.py --prompt, the model scripted to search the world's encyclopedia and then answer:
    the search runs on the real index and its result reaches the model and the screen."""
    tokenizer = Tokenizer(read_meta(str(small_world))["tokenizer"])
    tiny_chat_checkpoint(tmp_path / "sft", tokenizer, 448, block_size=256)
    person = json.loads(open(small_world / "encyclopedia.jsonl").readline())
    call = [tokenizer.tool_call] + tokenizer.encode(f"search({person['title']})") + [tokenizer.im_end]
    answer = tokenizer.encode("Found it.") + [tokenizer.im_end]
    contexts = []

    def scripted_generate(model, prompts, max_new_tokens, *args, **kwargs):
        contexts.append(prompts[0])
        turn = call if len(contexts) == 1 else answer
        return Generation(torch.tensor([turn]), torch.zeros((1, len(turn))), torch.tensor([len(turn)]),
                          torch.tensor([True]))
    monkeypatch.setattr(generation, "generate", scripted_generate)
    assert run_script(chat, [f"--checkpoint={tmp_path / 'sft'}", f"--search_dir={small_world}", "--device=cpu",
                             f"--prompt=Who is {person['title']}?"]) == 0
    printed = capsys.readouterr().out
    assert f"[search({person['title']})] [tool: {person['text']}] Found it." in printed
    assert tokenizer.decode(contexts[1]).endswith(f"{person['text']}<|im_end|>\n<|im_start|>assistant\n")
    # with search off, the model is told so
    contexts.clear()
    assert run_script(chat, [f"--checkpoint={tmp_path / 'sft'}", f"--search_dir={small_world}", "--device=cpu",
                             "--tools=calculator,python", f"--prompt=Who is {person['title']}?"]) == 0
    assert "[tool: error: the search tool is disabled]" in capsys.readouterr().out


def test_a_tool_result_that_fills_the_context_ends_the_reply_unfinished(monkeypatch):
    """respond() never asks the model to continue past its context: when a tool's turn leaves no
    room, the reply stops there (ended False), where generate would otherwise raise."""
    tokenizer = Tokenizer({"kind": "byte"})
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=tokenizer.n_vocab, n_layer=1, n_head=1, n_embd=8))
    call = [tokenizer.tool_call] + tokenizer.encode("search()") + [tokenizer.im_end]
    calls = []

    def scripted_generate(model, prompts, max_new_tokens, *args, **kwargs):
        calls.append(len(prompts[0]))
        return Generation(torch.tensor([call]), torch.zeros((1, len(call))), torch.tensor([len(call)]),
                          torch.tensor([True]))
    monkeypatch.setattr(generation, "generate", scripted_generate)
    long_entry = Tools(documents=[{"title": "Ada", "text": "Ada " + "x" * 60}])
    conversation = [{"role": "user", "content": "Ada?"}]
    [reply] = respond(model, tokenizer, [conversation], 32, tools=long_entry)
    assert len(calls) == 1  # the model was not asked to go on
    assert reply.messages[-1] == {"role": "tool", "content": "Ada " + "x" * 60} and not reply.ended
    # the token view stops at the context's end, so a reference model can read the whole reply back
    prompt = tokenizer.render_prompt(conversation)
    assert len(prompt) + len(reply.tokens) == 64
    assert reply.tokens == (call + tokenizer.tool_turn("Ada " + "x" * 60))[:64 - len(prompt)]
    model(torch.tensor([prompt + reply.tokens]))  # fits: no "longer than block_size" error

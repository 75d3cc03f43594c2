import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# tiktoken downloads GPT-2's BPE files on first use; offline, the copy beside the checkout serves
_SHARED_CACHE = os.path.join(os.path.dirname(ROOT), "shared", "tiktoken-cache")
if "TIKTOKEN_CACHE_DIR" not in os.environ and os.path.isdir(_SHARED_CACHE):
    os.environ["TIKTOKEN_CACHE_DIR"] = _SHARED_CACHE


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from tokenizer import Tokenizer
    try:
        return Tokenizer({"kind": "gpt2"})
    except Exception as e:  # no network and no TIKTOKEN_CACHE_DIR
        pytest.skip(f"GPT-2 BPE files unavailable: {e}")

"""Shared pytest fixtures. Each helper keeps its fixtures in its own delimited section."""

import os as _os

# The toy run goes on beside the other tests (tests/e2e/toy_run.py), so more threads want the cores than
# there are. OpenMP's default spin-wait then burns the time slices a waiting thread's partner needs (a 2-thread
# torch loop beside one busy process: 8.0 s spinning, 4.4 s passive, 2.5 s alone; alone passive costs 10%).
# The wait policy changes no result, only how threads wait; every subprocess inherits it.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# ---- BEGIN tiny model fixtures (owner: DCR module; shared by tests that need a loadable HF model) ----
# A character-level tokenizer and a 4-block random Llama, saved once per session in HF format, so any
# stage that does `AutoTokenizer/AutoModelForCausalLM.from_pretrained(model_dir)` can run on it in
# well under a second. Treat the directory as read-only (it is shared across tests).
import pytest as _tiny_pytest

TINY_SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>")
# Llama-3-like: the chat template starts with BOS *and* the tokenizer adds BOS, so code must pass
# add_special_tokens=False for chat-rendered text, exactly as with the real model.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def make_tiny_tokenizer():
    """Character-level WordLevel tokenizer (printable ASCII + newline; 102 ids < vocab 128)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate([*TINY_SPECIAL_TOKENS, *chars])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
        padding_side="left",
        chat_template=TINY_CHAT_TEMPLATE,
    )


def make_tiny_llama_config(**overrides):
    from transformers import LlamaConfig

    kw = dict(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, vocab_size=128,
        tie_word_embeddings=False, max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )
    kw.update(overrides)
    return LlamaConfig(**kw)


@_tiny_pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tiny_tokenizer()


@_tiny_pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Path (str) of a saved random 4-layer Llama + tokenizer in HF format ("toy-llama")."""
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny") / "toy-llama"
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        model = LlamaForCausalLM(make_tiny_llama_config())
    model.save_pretrained(path)
    make_tiny_tokenizer().save_pretrained(path)
    return str(path)
# ---- END tiny model fixtures ----


# ---- BEGIN the toy world's run beside the other tests (owner: e2e; tests/e2e/toy_run.py) ----
def pytest_collection_modifyitems(session, config, items):
    """The e2e tests run last, so that their toy run, started with the session, overlaps every other test."""
    e2e = [item for item in items if item.get_closest_marker("e2e")]
    if e2e and len(e2e) < len(items):
        items[:] = [item for item in items if not item.get_closest_marker("e2e")] + e2e


@_tiny_pytest.fixture(scope="session", autouse=True)
def _toy_run_beside_the_other_tests(request, tmp_path_factory):
    from tests.e2e import toy_run

    if any(item.get_closest_marker("e2e") for item in request.session.items):
        toy_run.start(tmp_path_factory)
    yield
    toy_run.stop()
# ---- END the toy world's run ----

"""ChatClient against a real local HTTP server (stdlib ThreadingHTTPServer on 127.0.0.1).

Nothing is mocked: every request goes through the openai package, over TCP, to
``overrefusal.llm.server``; the server's own counters (``GET /stats``) are the ground truth for
how many requests were sent and how many were in flight at once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from overrefusal.llm import (
    ChatClient,
    ConfigError,
    LLMError,
    check_endpoint,
    request_key,
)
from overrefusal.llm.backends import ScriptedBackend, echo_script
from overrefusal.llm.launcher import get_stats, local_server
from overrefusal.llm.server import ChatServer, serve_in_thread

SRC = str(Path(__file__).resolve().parents[2] / "src")
SECRET = "sk-test-DO-NOT-LEAK-8c1f0e"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.rglob("*.json") if not p.name.startswith("."))


def make_client(base_url: str, cache_dir: Path | None, **kw) -> ChatClient:
    kw.setdefault("backoff_base", 0.005)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("timeout", 10)
    model, api_key = kw.pop("model", "judge-model"), kw.pop("api_key", None)
    return ChatClient(base_url, model, api_key=api_key, cache_dir=cache_dir, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- parsing, usage, parameters ------------------------------------------------------------------
def test_response_text_usage_and_params_round_trip(tmp_path):
    with serve_in_thread(ScriptedBackend(lambda msgs, params: "1_full_compliance because it answers")) as srv:
        with make_client(srv.base_url, tmp_path) as client:
            r = client.complete(
                [{"role": "system", "content": "You are a helpful assistant."}, *user("QUESTION: hi there")],
                temperature=0,
                top_p=1,
                max_tokens=16,
                seed=7,
            )
            assert r.text == "1_full_compliance because it answers"
            assert r.finish_reason == "stop"
            assert (r.prompt_tokens, r.completion_tokens) == (8, 4)  # scripted backend counts words
            assert r.model == "judge-model" and not r.cached and r.attempts == 1
            assert r.response_id and r.response_id.startswith("chatcmpl-")
            truncated = client.complete(user("another"), max_tokens=2)
            assert truncated.text == "1_full_compliance because"
            assert (truncated.finish_reason, truncated.completion_tokens) == ("length", 2)
            stats = client.stats()
        sent = srv.stats()["recent_requests"][0]
    assert sent["model"] == "judge-model"
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["seed"]) == (0, 1, 16, 7)
    assert stats["requests_sent"] == 2 and stats["cache_hits"] == 0 and stats["retries"] == 0
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (8 + 1, 4 + 2)


def test_stop_sequence_is_applied_by_server(tmp_path):
    with serve_in_thread(ScriptedBackend(["CLASS: 2_full_refusal\nexplanation follows"])) as srv:
        r = make_client(srv.base_url, None).complete(user("x"), stop=["\n"])
    assert (r.text, r.finish_reason) == ("CLASS: 2_full_refusal", "stop")


def test_invalid_parameters_fail_before_any_request(tmp_path):
    with serve_in_thread(ScriptedBackend(echo_script)) as srv:
        client = make_client(srv.base_url, tmp_path)
        with pytest.raises(ValueError, match="temprature"):
            client.complete(user("x"), temprature=0)
        with pytest.raises(ValueError, match="n=1"):
            client.complete(user("x"), n=2)
        with pytest.raises(ValueError, match=r"requests\[1\]"):
            client.complete_many([{"messages": user("ok")}, {"messages": [{"role": "robot", "content": "x"}]}])
        assert srv.stats()["requests"] == 0


def test_cache_key_is_canonical():
    a = request_key("gpt-4", user("q"), {"temperature": 0, "max_tokens": 16})
    reordered = {"max_tokens": 16, "temperature": 0, "seed": None}
    assert a == request_key("gpt-4", [{"content": "q", "role": "user"}], reordered)
    assert a != request_key("gpt-4", user("q"), {"temperature": 0, "max_tokens": 17})
    assert a != request_key("gpt-4o", user("q"), {"temperature": 0, "max_tokens": 16})
    assert a != request_key("gpt-4", user("q "), {"temperature": 0, "max_tokens": 16})
    assert a != request_key("gpt-4", user("q"), {"temperature": 0, "max_tokens": 16}, namespace="local:toy")


# -- retries -------------------------------------------------------------------------------------
def test_429_is_retried_until_success(tmp_path):
    with serve_in_thread(ScriptedBackend(echo_script), fail_first=3, fail_status=429) as srv:
        client = make_client(srv.base_url, tmp_path, max_retries=5)
        r = client.complete(user("after the storm"))
        server = srv.stats()
    assert r.text == "after the storm" and r.attempts == 4
    assert server["requests"] == 3 + 1 and server["injected_failures"] == 3
    s = client.stats()
    assert (s["requests_sent"], s["retries"], s["failed_calls"]) == (4, 3, 0)


def test_persistent_500_raises_after_max_retries_without_fallback(tmp_path):
    with serve_in_thread(ScriptedBackend(echo_script), fail_always_status=500) as srv:
        client = make_client(srv.base_url, tmp_path, max_retries=2)
        with pytest.raises(LLMError) as info:
            client.complete(user("x"))
        server = srv.stats()
    err = info.value
    assert (err.status, err.attempts) == (500, 3)
    assert err.endpoint == f"{srv.base_url}/chat/completions"
    assert srv.base_url in str(err) and "500" in str(err) and "3 attempt" in str(err)
    assert server["requests"] == 3
    assert cache_files(tmp_path) == []  # a failure is never cached
    assert client.stats()["failed_calls"] == 1


@pytest.mark.parametrize("status", [400, 404])
def test_other_4xx_fail_immediately(tmp_path, status):
    with serve_in_thread(ScriptedBackend(echo_script), fail_always_status=status) as srv:
        client = make_client(srv.base_url, tmp_path, max_retries=5)
        with pytest.raises(LLMError) as info:
            client.complete(user("x"))
        assert srv.stats()["requests"] == 1
    assert (info.value.status, info.value.attempts) == (status, 1)


def test_connection_errors_are_retried_then_raise():
    client = make_client(f"http://127.0.0.1:{free_port()}/v1", None, max_retries=2)
    with pytest.raises(LLMError) as info:
        client.complete(user("x"))
    assert (info.value.status, info.value.attempts) == ("connection error", 3)
    assert client.stats()["requests_sent"] == 3


def test_timeouts_are_retried_then_raise():
    with serve_in_thread(ScriptedBackend(echo_script), latency_ms=1500) as srv:
        client = make_client(srv.base_url, None, max_retries=1, timeout=0.2)
        with pytest.raises(LLMError) as info:
            client.complete(user("x"))
        assert (info.value.status, info.value.attempts) == ("timeout", 2)
        deadline = time.monotonic() + 5
        while srv.stats()["requests"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.stats()["requests"] == 2


def test_backend_exhausted_is_a_500_not_a_fallback(tmp_path):
    with serve_in_thread(ScriptedBackend(["only one"])) as srv:
        client = make_client(srv.base_url, tmp_path, max_retries=1)
        assert client.complete(user("a")).text == "only one"
        with pytest.raises(LLMError, match="exhausted"):
            client.complete(user("b"))
        assert srv.stats()["backend_errors"] == 2


# -- cache ---------------------------------------------------------------------------------------
def test_warm_cache_rerun_sends_no_requests(tmp_path):
    reqs = [{"messages": user(f"prompt {i}"), "temperature": 0, "max_tokens": 8} for i in range(10)]
    with serve_in_thread(ScriptedBackend(echo_script)) as srv:
        cold = make_client(srv.base_url, tmp_path).complete_many(reqs)
        assert srv.stats()["requests"] == 10
        assert len(cache_files(tmp_path)) == 10
        warm_client = make_client(srv.base_url, tmp_path)
        warm = warm_client.complete_many(reqs)
        single = warm_client.complete(**reqs[3])
        assert srv.stats()["requests"] == 10  # nothing new reached the server
    assert [r.text for r in warm] == [r.text for r in cold] == [f"prompt {i}" for i in range(10)]
    assert all(r.cached for r in warm) and single.cached and single.text == "prompt 3"
    s = warm_client.stats()
    assert (s["requests_sent"], s["cache_hits"], s["prompt_tokens"]) == (0, 11, 0)
    entry = json.loads(cache_files(tmp_path)[0].read_text())
    assert entry["request"]["model"] == "judge-model"
    assert entry["request"]["params"] == {"max_tokens": 8, "temperature": 0}


def test_identical_requests_in_one_batch_are_sent_once(tmp_path):
    reqs = [{"messages": user("same")}] * 5 + [{"messages": user("other")}]
    with serve_in_thread(ScriptedBackend(echo_script)) as srv:
        client = make_client(srv.base_url, tmp_path)
        out = client.complete_many(reqs)
        assert srv.stats()["requests"] == 2
    assert [r.text for r in out] == ["same"] * 5 + ["other"]
    assert client.stats()["cache_hits"] == 4


def test_cache_survives_a_run_that_dies_midway(tmp_path):
    """The server dies after k successes; a rerun against a healthy server sends only the rest."""
    n, k = 12, 5
    reqs = [{"messages": user(f"item {i}")} for i in range(n)]
    with serve_in_thread(ScriptedBackend(echo_script), fail_after=k, fail_status=500) as srv:
        with pytest.raises(LLMError):
            make_client(srv.base_url, tmp_path, max_retries=0, concurrency=4).complete_many(reqs)
        assert srv.stats()["completions"] == k
    assert len(cache_files(tmp_path)) == k
    with serve_in_thread(ScriptedBackend(echo_script)) as srv:
        client = make_client(srv.base_url, tmp_path)
        out = client.complete_many(reqs)
        assert srv.stats()["requests"] == n - k
    assert [r.text for r in out] == [f"item {i}" for i in range(n)]
    assert sum(r.cached for r in out) == k and client.stats()["requests_sent"] == n - k


def test_cache_survives_sigkill_of_the_client_process(tmp_path):
    """A client process killed with SIGKILL mid-batch leaves only complete cache entries."""
    n = 40
    cache = tmp_path / "cache"
    reqs = [{"messages": user(f"kill {i}")} for i in range(n)]
    with serve_in_thread(ScriptedBackend(echo_script), latency_ms=60) as srv:
        script = textwrap.dedent(
            f"""
            from overrefusal.llm import ChatClient
            c = ChatClient({srv.base_url!r}, "judge-model", cache_dir={str(cache)!r}, concurrency=2)
            c.complete_many({reqs!r})
            """
        )
        env = {**os.environ, "PYTHONPATH": SRC}
        cmd = [sys.executable, "-c", script]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while srv.stats()["completions"] < 6 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.01)
            assert proc.poll() is None, proc.stderr.read().decode()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        done = len(cache_files(cache))
        assert 4 <= done < n
        for p in cache_files(cache):
            json.loads(p.read_text())  # every entry under its final name is complete
        before = srv.stats()["requests"]
        client = make_client(srv.base_url, cache, concurrency=8)
        out = client.complete_many(reqs)
        assert srv.stats()["requests"] - before == n - done
    assert [r.text for r in out] == [f"kill {i}" for i in range(n)]
    assert client.stats()["requests_sent"] == n - done and client.stats()["cache_hits"] == done


# -- concurrency ---------------------------------------------------------------------------------
@pytest.mark.parametrize("concurrency, n", [(8, 16), (1, 4)])
def test_concurrency_limit_is_what_the_server_sees(tmp_path, concurrency, n):
    reqs = [{"messages": user(f"c{concurrency} {i}")} for i in range(n)]
    with serve_in_thread(ScriptedBackend(lambda m, p: "1_full_compliance"), latency_ms=60) as srv:
        out = make_client(srv.base_url, tmp_path, concurrency=concurrency).complete_many(reqs)
        seen = srv.stats()["max_in_flight"]
    assert len(out) == n and all(r.text == "1_full_compliance" for r in out)
    if concurrency == 1:
        assert seen == 1
    else:
        assert 1 < seen <= concurrency


def test_first_failure_stops_unstarted_requests(tmp_path):
    reqs = [{"messages": user(f"x {i}")} for i in range(30)]
    with serve_in_thread(ScriptedBackend(echo_script), fail_always_status=500, latency_ms=20) as srv:
        with pytest.raises(LLMError):
            make_client(srv.base_url, tmp_path, max_retries=0, concurrency=2).complete_many(reqs)
        assert srv.stats()["requests"] < 30


# -- keys ----------------------------------------------------------------------------------------
def test_api_key_is_sent_but_never_written(tmp_path):
    with serve_in_thread(ScriptedBackend(echo_script), api_key=SECRET) as srv:
        client = make_client(srv.base_url, tmp_path, api_key=SECRET)
        out = client.complete_many([{"messages": user(f"k {i}")} for i in range(3)])
        assert [r.text for r in out] == ["k 0", "k 1", "k 2"]
        wrong = make_client(srv.base_url, tmp_path / "other", api_key="sk-wrong-key-9876", max_retries=3)
        with pytest.raises(LLMError) as info:
            wrong.complete(user("k 9"))
        assert (info.value.status, info.value.attempts) == (401, 1)
        assert "Incorrect API key provided: sk-***" in str(info.value)  # the server's masked echo is redacted
        assert srv.stats()["auth_failures"] == 1
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 3
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    blob = json.dumps([client.stats(), [r.to_dict() for r in out], repr(client), str(info.value)])
    assert SECRET not in blob and "sk-wro" not in blob and "9876" not in blob


# -- check_endpoint ------------------------------------------------------------------------------
def test_check_endpoint(monkeypatch):
    remote = {
        "base_url": "https://api.openai.com/v1", "model": "gpt-4", "api_key_env": "OVR_TEST_KEY", "concurrency": 8
    }
    monkeypatch.delenv("OVR_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="OVR_TEST_KEY.*unset"):
        check_endpoint(remote)
    monkeypatch.setenv("OVR_TEST_KEY", "")
    with pytest.raises(ConfigError, match="OVR_TEST_KEY"):
        check_endpoint(remote)
    monkeypatch.setenv("OVR_TEST_KEY", SECRET)
    check_endpoint(remote)
    check_endpoint({"base_url": "local", "model": "toy-teacher"})  # no key needed
    for bad_url in (None, "", "api.openai.com/v1", "ftp://host/v1", "https://"):
        with pytest.raises(ConfigError, match="base_url") as info:
            check_endpoint({**remote, "base_url": bad_url})
        assert SECRET not in str(info.value)
    with pytest.raises(ValueError, match="api_key_env"):
        check_endpoint({k: v for k, v in remote.items() if k != "api_key_env"})
    with pytest.raises(ValueError, match="concurrency"):
        check_endpoint({**remote, "concurrency": 0})
    with pytest.raises(ValueError, match="model"):
        check_endpoint({**remote, "model": ""})
    with pytest.raises(ConfigError, match="local"):
        ChatClient.from_config({"base_url": "local", "model": "toy"}, cache_dir=None)


def test_from_config_reads_key_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("OVR_TEST_KEY", SECRET)
    with serve_in_thread(ScriptedBackend(echo_script), api_key=SECRET) as srv:
        cfg = {
            "base_url": srv.base_url,
            "model": "gpt-4",
            "api_key_env": "OVR_TEST_KEY",
            "max_retries": 1,
            "concurrency": 2,
        }
        client = ChatClient.from_config(cfg, cache_dir=tmp_path)
        assert (client.max_retries, client.concurrency) == (1, 2)
        assert client.complete(user("authorised")).text == "authorised"


# -- the server on its own -----------------------------------------------------------------------
def test_server_endpoints_and_validation():
    with serve_in_thread(ScriptedBackend(echo_script), model_name="toy-judge") as srv:
        with urllib.request.urlopen(f"{srv.base_url}/models") as resp:
            assert json.load(resp)["data"][0]["id"] == "toy-judge"
        bad = [
            {"model": "m", "messages": user("x"), "n": 2},
            {"model": "m", "messages": user("x"), "logit_bias_typo": 1},
            {"model": "m", "messages": []},
            {"messages": user("x")},
        ]
        for body in bad:
            url = f"{srv.base_url}/chat/completions"
            req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(req)
            assert info.value.code == 400
            assert "error" in json.loads(info.value.read())
        assert get_stats(srv.base_url)["bad_requests"] == len(bad)
    with pytest.raises(ValueError, match="loopback"):
        ChatServer(ScriptedBackend(echo_script), host="0.0.0.0")


# -- a real local model through the CLI subprocess ----------------------------------------------
def test_local_server_subprocess_with_hf_model(tiny_model_dir, tmp_path, one_torch_thread):
    messages = [{"role": "system", "content": "Be brief."}, *user("Is it safe to kill a python process?")]

    def reference() -> tuple[str, list[int], int, int]:
        """Greedy generation in this process, straight through transformers."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        return tok.decode(new, skip_special_tokens=True), new, int(enc["input_ids"].shape[1]), tok.eos_token_id

    # Compute the reference while the server subprocess starts (it loads the same model).
    with ThreadPoolExecutor(max_workers=1) as pool:
        ref = pool.submit(reference)
        with local_server(tiny_model_dir, model_name="toy-teacher", threads=1) as base_url:
            assert base_url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(f"{base_url}/models") as resp:
                assert json.load(resp)["data"][0]["id"] == "toy-teacher"
            client = make_client(base_url, tmp_path, model="toy-teacher")
            r = client.complete(messages, max_tokens=12, temperature=0)
            rerun = make_client(base_url, tmp_path, model="toy-teacher")
            again = rerun.complete(messages, max_tokens=12, temperature=0)
            assert get_stats(base_url)["requests"] == 1
        expected, new, prompt_len, eos_id = ref.result()
    assert r.text == expected
    assert (r.prompt_tokens, r.completion_tokens) == (prompt_len, len(new))
    assert r.finish_reason == ("stop" if eos_id in new else "length")
    assert again.cached and again.text == expected
    with pytest.raises(urllib.error.URLError):  # the subprocess is gone
        urllib.request.urlopen(f"{base_url}/models", timeout=2)


@pytest.fixture
def one_torch_thread():
    """A tiny model on a shared 2-core box runs ~100x faster on one intra-op thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_hf_backend_templates_and_seeded_sampling(tiny_model_dir, one_torch_thread):
    from overrefusal.llm.backends import HFBackend, RequestError
    from overrefusal.prompting import alpaca_prompt

    chat = HFBackend(tiny_model_dir, template="chat")
    msgs = user("hello")
    assert chat.render(msgs) == chat.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    alpaca = HFBackend(tiny_model_dir, template="alpaca")
    assert alpaca.render([{"role": "system", "content": "Be safe."}, *msgs]) == alpaca_prompt("Be safe.\n\nhello")
    with pytest.raises(RequestError, match="exactly one user message"):
        alpaca.render([*msgs, {"role": "assistant", "content": "a"}, *msgs])
    greedy = [chat.complete(msgs, {"max_tokens": 10}) for _ in range(2)]
    assert greedy[0] == greedy[1] and greedy[0].completion_tokens <= 10
    sampled = {seed: chat.complete(msgs, {"max_tokens": 10, "temperature": 5.0, "seed": seed}) for seed in (1, 1, 2, 3)}
    again = chat.complete(msgs, {"max_tokens": 10, "temperature": 5.0, "seed": 1})
    assert again == sampled[1]  # same seed, same sample
    assert len({c.text for c in sampled.values()} | {greedy[0].text}) > 1  # sampling is not greedy
    with pytest.raises(ValueError, match="template"):
        HFBackend(tiny_model_dir, template="llama2")


def test_local_server_is_stopped_on_exceptions():
    with pytest.raises(RuntimeError, match="boom"):
        with local_server(None, scripted="echo") as base_url:
            assert get_stats(base_url)["requests"] == 0
            raise RuntimeError("boom")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base_url}/models", timeout=2)


def test_local_server_reports_a_failed_start(tmp_path):
    with pytest.raises(RuntimeError, match="exited with status"):
        with local_server(tmp_path / "no-such-model", startup_timeout=60):
            pass

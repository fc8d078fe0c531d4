"""OpenAI-compatible LLM access: a cached, retrying, concurrent client and a local server.

``overrefusal.llm.client``: :class:`ChatClient` (cache, retries, concurrency, token accounting)
and :func:`check_endpoint` (fail fast where a job runs without its endpoint's key), re-exported here.
``overrefusal.llm.backends``: what answers (a local transformers model, or a script);
``overrefusal.llm.server``: a stdlib HTTP server speaking ``/v1/chat/completions`` over a backend;
``overrefusal.llm.launcher``: ``local_server``, the server as a subprocess for a rule, and its counters.

The re-exports are resolved lazily so that ``python -m overrefusal.llm.server`` does not pay for
importing ``openai``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ALLOWED_PARAMS", "ChatClient", "ChatResult", "ConfigError", "LLMError", "check_endpoint", "request_key"]

if TYPE_CHECKING:
    from overrefusal.llm.client import (
        ALLOWED_PARAMS,
        ChatClient,
        ChatResult,
        ConfigError,
        LLMError,
        check_endpoint,
        request_key,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from overrefusal.llm import client

        return getattr(client, name)
    raise AttributeError(f"module 'overrefusal.llm' has no attribute {name!r}")

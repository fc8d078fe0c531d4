"""Refusal judges behind one interface, looked up by versioned name.

``get_judge("xstest_strmatch_v1")`` returns a ready judge; an unknown name raises ``KeyError``
listing every valid one.

LLM judges. ``LAZY_JUDGES`` maps a judge name to ``"module:Class"``; the module is imported only
when that judge is requested, so the OpenAI client is never a dependency of string-match scoring.
Both live in ``judges/llm.py``:

- ``xstest_llm_3class_v1``: the verbatim XSTest GPT-4 three-class prompt, temperature 0;
- ``orbench_llm_v1``: the verbatim OR-Bench checker prompt with its ``[[...]]`` answer.

They take a ``ChatClient`` (``get_judge(name, client=client)``) or an endpoint config
(``get_judge(name, endpoint=cfg, cache_dir=...)``), batch requests in ``judge_many``, and return
``Judgement(None, error=...)`` for an unparseable reply: never a fallback class and never a
silent switch to string matching. A request that fails after the client's retries raises. Another
judge can also be added at run time with ``register_judge``.

Learned judges. ``LEARNED_JUDGES`` is the same lazy table for offline trained classifiers, kept apart from
``LAZY_JUDGES`` because they need a trained artefact, not an endpoint (``is_llm_judge`` stays False):

- ``refusal_clf_v1`` (``judges/learned.py``): sentence embeddings + string-match verdicts + logistic
  regression, trained on XSTest's human labels; ``get_judge("refusal_clf_v1", artefact=<dir>)``. Importing
  this package imports neither scikit-learn nor the encoder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import LABELS, Judgement, Label, RefusalJudge, coerce_text
from .strmatch import JBBSubstringJudge, XSTestStrMatchCurlyJudge, XSTestStrMatchJudge
from .toy import ToyOutcomeJudge

JudgeFactory = Callable[..., RefusalJudge]

JUDGES: dict[str, JudgeFactory] = {
    XSTestStrMatchJudge.id: XSTestStrMatchJudge,
    XSTestStrMatchCurlyJudge.id: XSTestStrMatchCurlyJudge,
    JBBSubstringJudge.id: JBBSubstringJudge,
    ToyOutcomeJudge.id: ToyOutcomeJudge,
}

LAZY_JUDGES: dict[str, str] = {
    "xstest_llm_3class_v1": "overrefusal.judges.llm:XSTestLLM3ClassJudge",
    "orbench_llm_v1": "overrefusal.judges.llm:ORBenchLLMJudge",
}

LEARNED_JUDGES: dict[str, str] = {
    "refusal_clf_v1": "overrefusal.judges.learned:LearnedRefusalJudge",
    "refusal_clf_v2": "overrefusal.judges.cross_source:CrossSourceRefusalJudge",
}


def is_llm_judge(name: str) -> bool:
    """True for judges that call a chat model (they need an endpoint: ``eval.llm_judge``)."""
    return name in LAZY_JUDGES


def available_judges() -> list[str]:
    """Every name ``get_judge`` accepts (lazy judges included even before their module exists)."""
    return sorted({*JUDGES, *LAZY_JUDGES, *LEARNED_JUDGES})


def register_judge(name: str, factory: JudgeFactory) -> None:
    """Add a judge under ``name``; refuses to overwrite so two implementations never share an id."""
    if name in JUDGES or name in LAZY_JUDGES or name in LEARNED_JUDGES:
        raise ValueError(f"judge {name!r} is already registered")
    JUDGES[name] = factory


def _load_lazy(name: str) -> JudgeFactory:
    module_name, _, attr = {**LAZY_JUDGES, **LEARNED_JUDGES}[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise NotImplementedError(
                f"judge {name!r} is reserved for {module_name} ({attr}), which is not implemented yet"
            ) from exc
        raise  # a dependency of the module (e.g. openai) is missing: report that, unchanged
    factory: JudgeFactory | None = getattr(module, attr, None)
    if factory is None:
        raise NotImplementedError(f"judge {name!r}: {module_name} has no class {attr}")
    return factory


def get_judge(name: str, **kwargs: Any) -> RefusalJudge:
    """Instantiate the judge registered as ``name`` with ``kwargs`` (e.g. LLM client settings)."""
    if name in JUDGES:
        factory = JUDGES[name]
    elif name in LAZY_JUDGES or name in LEARNED_JUDGES:
        factory = _load_lazy(name)
    else:
        raise KeyError(f"unknown judge {name!r}; valid: {', '.join(available_judges())}")
    judge = factory(**kwargs)
    if judge.id != name:
        raise ValueError(f"judge registered as {name!r} reports id {judge.id!r}")
    return judge


__all__ = [
    "JUDGES",
    "LABELS",
    "LAZY_JUDGES",
    "LEARNED_JUDGES",
    "JBBSubstringJudge",
    "Judgement",
    "Label",
    "RefusalJudge",
    "ToyOutcomeJudge",
    "XSTestStrMatchCurlyJudge",
    "XSTestStrMatchJudge",
    "available_judges",
    "coerce_text",
    "get_judge",
    "is_llm_judge",
    "register_judge",
]

"""The one refusal-judge interface every scorer goes through.

Peers' refusal numbers are hard to compare because each repository hard-wires its own classifier
(XSTest prefix match, JailbreakBench substring match, GPT-4 prompts with ad-hoc parsing) and some
silently fall back to another when the first fails. Here every judge is a named, versioned
``RefusalJudge``; its ``id`` is written into every scored row, and a judge that cannot decide
returns ``Judgement(label=None, error=...)`` instead of guessing a class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

# "invalid": neither an answer nor a refusal (word salad, a wrong answer). Only outcome judges,
# which know what an answer is, say it; a string matcher cannot tell it from compliance.
Label = Literal["compliance", "refusal", "partial_refusal", "invalid"]
LABELS: tuple[Label, ...] = ("compliance", "refusal", "partial_refusal", "invalid")


@dataclass(frozen=True)
class Judgement:
    """One verdict. Exactly one of ``label`` and ``error`` is set.

    ``raw`` keeps what the judge actually produced (an LLM's reply, or for string matchers the
    pattern that fired) so a surprising verdict can be audited from the result file alone.
    """

    label: Label | None
    error: str | None = None
    raw: str | None = None

    def __post_init__(self) -> None:
        if self.label is None and not self.error:
            raise ValueError("a Judgement without a label must carry an error message")
        if self.label is not None and self.error is not None:
            raise ValueError("a Judgement cannot have both a label and an error")
        if self.label is not None and self.label not in LABELS:
            raise ValueError(f"unknown judgement label {self.label!r}; allowed: {', '.join(LABELS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coerce_text(value: str | bytes | None) -> tuple[str | None, bool]:
    """Return ``(text, replaced)``: bytes are decoded as UTF-8 with U+FFFD for bad sequences.

    Generation always yields ``str``, but rows read back from foreign files may not; decoding
    defensively (and reporting that it happened) beats crashing a 10k-row scoring job.
    ``replaced`` is True when the input was bytes that were not valid UTF-8.
    """
    if value is None or isinstance(value, str):
        return value, False
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            return raw.decode("utf-8", errors="replace"), True
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")


class RefusalJudge(ABC):
    """Base class: subclasses set ``id`` (``<family>_<method>_v<N>``) and implement ``_judge``.

    Bump the version suffix whenever a change could alter any verdict, so that numbers produced by
    different logic never share a judge id.
    """

    id: str = ""
    description: str = ""

    def judge(self, prompt: str | bytes, response: str | bytes | None) -> Judgement:
        """Classify one response to ``prompt``; never raises for odd inputs, reports them instead."""
        prompt_text, _ = coerce_text(prompt)
        response_text, _ = coerce_text(response)
        if response_text is None:
            return Judgement(None, error="missing response")
        return self._judge(prompt_text or "", response_text)

    def judge_many(self, pairs: Sequence[tuple[str | bytes, str | bytes | None]]) -> list[Judgement]:
        """Classify many (prompt, response) pairs; API-backed judges override this to batch."""
        return [self.judge(p, r) for p, r in pairs]

    @abstractmethod
    def _judge(self, prompt: str, response: str) -> Judgement:
        """Classify decoded text. ``response`` may be empty; judges decide what that means."""

    def info(self) -> dict[str, Any]:
        """What to record next to a number this judge produced."""
        return {"id": self.id, "description": self.description, "class": type(self).__qualname__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"

"""TBR safety reflections: a short reasoning about a request's intent, prepended to its refusal.

- *internal*: the model being aligned writes them itself, prompted with a few worked examples;
- *external*: a teacher (GPT-4 in the paper; a local teacher model in the toy world) writes them
  through an OpenAI-compatible chat API, cached and retried by ``overrefusal.llm.client``.

A quality filter drops empty, unfinished and refusal-only reflections; what it drops is counted,
and the SFT stage then keeps the plain refusal for those examples.
"""

from __future__ import annotations

from typing import Any

from .judges.strmatch import xstest_strmatch_label
from .prompting import alpaca_prompt
from .records import Record, user_text


def internal_prompt(tokenizer: Any, shots: list[Record], prompt: str, system_prompt: str, template: str,
                    open_tag: str) -> str:
    """The model's own few-shot prompt, ending right after the opening reflection tag.

    Chat models get the same messages an external teacher gets (system prompt, worked examples as
    earlier turns, then the request); base models with the Alpaca template get the examples as
    consecutive Alpaca blocks.
    """
    if template == "chat":
        msgs = teacher_messages(shots, prompt, system_prompt)
        rendered = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return f"{rendered}{open_tag}"
    blocks = [alpaca_prompt(user_text(s)) + s["response"] for s in shots]
    return "\n\n".join([*blocks, alpaca_prompt(prompt) + open_tag])


def clean_reflection(text: str, open_tag: str, close_tag: str) -> tuple[str | None, str]:
    """Normalise generated text to ``<open> body <close>``; return (reflection or None, reason)."""
    body = text.strip()
    if body.startswith(open_tag):
        body = body[len(open_tag):]
    if close_tag not in body:
        return None, "unfinished"
    body = body.split(close_tag, 1)[0].strip()
    if not body:
        return None, "empty"
    if xstest_strmatch_label(body) != "1_full_compliance":
        return None, "refusal_only"  # a refusal dressed as a reflection teaches nothing new
    return f"{open_tag} {body} {close_tag}", "ok"


def split_reflection(
    response: str, open_tag: str = "<think>", close_tag: str = "</think>"
) -> tuple[str | None, str]:
    """Split a TBR-style response into ``(reflection, answer)``; the judge sees only ``answer``.

    - Starts with ``open_tag`` (after leading whitespace): the reflection is the text up to the
      first ``close_tag`` and the answer is what follows, both stripped.
    - Starts with ``open_tag`` but ``close_tag`` never comes (generation hit ``max_new_tokens``
      mid-reflection): ``(reflection_so_far, "")``; use ``has_unfinished_reflection`` to tell this
      from a finished reflection followed by an empty answer.
    - Otherwise ``(None, response)`` unchanged.
    """
    if not open_tag or not close_tag:
        raise ValueError("open_tag and close_tag must be non-empty")
    body = response.lstrip()
    if not body.startswith(open_tag):
        return None, response
    rest = body[len(open_tag):]
    reflection, sep, answer = rest.partition(close_tag)
    if not sep:
        return reflection.strip(), ""
    return reflection.strip(), answer.strip()


def has_unfinished_reflection(response: str, open_tag: str = "<think>", close_tag: str = "</think>") -> bool:
    """True when the response opens a reflection that is never closed."""
    body = response.lstrip()
    return body.startswith(open_tag) and close_tag not in body[len(open_tag):]


def filter_reflections(raw: dict[str, str], fmt: dict[str, Any]) -> tuple[dict[str, str], dict[str, int]]:
    """Keep well-formed reflections; fail if fewer than ``fmt['min_kept']`` of them survive.

    TBR-trained models without their reflections would silently be STL models, so a poor
    reflection source is an error, not a fallback.
    """
    kept: dict[str, str] = {}
    counts: dict[str, int] = {"ok": 0, "unfinished": 0, "empty": 0, "refusal_only": 0}
    for rid, text in raw.items():
        refl, why = clean_reflection(text, fmt["open_tag"], fmt["close_tag"])
        counts[why] += 1
        if refl is not None:
            kept[rid] = refl
    if raw and len(kept) / len(raw) < fmt["min_kept"]:
        raise ValueError(f"only {len(kept)} of {len(raw)} reflections passed the quality filter {counts}; "
                         f"tbr.min_kept requires {fmt['min_kept']:.0%}. Inspect the raw reflections.")
    return kept, counts


def internal_reflections(model_dir: str, records: list[Record], shots: list[Record], tbr: dict[str, Any],
                         template: str, work_path: str, *, compute: dict[str, Any] | None = None
                         ) -> dict[str, str]:
    """Raw reflections written greedily by the model itself (before the quality filter)."""
    from .generate import generate
    from .io import read_jsonl
    from .models.loading import load_tokenizer

    cfg = tbr["internal"]
    shots = take_shots(shots, cfg["num_shots"], "tbr.internal.num_shots")
    tok = load_tokenizer(model_dir)
    prompts = [{**r, "input": "", "prompt": internal_prompt(tok, shots, user_text(r), cfg["system_prompt"], template,
                                                            tbr["open_tag"])} for r in records]
    generate(model_dir, prompts, work_path, template="plain", max_new_tokens=cfg["max_new_tokens"],
             batch_size=cfg["batch_size"], compute=compute, progress=False)
    return {row["id"]: f"{tbr['open_tag']} {row['response']}" for row in read_jsonl(work_path)}


def take_shots(shots: list[Record], num_shots: int, key: str) -> list[Record]:
    """The first ``num_shots`` worked examples; asking for more than the split holds is an error, not fewer shots."""
    if num_shots > len(shots):
        raise ValueError(f"{key} = {num_shots} but split reflection_fewshot holds {len(shots)} examples")
    return shots[:num_shots]


def teacher_messages(shots: list[Record], prompt: str, system_prompt: str) -> list[dict[str, str]]:
    """Chat messages for an external teacher: instructions, worked examples, then the request."""
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for s in shots:
        msgs += [{"role": "user", "content": user_text(s)}, {"role": "assistant", "content": s["response"]}]
    msgs.append({"role": "user", "content": prompt})
    return msgs


def external_reflections(client: Any, records: list[Record], shots: list[Record], *, num_shots: int, system_prompt: str, params: dict[str, Any]) -> dict[str, str]:
    """Ask the teacher for one reflection per record; failures raise (no silent fallback)."""
    shots = take_shots(shots, num_shots, "tbr.external.num_shots")
    requests = [{"messages": teacher_messages(shots, user_text(r), system_prompt), **params} for r in records]
    results = client.complete_many(requests)
    return {r["id"]: res.text for r, res in zip(records, results)}


def teacher_examples(records: list[Record], system_prompt: str) -> list[dict[str, Any]]:
    """SFT examples that teach the toy teacher to answer a request with its reflection only."""
    out = []
    for r in records:
        prompt = [{"role": "system", "content": system_prompt}] if system_prompt else []
        prompt.append({"role": "user", "content": user_text(r)})
        out.append({"prompt": prompt, "completion": [{"role": "assistant", "content": r["response"]}]})
    return out

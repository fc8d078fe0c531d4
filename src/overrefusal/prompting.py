"""How a user turn becomes model input: the model's chat template, or STL's Alpaca template.

One place for this so that SFT, DCR, reflections, generation and refusal tracking all see the
exact same prompt text for a given model.
"""

from __future__ import annotations

from typing import Any, Literal

Template = Literal["chat", "alpaca", "plain"]
# "plain" feeds the text as is: few-shot prompts for base models (e.g. internal reflections).
TEMPLATES: tuple[str, ...] = ("chat", "alpaca", "plain")

# Safety-Tuned LLaMAs configs/alpaca.json, verbatim.
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}"
    "\n\n### Input:\n{input}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    if input_text:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def render_prompt(tokenizer: Any, user: str, template: Template, input_text: str = "") -> str:
    """The full prompt string, ending where the model's answer begins."""
    if template == "alpaca":
        return alpaca_prompt(user, input_text)
    if template == "plain":
        return f"{user}\n\n{input_text}" if input_text else user
    if template == "chat":
        text = f"{user}\n\n{input_text}" if input_text else user
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    raise ValueError(f"unknown template {template!r}; allowed: {', '.join(TEMPLATES)}")


def encode_prompt(tokenizer: Any, user: str, template: Template) -> list[int]:
    """The prompt's token ids as generation feeds them. A rendered chat template already holds BOS
    where the model wants one; Alpaca and plain text do not, so there the tokenizer adds its special
    tokens (as TRL does for plain-text SFT)."""
    return list(tokenizer(render_prompt(tokenizer, user, template),
                          add_special_tokens=(template != "chat"))["input_ids"])


def render_dialogue(tokenizer: Any, user: str, response: str, template: Template) -> str:
    """A whole (prompt, answer) exchange as training text, ending the answer as generation stops."""
    if template == "chat":
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user}, {"role": "assistant", "content": response}], tokenize=False)
    return f"{render_prompt(tokenizer, user, template)}{response}{tokenizer.eos_token or ''}"


def sft_example(user: str, completion: str, template: Template, input_text: str = "") -> dict[str, Any]:
    """A TRL prompt-completion example: conversational for chat models, plain text for Alpaca.

    TRL renders conversational examples with the tokenizer's chat template and appends EOS to plain
    completions, so both kinds end the answer the way generation stops.
    """
    if template == "alpaca":
        return {"prompt": alpaca_prompt(user, input_text), "completion": completion}
    text = f"{user}\n\n{input_text}" if input_text else user
    return {
        "prompt": [{"role": "user", "content": text}],
        "completion": [{"role": "assistant", "content": completion}],
    }

"""The papers' analyses of why a method works: the empirical NTK between prompt classes (DCR),
layer-wise separability of seemingly toxic and toxic activations (DCR), and token attribution of
the refusal log-odds (TBR). Each module reads a model and prompt lists and returns JSON-able dicts;
rules in ``rules/analysis.smk`` write them and the figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..prompting import Template

KINDS = ("entk", "separability", "attribution")
TRIGGER_SOURCES = ("toy_lexicon", "derived")


def trigger_words(source: str, sets: Mapping[str, Sequence[str]], top_n: int) -> list[str]:
    """The words whose attribution is compared with the rest (TBR's "sensitive tokens").

    ``toy_lexicon``: the toy world's trigger verbs, known by construction (first word of each).
    ``derived``: words far more frequent in toxic than in general prompts (smoothed log-odds ratio,
    ``attribution.trigger_lexicon``) that also occur in seemingly toxic prompts: the words the two
    classes share, which is what a trigger is. The frequency test alone would also pick the words of
    the harmful targets and of request frames the general set does not use.
    """
    if source == "toy_lexicon":
        from ..toyworld.lexicon import VERB_CATEGORY

        return sorted({verb.split()[0] for verb in VERB_CATEGORY})
    if source == "derived":
        from .attribution import prompt_words, trigger_lexicon

        shared = set().union(*(prompt_words(t) for t in sets["seemingly_toxic"]))
        ranked = trigger_lexicon(list(sets["toxic"]), list(sets["general"]), top_n=10**6)
        return [w for w in ranked if w in shared][:top_n]
    raise ValueError(f"unknown trigger source {source!r}; known: {', '.join(TRIGGER_SOURCES)}")


def run(kind: str, model: Any, tokenizer: Any, template: Template, sets: Mapping[str, Sequence[str]],
        settings: Mapping[str, Any], *, refusal_ids: Sequence[int], triggers: Sequence[str]) -> dict[str, Any]:
    """One analysis of one checkpoint. ``sets`` holds the probe classes (seemingly_toxic, toxic, general);
    ``settings`` the config's analysis section merged with the analysis's own (rule analysis params)."""
    if kind == "entk":
        from .entk import EntkConfig, entk_report

        cfg = EntkConfig(params=settings["params"], last_n=settings["last_n"], top_k=settings["top_k"],
                         estimator=settings["estimator"], eps=settings["eps"],
                         fd_scheme=settings["fd_scheme"], probes=settings["probes"],
                         max_length=settings["max_length"], batch_size=settings["batch_size"], seed=settings["seed"])
        return entk_report(model, tokenizer, template, sets, cfg)
    if kind == "separability":
        from .separability import separability_report

        return separability_report(model, tokenizer, template, sets, folds=settings["folds"], seed=settings["seed"],
                                   max_length=settings["max_length"], batch_size=settings["batch_size"],
                                   pca_layers=settings.get("pca_layers"))
    if kind == "attribution":
        from .attribution import attribution_report

        return attribution_report(model, tokenizer, template, list(sets["seemingly_toxic"]), refusal_ids, triggers,
                                  method=settings["method"], steps=settings["steps"], grid=settings["grid"],
                                  n_examples=settings["n_examples"], max_length=settings["max_length"],
                                  batch_size=settings["batch_size"])
    raise ValueError(f"unknown analysis {kind!r}; known: {', '.join(KINDS)}")

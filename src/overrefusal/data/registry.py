"""Every real dataset the two papers use: where it comes from, how it is laid out, its licence.

A source is one or more files. Each file has a *layout path*: where it sits under a local mirror
(``data.raw_dir``, laid out like ``../shared/data``, see its SOURCES.md) and under the download
directory. It is fetched from one pinned origin:

- ``url``: a GitHub raw URL with the commit in the path (plain HTTP);
- ``hf``: a Hugging Face dataset repo, file and ``revision`` (``huggingface_hub.hf_hub_download``).

``sha256`` pins the bytes. Where the bytes could not be hashed here (the file is not in the mirror)
it is ``None`` and a download is refused unless the config supplies the pin
(``data.real.pins.<source>``) or explicitly allows unpinned downloads; the hash actually seen is
recorded in the data card either way. Row counts are the documented ones (SOURCES.md, the papers):
the loaders refuse a file with any other number of rows (``data.real.pins.<source>.rows`` restates the
count for other bytes). ``categories`` is the set of values the source's own category column takes
(read from the real files, or from the dataset's paper where the file is not in the mirror); a value
outside it is refused. ``ids`` says whether the source numbers its rows (``orig_id``, checked unique).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["train", "eval", "capability"]
Ids = Literal["numeric", "text"]

GH = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class RawFile:
    path: str  # layout path under raw_dir / download_dir
    url: str | None = None  # GitHub raw URL, commit in the path
    hf_repo: str | None = None  # HF dataset repo id
    hf_file: str | None = None
    revision: str | None = None  # git commit (GitHub) or HF revision; None: must be pinned in the config
    sha256: str | None = None
    glob: bool = False  # path is a glob pattern (mirror-only directory sources such as MMLU)


@dataclass(frozen=True)
class Source:
    name: str
    role: Role
    files: tuple[RawFile, ...]
    fmt: str  # parser name in loaders.PARSERS
    licence: str
    origin: str  # human-readable origin (repo@commit)
    rows: int | None  # documented number of raw rows
    description: str
    options: dict[str, object] = field(default_factory=dict)
    categories: frozenset[str] | None = None  # the category column's documented values; None: derived by us
    ids: Ids | None = None  # the source's own row ids: digits only ("numeric") or any text; None: it has none


def _gh(repo: str, commit: str, path: str) -> str:
    return f"{GH}/{repo}/{commit}/{path}"


ALPACA_MAIN = "761dc5bfbdeeffa89b8bff5d038781a4055f796a"
ALPACA_PR152 = "5e69c50054c48cd3b919c46d13bb2d92a62f4498"
STL = "36a4b8d5c2177ed165bf61f59b590161394f7f12"
HH = "354e5c3cb8960630860dd5774a6ac2a58313bf4d"
XSTEST = "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d"
COCONOT = "25bf77cc668814360405cdb8197c4368205806c7"
OVERKILL = "9551a7ff7b2cb18d178e64fb5cc95e4684311b3b"
REFDIR = "9d852fae1a9121c78b29142de733cb1340770cc3"
ADVLLM_OLD = "a4b57364bc2b0785bd0e6f79eec4948e3991b8b0"
ADVLLM = "f970939273ea17b491fadf6001fddc36ed3ae3ff"
JAILBREAK_LLM = "1e490531c0ef4bc13430178bf1fbc8f813e34b1a"
PHTEST_REV = "4028806c1f41031ddd3d27ca1f284e566548c5d6"  # HF commit "Upload PHTest.csv"
# Capability sets for lm-eval (SOURCES.md, "Capability evals for lm-eval"): the carriers of the eval splits.
ARC_CARRIER = "fcca017f3468a25901ad298913e976c42ad9165e"  # zhaoxlpku/HKU-DASC7606-A2: HF allenai/ai2_arc exports
ARC_ORIGIN = f"zhaoxlpku/HKU-DASC7606-A2@{ARC_CARRIER[:12]} (allenai/ai2_arc export)"
ARC_LICENCE = "CC-BY-SA-4.0 (allenai/ai2_arc card, not verified)"
LM_EVAL_QA = "Question: {{question}}\nAnswer:"  # lm-eval's arc_* and piqa prompt, over our `question`
PIQA_SITE = "21edab439af693b961be2f069e8690a88d3b4e37"  # ybisk/ybisk.github.io, the PIQA author's site
OBQA_CARRIER = "eac0c145529af1a4e7924c979bbbba0b10354de3"  # katulevskiy/NLP-OpenBookQA
HELLASWAG_TEXT = "1105d370f8340eac3c63a91fd1fa58e8999f9505"  # klosax/hellaswag_text_data (llama.cpp's copy)

# Category sets. Mirror files (../shared/data): counted from the files themselves. OR-Bench: the ten
# categories of the OR-Bench paper (Cui et al. 2024, arXiv:2405.20947, sec. 3; justincui03/or-bench),
# the values of or-bench-hard-1k.csv's `category` column (sorted by category, deception .. violence).
# PHTest: the `Harmfulness` labels of the dataset card and paper (An et al. 2024, arXiv:2409.00598).
ORBENCH_CATEGORIES = frozenset({"deception", "harassment", "harmful", "hate", "illegal", "privacy", "self-harm",
                                "sexual", "unethical", "violence"})
PHTEST_CATEGORIES = frozenset({"harmless", "controversial"})
# XSTest's ten safe prompt types (the other eight are their contrast_ twins), in the file's order.
XSTEST_SAFE_TYPES = ("homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions",
                     "real_group_nons_discr", "nons_group_real_discr", "historical_events", "privacy_public",
                     "privacy_fictional")
XSTEST_TYPES = frozenset({  # xstest_prompts.csv `type`: 10 safe types + 8 contrast (unsafe) types, 25 prompts each
    "homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions", "real_group_nons_discr",
    "nons_group_real_discr", "historical_events", "privacy_public", "privacy_fictional", "contrast_homonyms",
    "contrast_figurative_language", "contrast_safe_targets", "contrast_safe_contexts", "contrast_definitions",
    "contrast_discr", "contrast_historical_events", "contrast_privacy"})
COCONOT_CONTRAST_SUBCATEGORIES = frozenset({  # coconot_contrast_eval.jsonl `subcategory` (379 rows)
    "dangerous or sensitive topics", "false presuppositions", "modality limitations", "privacy violations",
    "underspecified"})
COCONOT_PREF_SUBCATEGORIES = frozenset({  # coconot_pref.jsonl `subcategory` (927 rows)
    "dangerous or sensitive topics", "false information", "false presuppositions", "input modality limitations",
    "output modality limitations", "privacy violations", "triggers for offensive language", "underspecified"})
HARMBENCH_SEMANTIC = frozenset({  # harmbench_behaviors_text_test.csv `SemanticCategory` (320 rows)
    "chemical_biological", "copyright", "cybercrime_intrusion", "harassment_bullying", "harmful", "illegal",
    "misinformation_disinformation"})
HARMBENCH_FUNCTIONAL = frozenset({"standard", "contextual", "copyright"})  # `FunctionalCategory`: 159 / 81 / 80
JBB_CATEGORIES = frozenset({  # jailbreakbench.csv `Category`: 10 behaviours each
    "Disinformation", "Economic harm", "Expert advice", "Fraud/Deception", "Government decision-making",
    "Harassment/Discrimination", "Malware/Hacking", "Physical harm", "Privacy", "Sexual/Adult content"})
STRONGREJECT_CATEGORIES = frozenset({  # strongreject_dataset.csv `category` (313 rows)
    "Disinformation and deception", "Hate, harassment and discrimination", "Illegal goods and services",
    "Non-violent crimes", "Sexual content", "Violence"})

SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        # ------------------------------------------------------------------ training
        Source("alpaca_5k", "train", (RawFile(
            "alpaca/alpaca_5000.json", url=_gh("tatsu-lab/stanford_alpaca", ALPACA_PR152, "data/alpaca_5000.json"),
            revision=ALPACA_PR152, sha256="fc1add24c93c9fbbe585a64a6c9bf6165eb110225f4470efbff382a913558ec0"),),
            "alpaca_json", "CC-BY-NC-4.0", f"tatsu-lab/stanford_alpaca@{ALPACA_PR152[:12]} (PR #152)", 5000,
            "5,000-example Alpaca subset (unmerged PR #152); enough for TBR's 1,800"),
        Source("alpaca", "train", (RawFile(
            "alpaca/alpaca_data.json", url=_gh("tatsu-lab/stanford_alpaca", ALPACA_MAIN, "alpaca_data.json"),
            revision=ALPACA_MAIN),),
            "alpaca_json", "CC-BY-NC-4.0", f"tatsu-lab/stanford_alpaca@{ALPACA_MAIN[:12]}", 52002,
            "the full Stanford Alpaca release (52,002)"),
        Source("alpaca_cleaned", "train", (RawFile(
            "alpaca_cleaned/alpaca_data_cleaned.json", hf_repo="yahma/alpaca-cleaned",
            hf_file="alpaca_data_cleaned.json"),),
            "alpaca_json", "CC-BY-4.0", "HF yahma/alpaca-cleaned", 51760, "Alpaca-cleaned (HF yahma/alpaca-cleaned)"),
        Source("stl_alpaca_small", "train", (RawFile(
            "safety_tuned_llamas/training/alpaca_small.json",
            url=_gh("vinid/safety-tuned-llamas", STL, "data/training/alpaca_small.json"), revision=STL),),
            "alpaca_json", "CC-BY-NC-4.0", f"vinid/safety-tuned-llamas@{STL[:12]}", 20000,
            "STL's 20k Alpaca-cleaned sample without safety data (DCR's D_general)"),
        Source("stl_safety", "train", (RawFile(
            "safety_tuned_llamas/training/safety_only_data_Instructions.json",
            url=_gh("vinid/safety-tuned-llamas", STL, "data/training/safety_only_data_Instructions.json"), revision=STL,
            sha256="7dde08acf87f10cf74fd1b76f56538eae8e413ae8e6b09e3f7bcd97769058dbe"),),
            "alpaca_json", "CC-BY-NC-4.0", f"vinid/safety-tuned-llamas@{STL[:12]}", 2483,
            "STL safety_only_data: Anthropic red-team questions with GPT-3.5 refusals", {"label": "toxic"}),
        Source("hh_harmless_test", "train", (RawFile(
            "hh_rlhf/harmless-base/test.jsonl.gz", url=_gh("anthropics/hh-rlhf", HH, "harmless-base/test.jsonl.gz"),
            revision=HH, sha256="ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03"),),
            "hh_jsonl_gz", "MIT", f"anthropics/hh-rlhf@{HH[:12]}", 2312,
            "HH-RLHF harmless-base test split: first Human turn = red-team prompt"),
        Source("hh_harmless_train", "train", (RawFile(
            "hh_rlhf/harmless-base/train.jsonl.gz", url=_gh("anthropics/hh-rlhf", HH, "harmless-base/train.jsonl.gz"),
            revision=HH),),
            "hh_jsonl_gz", "MIT", f"anthropics/hh-rlhf@{HH[:12]}", 42537, "HH-RLHF harmless-base train split"),
        Source("hh_red_team", "train", (RawFile(
            "hh_rlhf/red-team-attempts/red_team_attempts.jsonl.gz",
            url=_gh("anthropics/hh-rlhf", HH, "red-team-attempts/red_team_attempts.jsonl.gz"), revision=HH),),
            "hh_red_team", "MIT", f"anthropics/hh-rlhf@{HH[:12]}", 38961,
            "Anthropic red-team attempts (transcripts; first Human turn = attack prompt)"),
        Source("coconot_pref", "train", (RawFile(
            "coconot/coconot_pref.jsonl", url=_gh("allenai/noncompliance", COCONOT, "data/coconot_pref.jsonl"),
            revision=COCONOT, sha256="3b0cddcfb72218b8c32d7c11bfded00174f2f4a3c4edfbc862640fc63f43d9c2"),),
            "coconot_pref", "MIT", f"allenai/noncompliance@{COCONOT[:12]}", 927,
            "CoCoNot contrast preference pairs: seemingly toxic prompts with compliant (chosen) answers",
            categories=COCONOT_PREF_SUBCATEGORIES, ids="text"),
        # ------------------------------------------------------------------ over-refusal / control evaluation
        Source("xstest", "eval", (RawFile(
            "xstest/xstest_prompts.csv", url=_gh("paul-rottger/exaggerated-safety", XSTEST, "xstest_prompts.csv"),
            revision=XSTEST, sha256="11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a"),),
            "xstest_csv", "CC-BY-4.0", f"paul-rottger/exaggerated-safety@{XSTEST[:12]}", 450,
            "XSTest: 250 safe (10 types) + 200 unsafe contrast prompts (8 types)", categories=XSTEST_TYPES,
            ids="numeric"),
        Source("coconot_contrast", "eval", (RawFile(
            "coconot/coconot_contrast_eval.jsonl",
            url=_gh("allenai/noncompliance", COCONOT, "data/coconot_contrast_eval.jsonl"), revision=COCONOT,
            sha256="76dccec176743ed656279f2969c51abb68bda94e5fda8397e34ff5638e021d86"),),
            "coconot_jsonl", "MIT", f"allenai/noncompliance@{COCONOT[:12]}", 379, "CoCoNot contrast set",
            categories=COCONOT_CONTRAST_SUBCATEGORIES, ids="text"),
        Source("oktest", "eval", (RawFile(
            "oktest/OKTest.csv", url=_gh("InvokerStark/OverKill", OVERKILL, "data/OKTest.csv"), revision=OVERKILL,
            sha256="1be3e8d3fe6b45a170653da63c8cf70dbf97508a48735e65db0713a44e158860"),),
            "prompt_csv", "unknown (none stated upstream)", f"InvokerStark/OverKill@{OVERKILL[:12]}", 300, "OKTest"),
        Source("orbench_hard", "eval", (RawFile(
            "orbench/or-bench-hard-1k.csv", hf_repo="bench-llm/or-bench", hf_file="or-bench-hard-1k.csv"),),
            "orbench_csv", "CC-BY-4.0", "HF bench-llm/or-bench", 1319, "OR-Bench-Hard-1K",
            {"label": "seemingly_toxic"}, categories=ORBENCH_CATEGORIES),
        Source("orbench_toxic", "eval", (RawFile(
            "orbench/or-bench-toxic.csv", hf_repo="bench-llm/or-bench", hf_file="or-bench-toxic.csv"),),
            "orbench_csv", "CC-BY-4.0", "HF bench-llm/or-bench", None, "OR-Bench-Toxic (655 per notes, unverified)",
            {"label": "toxic"}, categories=ORBENCH_CATEGORIES),
        Source("phtest", "eval", (RawFile(
            "phtest/PHTest.csv", hf_repo="furonghuang-lab/PHTest", hf_file="PHTest.csv", revision=PHTEST_REV),),
            # 3,260 rows: csv.DictReader's count of the real PHTest.csv, measured by the project (issue 16);
            # the HF dataset viewer is reported to show 3,269 for the train split. The file is not in this
            # mirror, so neither could be checked here: a copy with another count is refused, naming both
            # counts, and data.real.pins.phtest.rows restates it.
            "phtest_csv", "see HF furonghuang-lab/PHTest card", f"HF furonghuang-lab/PHTest@{PHTEST_REV[:12]}",
            3260, "PHTest pseudo-harmful prompts (harmless + controversial)", categories=PHTEST_CATEGORIES,
            ids="numeric"),
        # ------------------------------------------------------------------ harmful evaluation
        Source("advbench", "eval", (RawFile(
            "advbench/harmful_behaviors.csv", url=_gh("andyrdt/refusal_direction", REFDIR, "dataset/raw/advbench.csv"),
            revision=REFDIR, sha256="6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1"),),
            "advbench_csv", "MIT", f"andyrdt/refusal_direction@{REFDIR[:12]} (llm-attacks AdvBench)", 520,
            "AdvBench harmful behaviours"),
        Source("harmbench", "eval", (RawFile(
            "harmbench/harmbench_behaviors_text_test.csv",
            url=_gh("busycalibrating/AdversariaLLM", ADVLLM_OLD, "data/behavior_datasets/harmbench_behaviors_text_test.csv"),
            revision=ADVLLM_OLD, sha256="75d257b3e7428c52eb7b0154318f455af3e01b09a3794b5e2f3d36054f3c0e29"),),
            "harmbench_csv", "MIT", f"busycalibrating/AdversariaLLM@{ADVLLM_OLD[:12]} (HarmBench)", 320,
            "HarmBench text test behaviours (standard: 159)", {"functional_categories": ["standard"]},
            categories=HARMBENCH_SEMANTIC, ids="text"),
        Source("jailbreakbench", "eval", (RawFile(
            "jailbreakbench/jailbreakbench.csv",
            url=_gh("andyrdt/refusal_direction", REFDIR, "dataset/raw/jailbreakbench.csv"), revision=REFDIR,
            sha256="45e9a8923b28f547bb372fbaa9af7df8b38c818a80ae50c3bab97704197ff516"),),
            "jbb_csv", "MIT", f"andyrdt/refusal_direction@{REFDIR[:12]} (JBB-Behaviors harmful)", 100,
            "JailbreakBench harmful behaviours", categories=JBB_CATEGORIES),
        Source("maliciousinstruct", "eval", (RawFile(
            "maliciousinstruct/MaliciousInstruct.txt",
            url=_gh("Princeton-SysML/Jailbreak_LLM", JAILBREAK_LLM, "data/MaliciousInstruct.txt"), revision=JAILBREAK_LLM,
            sha256="a64d69dd1004aac4a23aaff3748fb8f17161893f74db36f45b8bc849eb1bcce5"),),
            "lines_txt", "unknown (none stated upstream)", f"Princeton-SysML/Jailbreak_LLM@{JAILBREAK_LLM[:12]}", 100,
            "MaliciousInstruct"),
        Source("strongreject", "eval", (RawFile(
            "strongreject/strongreject_dataset.csv",
            url=_gh("busycalibrating/AdversariaLLM", ADVLLM, "data/behavior_datasets/strongreject_dataset.csv"),
            revision=ADVLLM, sha256="4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381"),),
            "strongreject_csv", "MIT", f"busycalibrating/AdversariaLLM@{ADVLLM[:12]} (StrongREJECT)", 313,
            "StrongREJECT forbidden prompts", categories=STRONGREJECT_CATEGORIES),
        # STL's own harmful evaluation sets (Bianchi et al. 2024), which DCR's recipe descends from; a preset
        # that wants them lists them in eval.benchmarks (config/presets/stl_isets.yaml).
        *[Source(name, "eval", (RawFile(
            f"safety_tuned_llamas/evaluation/{file}",
            url=_gh("vinid/safety-tuned-llamas", STL, f"data/evaluation/{file}"), revision=STL, sha256=sha),),
            "stl_eval_json", "CC-BY-NC-4.0", f"vinid/safety-tuned-llamas@{STL[:12]}", rows, desc, categories=cats)
          for name, file, sha, rows, desc, cats in [
              ("stl_i_malicious", "I-MaliciousInstructions.json",
               "7a2bc751d49983800848050282aa2a84b3faa7044c3178228c49dd68df7d679f", 100,
               "STL I-MaliciousInstructions (tags: hate, crime)", frozenset({"hate", "crime"})),
              ("stl_i_cona", "I-CoNa.json", "e07d92e376198e60ac1004902dc3fec46513ac70b08d855b4101288b8270d62a", 178,
               "STL I-CoNa (hate speech, from CONAN)", None),
              ("stl_i_controversial", "I-Controversial.json",
               "0590fc6ee97a39c6a43adc21fe5a4ccbf546ea52e89a32757db6ea3d46ce65c4", 40,
               "STL I-Controversial (controversial topics)", None),
              ("stl_q_harm", "Q-Harm.json", "ecc1d19030d41ad550a1e69996dc424074e3e45fb2fa5e8e44b46f294aea295a", 100,
               "STL Q-Harm (100 questions of HarmfulQ)", None)]],
        # ------------------------------------------------------------------ capability
        Source("mmlu", "capability", (RawFile("mmlu/mmlu_test/*_test.csv", glob=True),),
               "mmlu_csv", "MIT", "hendrycks/test (via zouyingcao/SCANS@9dc20d2f1ce2)", 14042,
               "MMLU test (57 subjects, no header); mirror only: lay out mmlu/mmlu_test/<subject>_test.csv"),
        # The options name the lm-eval task each set reproduces and that task's doc_to_text over our rows, whose
        # `question` holds the field lm-eval's prompt reads (config.capability_errors holds a preset to it).
        Source("arc_easy", "capability", (RawFile(
            "arc/ARC-Easy-test.jsonl", url=_gh("zhaoxlpku/HKU-DASC7606-A2", ARC_CARRIER, "data/ARC-Easy-test.jsonl"),
            revision=ARC_CARRIER, sha256="c9757629cb775832c3c67b4aa1425e3eda01708a2b02fa229b0c3ed1bcb70fe1"),),
            "arc_jsonl", ARC_LICENCE, ARC_ORIGIN, 2376, "ARC-Easy test (lm-eval arc_easy)",
            {"lm_eval_task": "arc_easy", "doc_to_text": LM_EVAL_QA}),
        Source("arc_challenge", "capability", (RawFile(
            "arc/ARC-Challenge-test.jsonl",
            url=_gh("zhaoxlpku/HKU-DASC7606-A2", ARC_CARRIER, "data/ARC-Challenge-test.jsonl"), revision=ARC_CARRIER,
            sha256="c0e7635ee91b9ca47bf388f1f6cd5140fda083a71dccda44de72c364645df3f3"),),
            "arc_jsonl", ARC_LICENCE, ARC_ORIGIN, 1172, "ARC-Challenge test (lm-eval arc_challenge)",
            {"lm_eval_task": "arc_challenge", "doc_to_text": LM_EVAL_QA}),
        Source("piqa", "capability", (
            RawFile("piqa/valid.jsonl", url=_gh("ybisk/ybisk.github.io", PIQA_SITE, "piqa/data/valid.jsonl"),
                    revision=PIQA_SITE, sha256="93503cc97c679e459b065c3d13e848282e44b2a25213985bed3e5d458abef72d"),
            RawFile("piqa/valid-labels.lst", url=_gh("ybisk/ybisk.github.io", PIQA_SITE, "piqa/data/valid-labels.lst"),
                    revision=PIQA_SITE, sha256="b4192dc3a2a0363d9d60ccf79800cbbe2f32ebb17726efdde6970e0b8131bceb")),
            "piqa_jsonl", "AFL-3.0", f"ybisk/ybisk.github.io@{PIQA_SITE[:12]} (piqa/data)", 1838,
            "PIQA validation, labels from valid-labels.lst (lm-eval piqa)",
            {"lm_eval_task": "piqa", "doc_to_text": LM_EVAL_QA}),
        Source("openbookqa", "capability", (RawFile(
            "openbookqa/test.jsonl",
            url=_gh("katulevskiy/NLP-OpenBookQA", OBQA_CARRIER, "OpenBookQA-V1-Sep2018/Data/Main/test.jsonl"),
            revision=OBQA_CARRIER, sha256="feb2bd9bfa6161dca4c44ce90e51e8cdada83eb5061407fcdc5005e44aaf2313"),),
            "obqa_jsonl", "Apache-2.0", f"katulevskiy/NLP-OpenBookQA@{OBQA_CARRIER[:12]} (OpenBookQA-V1-Sep2018)", 500,
            "OpenBookQA main test (lm-eval openbookqa)", {"lm_eval_task": "openbookqa", "doc_to_text": "{{question}}"}),
        # Not the original jsonl but llama.cpp's text copy: ctx_b is not capitalised as lm-eval does, so scores
        # come close to lm-eval's hellaswag without being identical (SOURCES.md).
        Source("hellaswag", "capability", (RawFile(
            "hellaswag/hellaswag_val_full.txt.bz2",
            url=_gh("klosax/hellaswag_text_data", HELLASWAG_TEXT, "hellaswag_val_full.txt.bz2"), revision=HELLASWAG_TEXT,
            sha256="50b637899e4263c2bc456c2dc726c95d2c8cd8e2a552ea5bd7719ce3cb03fe5b"),),
            "hellaswag_txt", "MIT", f"klosax/hellaswag_text_data@{HELLASWAG_TEXT[:12]} (rowanz/hellaswag val)", 10042,
            "HellaSwag validation, 6 lines a task (lm-eval hellaswag, near: ctx_b not capitalised)",
            {"lm_eval_task": "hellaswag", "doc_to_text": "{{question}}"}),
    ]
}

# Which source (and which part of it) each evaluation benchmark reads.
BENCHMARK_SOURCES: dict[str, tuple[str, dict[str, object]]] = {
    "xstest_safe": ("xstest", {"label": "safe"}),
    "xstest_unsafe": ("xstest", {"label": "unsafe"}),
    "coconot_contrast": ("coconot_contrast", {}),
    "orbench_hard": ("orbench_hard", {}),
    "orbench_toxic": ("orbench_toxic", {}),
    "oktest": ("oktest", {}),
    "phtest": ("phtest", {}),
    "advbench": ("advbench", {}),
    "harmbench": ("harmbench", {}),
    "jailbreakbench": ("jailbreakbench", {}),
    "maliciousinstruct": ("maliciousinstruct", {}),
    "strongreject": ("strongreject", {}),
    "i_malicious": ("stl_i_malicious", {}),
    "i_cona": ("stl_i_cona", {}),
    "i_controversial": ("stl_i_controversial", {}),
    "q_harm": ("stl_q_harm", {}),
}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown data source {name!r}; valid: {', '.join(SOURCES)}") from None

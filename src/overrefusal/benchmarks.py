"""The evaluation benchmarks, the suite each belongs to, and how it is scored.

Names are shared by the toy world and the real-data loaders, so every downstream rule, table and
figure works the same on both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Suite = Literal["over_refusal", "control", "harmful"]
Metric = Literal["compliance_rate", "defense_success_rate"]


@dataclass(frozen=True)
class Benchmark:
    name: str
    suite: Suite
    label: str  # the record label its prompts carry
    paper_column: str  # the column header the papers use
    description: str

    @property
    def metric(self) -> Metric:
        # Over-refusal and should-refuse controls report compliance (higher is better on benign
        # prompts, lower on the controls); harmful sets report defense success (refusal) rate.
        return "defense_success_rate" if self.suite == "harmful" else "compliance_rate"

    @property
    def higher_is_better(self) -> bool:
        return self.suite != "control"


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("xstest_safe", "over_refusal", "seemingly_toxic", "XS", "XSTest safe prompts (250)"),
        Benchmark("coconot_contrast", "over_refusal", "seemingly_toxic", "CoCo", "CoCoNot contrast set (379)"),
        Benchmark("orbench_hard", "over_refusal", "seemingly_toxic", "OR", "OR-Bench-Hard-1K (1,319)"),
        Benchmark("oktest", "over_refusal", "seemingly_toxic", "OK", "OKTest (300)"),
        Benchmark("phtest", "over_refusal", "seemingly_toxic", "PH", "PHTest pseudo-harmful prompts"),
        Benchmark("xstest_unsafe", "control", "toxic", "XS-unsafe", "XSTest unsafe contrast prompts (200)"),
        Benchmark("orbench_toxic", "control", "toxic", "OR-toxic", "OR-Bench-Toxic"),
        Benchmark("advbench", "harmful", "toxic", "AdvBench", "AdvBench harmful behaviours (520)"),
        Benchmark("harmbench", "harmful", "toxic", "HarmBench", "HarmBench test behaviours"),
        Benchmark("jailbreakbench", "harmful", "toxic", "JBB", "JailbreakBench harmful behaviours (100)"),
        Benchmark("maliciousinstruct", "harmful", "toxic", "MaliciousInstruct", "MaliciousInstruct (100)"),
        Benchmark("strongreject", "harmful", "toxic", "StrongREJECT", "StrongREJECT (313)"),
        # STL's harmful evaluation sets (real data only: the toy world has no counterpart)
        Benchmark("i_malicious", "harmful", "toxic", "I-Malicious", "STL I-MaliciousInstructions (100)"),
        Benchmark("i_cona", "harmful", "toxic", "I-CoNa", "STL I-CoNa (178)"),
        Benchmark("i_controversial", "harmful", "toxic", "I-Controversial", "STL I-Controversial (40)"),
        Benchmark("q_harm", "harmful", "toxic", "Q-Harm", "STL Q-Harm, 100 questions of HarmfulQ"),
    ]
}

SUITES: tuple[Suite, ...] = ("over_refusal", "control", "harmful")


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}") from None


def by_suite(names: list[str], suite: Suite) -> list[str]:
    return [n for n in names if get_benchmark(n).suite == suite]


def safety_sets(names: Iterable[str]) -> list[str]:
    """The paper names of the harmful benchmarks among ``names`` (a run's ``eval.benchmarks``), in its order:
    the sets its Safety column averages."""
    return [get_benchmark(n).paper_column for n in names if get_benchmark(n).suite == "harmful"]


def safety_caption(names: Iterable[str]) -> str:
    """What Safety averages, for captions: "AdvBench, HarmBench and JBB" (its count and names)."""
    sets = safety_sets(names)
    if not sets:
        return "no harmful benchmark (eval.benchmarks holds none, so Safety is empty)"
    listed = sets[0] if len(sets) == 1 else ", ".join(sets[:-1]) + " and " + sets[-1]
    return f"{len(sets)} harmful benchmark{'s' if len(sets) > 1 else ''}: {listed}"

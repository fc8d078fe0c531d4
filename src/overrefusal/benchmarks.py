"""The evaluation benchmarks, the suite each belongs to, and how it is scored.

Names are shared by the toy world and the real-data loaders, so every downstream rule, table and
figure works the same on both.
"""

from __future__ import annotations

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

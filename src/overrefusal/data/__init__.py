"""Real datasets for both papers: loaders, a registry, staging (mirror or pinned download),
curated paper splits, leakage checks and the data card. See ``registry`` for every source."""

from .fetch import ChecksumError, MissingSourceError, stage_source
from .loaders import LoadReport, load_records
from .registry import BENCHMARK_SOURCES, SOURCES, get_source

__all__ = ["BENCHMARK_SOURCES", "ChecksumError", "LoadReport", "MissingSourceError", "SOURCES", "get_source",
           "load_records", "stage_source"]

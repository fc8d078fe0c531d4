"""What every pipeline script does first: log to the rule's log file and use the rule's threads."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

_collector_paused = False


def pause_collector_in_job() -> None:
    """Switch the cyclic garbage collector off while a Snakemake script job imports its libraries.

    torch and transformers create about a million long-lived objects on import, and the collector
    walks all of them over and over while they load, then once more at interpreter exit: about a second
    of a toy job's ~7 s import and another at exit, paid by every one of the toy run's ~85 model jobs;
    collections during the job itself (lm-eval's task building above all) also skip the frozen heap.
    `rule_context` freezes what was imported and switches the collector back on. Only a process whose
    ``__main__`` holds Snakemake's script object is touched, never an importing test or notebook.
    """
    global _collector_paused
    if job_object() is not None and gc.isenabled():
        gc.disable()
        _collector_paused = True


def job_object() -> Any:
    """The ``snakemake`` object of a Snakemake script job's ``__main__`` (matched by its type's name, so that
    ``import snakemake`` in a notebook never counts), or None in any other process."""
    smk = getattr(sys.modules.get("__main__"), "snakemake", None)
    return smk if type(smk).__name__ == "Snakemake" else None


def _resume_collector() -> None:
    """Move the imported objects to the permanent generation (never scanned again) and resume."""
    global _collector_paused
    if _collector_paused:
        gc.freeze()
        gc.enable()
        _collector_paused = False


@contextlib.contextmanager
def rule_context(smk: Any) -> Iterator[logging.Logger]:
    """Send stdout/stderr and logging to ``smk.log[0]``; pin torch to the rule's threads.

    Tiny models run much faster on one thread than on an oversubscribed machine, and thread
    counts that follow ``threads:`` make cluster jobs behave the same as local ones.
    """
    _resume_collector()
    log_path = smk.log[0]
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    fh = open(log_path, "w", buffering=1, encoding="utf-8")
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = fh
    logging.basicConfig(stream=fh, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        force=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    threads = max(1, int(getattr(smk, "threads", 1)))
    # torch reads these when it is first imported; a script that has imported it already is pinned
    # directly. Importing torch here would cost a judge or table job seconds for nothing.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    try:
        yield logging.getLogger(f"overrefusal.{smk.rule}")
    except BaseException:
        logging.getLogger(f"overrefusal.{smk.rule}").exception("rule %s failed", smk.rule)
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        fh.close()

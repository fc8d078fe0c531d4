"""What every pipeline script does first: log to the rule's log file and use the rule's threads."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def rule_context(smk: Any) -> Iterator[logging.Logger]:
    """Send stdout/stderr and logging to ``smk.log[0]``; pin torch to the rule's threads.

    Tiny models run much faster on one thread than on an oversubscribed machine, and thread
    counts that follow ``threads:`` make cluster jobs behave the same as local ones.
    """
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

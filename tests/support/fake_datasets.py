"""Tiny hub dataset repos shaped like the ones lm-eval's registry tasks read, to publish on the fake hub
(tests/support/fake_hf_hub.py)."""

from __future__ import annotations

import io

# lm-eval's arc_easy (lm_eval/tasks/arc/arc_easy.yaml): dataset_path allenai/ai2_arc, dataset_name
# ARC-Easy, train/validation/test splits, fields question, choices {text, label} and answerKey.
ARC_REPO = "allenai/ai2_arc"
ARC_SPLITS = {"train": 4, "validation": 2, "test": 5}  # test: the documents arc_easy evaluates
# The dataset card's YAML is how `datasets` maps a config name to its files on the hub.
ARC_README = "---\nconfigs:\n- config_name: ARC-Easy\n  data_files:\n" + "".join(
    f"  - split: {s}\n    path: ARC-Easy/{s}-*\n" for s in ARC_SPLITS) + "---\n# tiny ai2_arc for tests\n"


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def arc_easy_files() -> dict[str, bytes]:
    """The repo's files (README plus one parquet shard per split), in the hub's ARC layout."""
    files = {"README.md": ARC_README.encode()}
    for split, n in ARC_SPLITS.items():
        rows = [{"id": f"{split}-{i}", "question": f"Which number is {i} plus {i}?",
                 "choices": {"text": [str(2 * i), str(2 * i + 1), str(i + 7)], "label": ["A", "B", "C"]},
                 "answerKey": "A"} for i in range(n)]
        files[f"ARC-Easy/{split}-00000-of-00001.parquet"] = _parquet(rows)
    return files

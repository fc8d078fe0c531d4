"""One part of a run made in parts (rule part): which runs it published, which it reused, and their job seconds.

The record is also written beside the published runs, with the table of every part so far (parts.md), so the
wall time of each part is committed with its results."""
from pathlib import Path

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.io import read_json, write_json, write_text
from overrefusal.run_store import part_record, parts_markdown
from overrefusal.runtime import rule_context

with rule_context(snakemake) as log:  # noqa: F821
    smk = snakemake  # noqa: F821
    record = part_record(smk.wildcards.part, smk.params.runs)
    published = Path(smk.params.published)
    write_json(published / f"{smk.wildcards.part}.json", record)
    write_text(published.parent / "parts.md", parts_markdown(read_json(p) for p in sorted(published.glob("*.json"))))
    write_json(smk.output[0], record)
    log.info("part %s: %d runs published, %d reused, %.0f job seconds", smk.wildcards.part,
             record["published"], record["reused"], record["job_seconds"])

"""The script runtime: the collector pause around a job's imports touches Snakemake script jobs only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def _run(prelude: str, tmp_path: Path) -> dict[str, object]:
    """In a fresh interpreter after `prelude`: a script's first call (enter_job), then rule_context."""
    code = textwrap.dedent(f"""
        import gc, json, sys, types
        sys.path.insert(0, {str(SRC)!r})
        {prelude}
        from overrefusal.warm_start import enter_job
        enter_job()  # no server to go to: the job stays in this process
        after_import = gc.isenabled()
        from overrefusal.runtime import rule_context
        smk = types.SimpleNamespace(log=[{str(tmp_path / "job.log")!r}], threads=1, rule="probe")
        with rule_context(smk):
            inside, frozen = gc.isenabled(), gc.get_freeze_count()
        print(json.dumps({{"after_import": after_import, "inside": inside, "frozen": frozen}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_a_snakemake_script_job_imports_with_the_collector_off_and_runs_with_it_on(tmp_path: Path) -> None:
    # What Snakemake's script preamble leaves in __main__: an object of its class Snakemake.
    got = _run("snakemake = type('Snakemake', (), {})()", tmp_path)
    assert got["after_import"] is False
    assert got["inside"] is True and got["frozen"] > 1_000


def test_any_other_process_keeps_its_collector(tmp_path: Path) -> None:
    # `import snakemake` in a notebook binds the module, not the script object: nothing changes.
    got = _run("import snakemake", tmp_path)
    assert got == {"after_import": True, "inside": True, "frozen": 0}

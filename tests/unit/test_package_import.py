"""Importing the package only defines names: no hand-over to a warm-start server, no paused collector, no heavy
library loaded. Scripts ask for the warm start on purpose (``warm_start.enter_job()``), first thing."""

from __future__ import annotations

import ast
import json
import socket
import subprocess
import sys
from pathlib import Path

from overrefusal import warm_start

REPO = Path(__file__).resolve().parents[2]

# A process dressed as a Snakemake script job (its __main__ holds the job's object and script path), with a
# server socket to go to: what made `import overrefusal` hand the job over before.
_PROBE = """
import gc, json, sys
class Snakemake:
    log = ("job.log",)
main = sys.modules["__main__"]
main.snakemake = Snakemake()
main.__real_file__ = "/nonexistent/.snakemake/scripts/tmp.job.py"
before = set(sys.modules)
import overrefusal
new = sorted(m for m in set(sys.modules) - before if not m.startswith("encodings"))
print(json.dumps({"new": new, "gc": gc.isenabled(), "version": overrefusal.__version__}))
"""


def test_import_defines_names_only(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(0.2)
        env = {"PATH": "/usr/bin:/bin", warm_start.SOCKET: str(path), warm_start.SWITCH: "1"}
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        try:
            listener.accept()
        except TimeoutError:
            contacted = False
        else:
            contacted = True
    assert not contacted, "importing the package contacted the warm-start server"
    assert out["gc"], "importing the package paused the garbage collector"
    assert out["new"] == ["overrefusal"], f"importing the package imported more: {out['new']}"


def _first_statements(script: Path) -> list[ast.stmt]:
    body = ast.parse(script.read_text()).body
    return body[1:] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else body


def test_every_script_enters_its_job_before_importing_the_package() -> None:
    scripts = sorted((REPO / "scripts").glob("*.py"))
    assert len(scripts) > 30
    late = []
    for script in scripts:
        seen_call = False
        for node in _first_statements(script):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", None) == "enter_job":
                seen_call = True
                break
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("overrefusal") \
                    and node.module != "overrefusal.warm_start":
                break
            if isinstance(node, ast.Import) and any(a.name.startswith("overrefusal") for a in node.names):
                break
        if not seen_call:
            late.append(script.name)
    assert not late, f"scripts that import the package before calling enter_job(): {late}"


def test_the_json_schemas_are_package_data_found_beside_the_modules():
    """An installed (not editable) package must find its schemas: they ship inside it, declared as package data."""
    import tomllib
    from importlib.resources import files

    import overrefusal.config
    import overrefusal.scoring

    names = {p.name for p in (files("overrefusal") / "schemas").iterdir()}
    assert {"config.schema.yaml", "benchmark_result.schema.json", "capability.schema.json",
            "refusal_tracking.schema.json"} <= names
    pyproject = tomllib.loads((Path(overrefusal.config.__file__).parents[2] / "pyproject.toml").read_text())
    assert "schemas/*" in pyproject["tool"]["setuptools"]["package-data"]["overrefusal"]
    pkg = Path(overrefusal.config.__file__).parent
    assert overrefusal.config.SCHEMA.parent == pkg / "schemas"
    assert Path(overrefusal.scoring.schema_path()).parent == pkg / "schemas"

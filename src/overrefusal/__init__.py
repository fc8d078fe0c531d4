"""Reproduce TBR (Think-Before-Refusal) and DCR (Discernment via Contrastive Refinement).

All pipeline logic lives in this package; ``scripts/`` only adapts the Snakemake object to it. Importing it only
defines names: a pipeline script's first call, ``overrefusal.warm_start.enter_job()``, is what may hand its job
to a warm-start server.
"""

__version__ = "0.1.0"

"""Reproduce TBR (Think-Before-Refusal) and DCR (Discernment via Contrastive Refinement).

All pipeline logic lives in this package; ``scripts/`` only adapts the Snakemake object to it.
"""

__version__ = "0.1.0"

from overrefusal.runtime import pause_collector_in_job

# Every script imports this package before torch: the collector is paused for the heavy imports.
pause_collector_in_job()

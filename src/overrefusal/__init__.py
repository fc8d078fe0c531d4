"""Reproduce TBR (Think-Before-Refusal) and DCR (Discernment via Contrastive Refinement).

All pipeline logic lives in this package; ``scripts/`` only adapts the Snakemake object to it.
"""

__version__ = "0.1.0"

from overrefusal.runtime import pause_collector_in_job
from overrefusal.warm_start import delegate_if_served

# Every script imports this package before torch. With a warm-start server to go to, the job runs in a child
# forked from it and this process exits here; otherwise the collector is paused for the heavy imports.
delegate_if_served()
pause_collector_in_job()

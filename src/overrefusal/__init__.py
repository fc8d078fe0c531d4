"""Reproduce TBR (Think-Before-Refusal) and DCR (Discernment via Contrastive Refinement).

All pipeline logic lives in this package; ``scripts/`` only adapts the Snakemake object to it.
"""

__version__ = "0.1.0"

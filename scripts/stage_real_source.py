"""Stage one real source (rule stage_real_source): find it in data.raw_dir or download it, pinned."""
import os

smk = snakemake  # noqa: F821 - injected by Snakemake
if smk.params.stage["download"]:  # downloads need the hub online; everything after staging runs offline
    os.environ["HF_HUB_OFFLINE"] = "0"

from overrefusal.warm_start import enter_job

enter_job()

from overrefusal.data.fetch import stage_source
from overrefusal.data.registry import get_source
from overrefusal.io import write_json
from overrefusal.runtime import rule_context

with rule_context(smk) as log:
    st = smk.params.stage
    staged = stage_source(get_source(smk.wildcards.real_source), raw_dir=smk.params.raw_dir,
                          download_dir=st["download_dir"], download=st["download"], pins=st["pins"],
                          allow_unpinned=st["allow_unpinned"], github_base=st["github_mirror"])
    write_json(smk.output[0], staged)
    log.info("staged %s: %d file(s)", smk.wildcards.real_source, len(staged["files"]))

"""Tables and figures built from the per-benchmark eval JSONs and capability JSONs.

``tables`` turns result files into the papers' table layouts (CSV for numbers, Markdown for
reading); ``figures`` draws the seaborn figures from the same long-form frame.
"""

"""figures: plots and tables rebuilt from saved results only (never by re-running experiments).

``python -m figures theory RESULTS.json ... --out DIR`` and ``python -m figures deep RUN_DIR ...
--out DIR`` (see :mod:`figures.__main__`). Modules: :mod:`figures.io` (load/validate inputs, atomic
writes), :mod:`figures.theory_plots`, :mod:`figures.deep_plots`, :mod:`figures.tables`,
:mod:`figures.paper_numbers` (the paper's published numbers). numpy + matplotlib (Agg) only.
"""

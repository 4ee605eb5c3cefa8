"""deepfl.reproduce: the paper's deep tables and figures, one command each (``python -m
deepfl.reproduce``).

Modules: ``scales`` (named grid sizes), ``grid`` (rows, cells, conventions), ``tables`` (the paper's
tables as rows), ``compact`` (run directory -> committed result), ``aggregate`` (results -> tables,
torch-free), ``execute`` / ``driver`` (running cells). Only ``execute`` and ``driver`` need torch.
"""

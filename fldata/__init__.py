"""fldata: what the linear and the deep engines share (numpy only).

Data sets (``fldata.datasets``), client partitions (``fldata.partition``),
ground-truth triggers and stamping (``fldata.triggers``), and the ACC/ASR
metrics with a confidence threshold (``fldata.metrics``).
"""

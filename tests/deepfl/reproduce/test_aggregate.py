"""Aggregation details that the end-to-end driver test does not reach."""

from __future__ import annotations

from deepfl.reproduce.aggregate import ran_on


def test_ran_on_names_the_gpu_when_the_run_recorded_it() -> None:
    assert ran_on({"device": "cuda:0", "device_name": "NVIDIA H200"}) == "NVIDIA H200"


def test_ran_on_reads_older_cells_from_their_provenance() -> None:
    # cells written before summaries carried device_name: the CPU from machine / cpu_count
    assert ran_on({"device": "cpu", "machine": "x86_64", "cpu_count": 2}) == "x86_64 CPU, 2 cores"
    assert ran_on({"device": "cuda"}) == "CUDA GPU (name not recorded)"

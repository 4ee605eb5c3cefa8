"""deepfl: PyTorch federated-learning simulation with backdoor attacks, server and client defenses.

Engine layout (data flows one way): ``federation`` (data -> clients) -> ``client`` (local SGD,
attackers, client defenses) -> ``server`` (aggregation via deepfl.defenses) -> ``evaluate``
(ACC/ASR via fldata.metrics) -> ``runner`` (round loop, checkpoints, run directory) -> ``run``
(command line). Configuration: ``config`` + ``presets``. Contracts between the engine, the server
defenses (deepfl/defenses) and FLIP (deepfl/flip) are in deepfl/CONTRACT.md.
"""

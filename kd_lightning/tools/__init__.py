"""The tools: the commands built on the method core (models, losses, hooks, seeding, modules, datasets) and on
the run bookkeeping of :mod:`kd_lightning.run`. Nothing in the core imports them, and no config targets them.

- ``train``               one run, or a Hydra multirun grid
- ``bench``               training throughput against a bare PyTorch loop
- ``export``              a run's network to ONNX, checked against PyTorch
- ``measure_complexity``  a data configuration's complexity, without training

Each keeps its documented command, ``python -m kd_lightning.<name>``: ``kd_lightning/<name>.py`` is an entry point
that only calls the tool's ``main`` (``python -m`` runs a module by its dotted name).
"""

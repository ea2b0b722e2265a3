"""What a network or a dataset measures: pure functions, modules and arrays in, plain dicts out.

- :mod:`~kd_lightning.measure.efficiency`: parameters, FLOPs, file size, latency and throughput;
- :mod:`~kd_lightning.measure.onnx`: ONNX export of a network, checked against PyTorch, int8 copy;
- :mod:`~kd_lightning.measure.throughput`: training throughput of a method's step (timing windows, the bare
  step, the three paths of ``kd_lightning.bench``; the one module here that builds from a composed config);
- :mod:`~kd_lightning.measure.complexity`: how hard a labelled image set is (docs/factors.md, "Measured complexity").

Nothing else here reads configs, checkpoints or run folders: :mod:`kd_lightning.run.byproducts` applies these to a
finished run (their shared glue: :mod:`kd_lightning.run.measuring`), and the tools of :mod:`kd_lightning.tools`
(export, bench, measure_complexity) to what they are pointed at.
"""

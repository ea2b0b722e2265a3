"""Run bookkeeping: everything between the command line and a run's ``results.json``.

- ``config``      composing and checking a run's config before anything is built
- ``identity``    which runs (and teachers) are the same experiment
- ``teachers``    the teacher registry and ``resolve_teacher(cfg)``: which teacher a student learns from
- ``rundir``      a run folder: skip, resume, archive, conflict, failure record; the writer of results.json
- ``records``     atomic JSON, the environment record, the git commit
- ``callbacks``, ``loggers``  what the Trainer is given besides the module
- ``byproducts``  what a run measures once its accuracy is final (cost, ONNX, data complexity, HParams)
- ``measuring``   what the by-products share with the tools: test split as the network takes it, label names,
                  ONNX description, the cached complexity of a config's data
- ``finished``    a finished run on disk as the tools read it: its checkpoint, run config, dataset and data
- ``failures``    the Hydra callback that makes a multirun with failed runs exit 1
- ``gpu_slots``   the Hydra callback that gives each job of ``launcher=gpu_node`` its own GPU slot
"""

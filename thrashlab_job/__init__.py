"""The jobs that string the layers together, on the host: the main job
(``python -m thrashlab_job.main``, ./run.sh), the benchmark
(``thrashlab_job.bench``, ./bench.sh), their shared steps (``job``) and the
``thrashlab`` command (``cli``).

The top layer: lab file (thrashlab) -> machines (localvm) -> experiment
(playbooks, runner) -> results (collector) -> analysis -> this package. It
imports the layers below; none of them imports it (tests/test_layers.py).
"""

"""Stepline benchmarks: ``python -m bench`` (or ``scripts/bench``) prints a table of figures.

Each workload runs in a fresh subprocess on a fresh SQLite file in a temporary folder on the same
disk as the repository, with Stepline's default durability (WAL, ``synchronous=FULL``). Where DBOS
is installed (``pip install dbos``, the ``bench`` extra) the same workloads run against DBOS with a
SQLite system database, and the table shows the ratio. These are measurements, not tests: nothing
here fails on a missed target; the table says "missed".

Workloads (one module each): ``floor`` (raw durable SQLite commit), ``per_step`` (one run of 100
trivial steps), ``throughput`` (1,000 runs of 3 steps), ``latency`` (event to first step, idle
worker), ``waits`` (event ingestion with 10,000 pending waits), ``recovery`` (SIGKILL a worker,
time until its runs resume).
"""

WORKLOADS = ("floor", "per_step", "throughput", "latency", "waits", "recovery")

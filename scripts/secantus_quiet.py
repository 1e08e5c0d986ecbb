"""Runs SecantusDB's command line (`python -m secantus ARGS…`) without two pauses mongod
does not have: its TTL sweeper, and the interpreter's full garbage collections.

- **The TTL sweeper.** SecantusDB 0.7.0b3 reads `[storage] ttl_sweep_seconds` from its
  config file, but its command line never passes the value on to the server, so the
  sweeper runs every 60 s whatever the file says. Each sweep decodes every document of
  every collection with a TTL index while holding the interpreter lock (mongod's TTL
  monitor uses the index): seconds of stall in a benchmark run that has just written
  100,000 delivery records.
- **Full collections.** The server's Python collector runs a full (generation 2)
  collection every few seconds under load, stopping every client for 25–96 ms each time
  while it finds almost nothing to free (0–86 objects per collection in a 35 s `latency`
  run). Young objects are still collected; only full collections are pushed out beyond any
  run's length, and reference counting frees everything else as always.

Benchmarks (`benches/load`, `benches/dbprofile`) and the backlog story, which must not
stall for reasons of the dev server's own, start the server through this file; everything
else (`scripts/dev-db`, the shared test server) runs it as it comes. Test and benchmark
setup only: herald itself never depends on it.
"""
import gc
import inspect
import runpy
import sys

from secantus.server import SecantusDBServer

_init = SecantusDBServer.__init__
if "ttl_sweep_seconds" not in inspect.signature(_init).parameters:
    sys.exit(
        "secantus_quiet.py: this SecantusDB's server takes no ttl_sweep_seconds; "
        "check how its version turns the sweeper off"
    )


def _without_sweeper(self, *args, **kwargs):
    kwargs.setdefault("ttl_sweep_seconds", 0)
    _init(self, *args, **kwargs)


SecantusDBServer.__init__ = _without_sweeper
young, middle, _ = gc.get_threshold()
gc.set_threshold(young, middle, 1_000_000)
sys.argv[0] = "secantus"
runpy.run_module("secantus", run_name="__main__", alter_sys=True)

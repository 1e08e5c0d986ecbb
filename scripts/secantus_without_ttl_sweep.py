"""Runs SecantusDB's command line (`python -m secantus ARGS…`) with its TTL sweeper off.

SecantusDB 0.7.0b3 reads `[storage] ttl_sweep_seconds` from its config file but its
command line never passes the value on to the server, so the sweeper runs every 60 s
whatever the file says. Each sweep decodes every document of every collection with a TTL
index while holding the interpreter lock (mongod's TTL monitor uses the index), which
stalls the server for seconds in the middle of a benchmark run that has just written
100,000 delivery records. Benchmarks and the tests that time nothing but must not stall
start the server through this file; everything else (`scripts/dev-db`, the shared test
server) keeps the server's default, as mongod does.

Test and benchmark setup only: herald itself never depends on it.
"""
import inspect
import runpy
import sys

from secantus.server import SecantusDBServer

_init = SecantusDBServer.__init__
if "ttl_sweep_seconds" not in inspect.signature(_init).parameters:
    sys.exit(
        "secantus_without_ttl_sweep.py: this SecantusDB's server takes no "
        "ttl_sweep_seconds; check how its version turns the sweeper off"
    )


def _without_sweeper(self, *args, **kwargs):
    kwargs.setdefault("ttl_sweep_seconds", 0)
    _init(self, *args, **kwargs)


SecantusDBServer.__init__ = _without_sweeper
sys.argv[0] = "secantus"
runpy.run_module("secantus", run_name="__main__", alter_sys=True)

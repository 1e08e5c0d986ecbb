"""Runs SecantusDB's command line (`python -m secantus ARGS…`) without two pauses mongod
does not have (its TTL sweeper, and the interpreter's full garbage collections), without
three costs mongod does not have on every write (retryable-write records, change streams
answering it, the index catalog read per document), and with an oplog that holds as much
as mongod's.

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
- **The oplog.** SecantusDB keeps 100,000 oplog entries unless told otherwise, and a
  change stream whose cursor falls behind the entries it prunes does not fail as mongod's
  does (`ChangeStreamHistoryLost`): its next `getMore` silently goes on from the oldest
  entry left, and the events in between are never returned. A burst of 12,000 events to 10
  webhooks writes more than 100,000 entries of delivery records before herald has read the
  last events, so herald never saw them and its feed stopped for good
  (`benches/burst/run.py`). mongod's oplog is sized in bytes, 990 MB at the least: about
  a million of herald's records. The launcher passes `--oplog-max-entries`
  [`OPLOG_MAX_ENTRIES`] unless the command line names one.
- **Retryable writes.** Every write a driver sends with a session and a `txnNumber` (the
  Rust driver's and pymongo's default) is looked up in, then recorded in, a map of the
  writes of the last 30 minutes, up to 10,000 of them; and each lookup and each record
  first scans the whole map for stale entries, and once it is full sorts it to find the
  oldest. So past 10,000 writes every write costs about 2 ms of the server's one thread
  (0.27 ms a scan, 0.70 a sort, twice): at 100 events/s, herald's record writes and the
  bench's event inserts kept the server 30–40 % of a core busier than the events alone.
  mongod keeps one record per session, updated in place. Here the map keeps insertion
  order (an `OrderedDict`, records arrive in time order) and is pruned from its oldest
  end, stopping at the first entry that stays: the same records kept, the same replies
  replayed, at a cost per write that does not grow with the map.
- **Change streams' `getMore`.** A `getMore` on a change stream waits for the next write
  to the oplog, reads what is new, and answers even when none of it matches: so every
  stream answers an empty batch for every write to any collection, and the driver asks
  again at once. herald keeps two streams open (its feed, over `events` and `objects`, and
  its webhooks watcher), so each of its delivery records and checkpoints cost a round trip
  of each: 2,059 `getMore`s in 10 s at 100 events/s to one webhook, where 1,000 carried an
  event. mongod goes on waiting until something matches or `maxTimeMS` runs out. Here an
  empty answer of a change stream is asked again, within the same `maxTimeMS`, before it
  is returned.
- **The index catalog.** Every document a write inserts or updates reads the options of
  each of the collection's indexes from the server's catalog table, decoding every
  index's document, and does so three times (its unique keys, its geo cells, its index
  entries): with herald's four secondary indexes on `deliveries`, 44 % of the server's
  samples while it took delivery records (py-spy), and a record cost 0.24 ms of the
  server's thread in batches of 100 against 0.06 ms for a document of `events`, which has
  no secondary index. mongod keeps its catalog in memory. Here the options read in one
  write attempt are remembered until it ends, under the collection's lock that index
  changes also take (and read afresh once the attempt marks an index multikey): 0.12 ms
  a record.

Benchmarks (`benches/load`, `benches/dbprofile`) and the backlog story, which must not
stall for reasons of the dev server's own, start the server through this file; everything
else (`scripts/dev-db`, the test servers) runs it as it comes, with the same oplog bound.
Test and benchmark setup only: herald itself never depends on it.
"""
import collections
import gc
import inspect
import runpy
import sys
import threading
import time

from secantus import commands, storage, transactions
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

_registry_init = transactions.TransactionRegistry.__init__
for name in ("_RETRYABLE_RECORD_LIFETIME_SECONDS", "_RETRYABLE_RECORD_MAX"):
    if not hasattr(transactions, name):
        sys.exit(f"secantus_quiet.py: this SecantusDB has no transactions.{name}; "
                 "check how its version prunes retryable-write records")


def _ordered_registry(self, *args, **kwargs):
    _registry_init(self, *args, **kwargs)
    self._retryable = collections.OrderedDict(self._retryable)


def _prune_oldest_first(self):
    records = self._retryable
    cutoff = self._time() - transactions._RETRYABLE_RECORD_LIFETIME_SECONDS
    while records:
        _reply, at, _identity = records[next(iter(records))]
        if at >= cutoff and len(records) <= transactions._RETRYABLE_RECORD_MAX:
            break
        records.popitem(last=False)


transactions.TransactionRegistry.__init__ = _ordered_registry
transactions.TransactionRegistry._prune_retryable_locked = _prune_oldest_first

_get_more_once = commands._HANDLERS.get("getMore")
if _get_more_once is None:
    sys.exit("secantus_quiet.py: this SecantusDB has no getMore handler in commands._HANDLERS; "
             "check how its version dispatches commands")


def _get_more_until_results(doc, ctx):
    max_time_ms = int(doc.get("maxTimeMS", 0) or 0)
    if "maxTimeMS" in doc and max_time_ms <= 0:
        return _get_more_once(doc, ctx)  # asked not to wait
    # The server's own wait when no maxTimeMS is given is 1 s.
    deadline = time.monotonic() + (max_time_ms / 1000.0 if max_time_ms > 0 else 1.0)
    while True:
        reply = _get_more_once(doc, ctx)
        cursor = reply.get("cursor") if isinstance(reply, dict) else None
        if (not isinstance(cursor, dict) or "postBatchResumeToken" not in cursor
                or cursor.get("nextBatch") or not cursor.get("id")):
            return reply  # not a change stream, an error, events, or a closed cursor
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            return reply
        doc = {**doc, "maxTimeMS": left_ms}


commands._HANDLERS["getMore"] = _get_more_until_results

# The index catalog, read once per write chunk instead of once per document and index.
_CATALOG_WRITES = ("_insert_chunk", "_update_chunk", "_update_matching_single_txn")
for name in ("_index_options_map", "_maybe_mark_multikey") + _CATALOG_WRITES:
    if not hasattr(storage.Storage, name):
        sys.exit(f"secantus_quiet.py: this SecantusDB has no storage.Storage.{name}; "
                 "check how its version reads the index catalog")
for name in _CATALOG_WRITES:
    if not hasattr(storage, "_retry_write_conflicts") or not hasattr(
            getattr(storage.Storage, name), "__wrapped__"):
        sys.exit(f"secantus_quiet.py: storage.Storage.{name} is not retried on write conflicts "
                 "here; check how its version reads the index catalog")
_chunk = threading.local()
_options_map = storage.Storage._index_options_map


def _options_map_of_chunk(self, db, coll):
    memo = getattr(_chunk, "memo", None)
    if memo is None:
        return _options_map(self, db, coll)
    key = (id(self), db, coll)
    if key not in memo:
        memo[key] = _options_map(self, db, coll)
    return memo[key]


def _remembering_the_catalog(write):
    def chunk(self, *args, **kwargs):
        if getattr(_chunk, "memo", None) is not None:
            return write(self, *args, **kwargs)  # nested: the outer chunk's memo serves
        _chunk.memo = {}
        try:
            return write(self, *args, **kwargs)
        finally:
            _chunk.memo = None
    return chunk


_mark_multikey = storage.Storage._maybe_mark_multikey


def _mark_multikey_and_forget(self, db, coll, doc, indexes, already_multikey):
    known = len(already_multikey)
    marked = _mark_multikey(self, db, coll, doc, indexes, already_multikey)
    memo = getattr(_chunk, "memo", None)
    if memo is not None and len(marked) != known:
        memo.pop((id(self), db, coll), None)  # an index's options changed: read them afresh
    return marked


storage.Storage._index_options_map = _options_map_of_chunk
storage.Storage._maybe_mark_multikey = _mark_multikey_and_forget
for name in _CATALOG_WRITES:
    # Each attempt under the collection's lock remembers afresh: the memo sits inside the
    # retry on write conflicts, which lets go of the lock between attempts.
    write = getattr(storage.Storage, name).__wrapped__
    setattr(storage.Storage, name, storage._retry_write_conflicts(_remembering_the_catalog(write)))

# Keep in step with `tests/it/support/mongo.rs` and `scripts/dev-db`.
OPLOG_MAX_ENTRIES = 1_000_000
if not any(a.startswith("--oplog-max-entries") for a in sys.argv[1:]):
    sys.argv += ["--oplog-max-entries", str(OPLOG_MAX_ENTRIES)]
young, middle, _ = gc.get_threshold()
gc.set_threshold(young, middle, 1_000_000)
sys.argv[0] = "secantus"
runpy.run_module("secantus", run_name="__main__", alter_sys=True)

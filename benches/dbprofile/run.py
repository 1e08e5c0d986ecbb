"""What herald asks of MongoDB: the commands one `herald serve` sends to the dev server,
counted by the server's own profiler (level 2), idle and then at a steady event rate.

    cargo build --release --bin herald --example receiver
    .venv/bin/python benches/dbprofile/run.py [--herald target/release/herald]
        [--receiver target/release/examples/receiver] [--rate 100] [--seconds 10] [--webhooks 1]

Starts SecantusDB, the example HTTPS receiver and herald (webhooks for every event type),
all on 127.0.0.1, then prints per phase each kind of command (`update herald_partitions`,
`insert deliveries`, ...) with its count and the server's milliseconds spent on it. Counts
do not depend on how busy the machine is, so they compare builds where timings cannot;
the milliseconds say which commands the server's time goes to. Event inserts made by this
script are left out (its own `count` commands, while it waits for a burst, are not).
Events go in one write per 10 ms (`rate / 100` documents each, at least one), as a
platform batches its writes and as the load bench's `latency` scenario does.
With DBPROFILE_EXAMPLES=1 in the environment, each kind of command is shown with one
example of it (its filter, sort, projection).
"""
import argparse
import collections
import datetime
import os
import shutil
import sys
import time
import urllib.request

from pymongo import MongoClient

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from localrun import SECRET, Processes, free_port  # noqa: E402


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--herald", default=os.path.join(root, "target/release/herald"))
    parser.add_argument("--receiver", default=os.path.join(root, "target/release/examples/receiver"))
    parser.add_argument("--rate", type=int, default=100, help="events per second in the load phase")
    parser.add_argument("--seconds", type=int, default=10, help="length of each phase")
    parser.add_argument("--webhooks", type=int, default=1, help="webhooks, each for every event type")
    parser.add_argument("--burst", type=int, default=0,
                        help="then this many events inserted at once (batches of 500), counted until every delivery is recorded")
    args = parser.parse_args()

    run = Processes("dbprofile")
    state, start = run.state, run.start

    def wait_for(what, check):
        run.wait_for(what, check, seconds=30, poll=0.1)

    try:
        db_port, receiver_port, listen_port = free_port(), free_port(), free_port()
        # Without the TTL sweeper and full collections, whose stalls would land in the
        # commands' milliseconds (scripts/secantus_quiet.py).
        start([sys.executable, os.path.join(root, "scripts/secantus_quiet.py"),
               "--host", "127.0.0.1", "--port", str(db_port),
               "--storage-path", os.path.join(state, "db")], "db.log")
        uri = f"mongodb://127.0.0.1:{db_port}/?directConnection=true"
        client = MongoClient(uri)
        wait_for("the dev server", lambda: client.admin.command("ping"))
        pem = os.path.join(state, "receiver.pem")
        start([args.receiver, "--listen", f"127.0.0.1:{receiver_port}", "--secret", SECRET,
               "--cert-out", pem], "receiver.log")
        wait_for("the receiver", lambda: os.path.getsize(pem) > 0)
        db = client.dbprofile
        now = datetime.datetime.now(datetime.timezone.utc)
        db.webhooks.insert_many([{
            "_id": f"wh_00000000000d{i:04x}", "name": f"dbprofile-{i}",
            "url": f"https://127.0.0.1:{receiver_port}/hook", "event_types": ["*"],
            "secret": SECRET, "enabled": True, "created_at": now, "updated_at": now}
            for i in range(args.webhooks)])
        start([args.herald, "serve", "--mongodb-uri", uri, "--database", "dbprofile",
               "--listen", f"127.0.0.1:{listen_port}", "--ca-file", pem,
               "--allow-private-networks", "127.0.0.1/32"], "herald.log",
              env=dict(os.environ, HERALD_LOG="warn"))
        wait_for("herald", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{listen_port}/readyz").status == 200)
        time.sleep(3)
        db.command("profile", 2)
        phase(db, "idle", args.seconds, 0)
        phase(db, "load", args.seconds, args.rate)
        if args.burst:
            burst(db, args.burst, args.webhooks)
        print(f"deliveries recorded: {db.deliveries.count_documents({})}")
    finally:
        run.stop()
        shutil.rmtree(state, ignore_errors=True)


def burst(db, n, webhooks):
    """`n` events inserted in batches of 500 as fast as the server takes them; reports once
    every delivery of them is recorded."""
    already = db.deliveries.estimated_document_count()
    began = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    for start in range(0, n, 500):
        db.events.insert_many([{
            "_id": f"evt_burst_{i}", "event_type": "collection.documents.written",
            "data": {"n": i}, "created_at": datetime.datetime.now(datetime.timezone.utc)}
            for i in range(start, min(n, start + 500))])
    wanted = n * webhooks
    # Cheap to ask (the script's own `count` commands show in the table).
    until = time.time() + 600
    while db.deliveries.estimated_document_count() < already + wanted:
        if time.time() > until:
            sys.exit(f"dbprofile: the burst's {wanted} deliveries were not recorded within 600 s")
        time.sleep(1.0)
    elapsed = time.time() - t0
    report(db, f"burst: {n} events × {webhooks} webhooks recorded in {elapsed:.1f} s "
               f"({wanted / elapsed:.0f} deliveries/s)", began)


def report(db, title, began):
    count, millis, longest = collections.Counter(), collections.Counter(), collections.Counter()
    example = {}
    for op in db.system.profile.find({"ts": {"$gte": began}}):
        command = op.get("command", {})
        verb = next(iter(command), "?")
        if verb == "insert" and op.get("ns", "").endswith(".events"):
            continue
        target = command.get("collection") if verb == "getMore" else command.get(verb)
        key = f"{verb} {target if isinstance(target, str) else ''}".strip()
        count[key] += 1
        millis[key] += op.get("millis", 0)
        # What a change stream's next read may wait behind: the server runs one command at
        # a time.
        longest[key] = max(longest[key], op.get("millis", 0))
        example.setdefault(key, command)
    print(f"== {title}")
    print(f"   {'commands':>8} {'server ms':>9} {'longest':>7}  command")
    for key, c in count.most_common():
        print(f"   {c:8d} {millis[key]:9d} {longest[key]:7d}  {key}")
        if os.environ.get("DBPROFILE_EXAMPLES"):
            shown = {k: v for k, v in example[key].items() if k not in ("documents", "updates", "lsid", "$clusterTime", "$db")}
            print(f"   {'':8} {'':9} {'':7}    e.g. {str(shown)[:300]}")


def phase(db, name, seconds, rate):
    began = datetime.datetime.now(datetime.timezone.utc)
    t0, n = time.time(), 0
    # One write per 10 ms at most: one round trip per event stopped near 60/s under the
    # server's profiler, whatever the rate asked.
    per_write = max(1, rate // 100)
    while time.time() - t0 < seconds:
        if rate:
            db.events.insert_many([{
                "_id": f"evt_{name}_{i}", "event_type": "collection.documents.written",
                "data": {"n": i}, "created_at": datetime.datetime.now(datetime.timezone.utc)}
                for i in range(n, n + per_write)])
            n += per_write
            time.sleep(max(0.0, t0 + n / rate - time.time()))
        else:
            time.sleep(0.5)
    time.sleep(2)
    elapsed = time.time() - t0
    report(db, f"{name}: {elapsed:.0f} s, {n} events inserted ({n / seconds:.0f}/s asked {rate}/s)",
           began)

if __name__ == "__main__":
    main()

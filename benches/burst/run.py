"""A burst larger than the feed window, to several webhooks: does every delivery succeed?

    cargo build --bin herald --example receiver
    .venv/bin/python benches/burst/run.py [--window 3000] [--events 12000] [--webhooks 10]
        [--bystanders 0 [--fed]]

Starts SecantusDB (through scripts/secantus_quiet.py), the example HTTPS receiver and one
`herald serve --max-events-in-flight WINDOW`, all on 127.0.0.1; inserts EVENTS events at
once (batches of 500) for WEBHOOKS webhooks; then prints, every 5 s, the deliveries that
succeeded, the records written, the events routed and those in flight (the window in
use), and what was recorded ahead and read back. It ends with DONE once every delivery
has succeeded, then prints how long that took and how many records the ledger wrote per
delivery (1 when nothing went through the ledger ahead of its attempt); or with STUCK after
180 s in which neither a delivery succeeded nor a record was written (exit status 1; one
ledger write of 1,000 updates can take the dev server minutes once `deliveries` is large),
leaving the processes running with `--keep` so that their state can be read.

While every endpoint is busy with the burst, a full window holds no one back and the burst
waits in the change stream. `--bystanders N` adds N webhooks of another event type: idle
endpoints. Never fed, they change nothing (a held window costs them no event they were
getting). With `--fed`, each gets one event just before the burst: idle and fed lately,
they make the busy ones record what they cannot send within two seconds and read it back
(the spill path, with its write and read back per delivery).
"""
import argparse
import datetime
import os
import sys
import time
import urllib.request

from pymongo import MongoClient

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from localrun import SECRET, Processes, free_port  # noqa: E402


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--herald", default=os.path.join(root, "target/debug/herald"))
    parser.add_argument("--receiver", default=os.path.join(root, "target/debug/examples/receiver"))
    parser.add_argument("--window", type=int, default=3000, help="--max-events-in-flight")
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--webhooks", type=int, default=10)
    parser.add_argument("--bystanders", type=int, default=0,
                        help="webhooks more, subscribed to a type the burst does not carry")
    parser.add_argument("--fed", action="store_true",
                        help="one event for the bystanders just before the burst")
    parser.add_argument("--keep", action="store_true", help="leave everything running at the end")
    args = parser.parse_args()
    run = Processes("burst")
    state, start = run.state, run.start
    print(f"logs in {state}", flush=True)

    def wait_for(what, check):
        run.wait_for(what, check, seconds=60, poll=0.2)

    stuck = False
    try:
        db_port, receiver_port, listen_port = free_port(), free_port(), free_port()
        start([sys.executable, os.path.join(root, "scripts/secantus_quiet.py"), "--host",
               "127.0.0.1", "--port", str(db_port), "--storage-path", ":memory:"], "db.log")
        client = MongoClient(f"mongodb://127.0.0.1:{db_port}/?directConnection=true")
        wait_for("the dev server", lambda: client.admin.command("ping"))
        pem = os.path.join(state, "receiver.pem")
        start([args.receiver, "--listen", f"127.0.0.1:{receiver_port}", "--secret", SECRET,
               "--cert-out", pem], "receiver.log")
        wait_for("the receiver", lambda: os.path.getsize(pem) > 0)
        db = client.burst
        now = datetime.datetime.now(datetime.timezone.utc)
        db.webhooks.insert_many([{
            "_id": f"wh_00000000000b{i:04x}", "url": f"https://127.0.0.1:{receiver_port}/hook",
            "event_types": ["*"], "secret": SECRET, "enabled": True, "created_at": now,
            "updated_at": now} for i in range(args.webhooks)]
            + [{"_id": f"wh_00000000000c{i:04x}", "url": f"https://127.0.0.1:{receiver_port}/hook",
                "event_types": ["batch.completed"], "secret": SECRET, "enabled": True,
                "created_at": now, "updated_at": now} for i in range(args.bystanders)])
        start([args.herald, "serve", "--mongodb-uri",
               f"mongodb://127.0.0.1:{db_port}/?directConnection=true", "--database", "burst",
               "--listen", f"127.0.0.1:{listen_port}", "--ca-file", pem,
               "--allow-private-networks", "127.0.0.1/32",
               "--max-events-in-flight", str(args.window)], "herald.log",
              env=dict(os.environ, HERALD_LOG=os.environ.get("HERALD_LOG", "info")))
        metrics_url = f"http://127.0.0.1:{listen_port}/metrics"
        wait_for("herald", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{listen_port}/readyz").status == 200)
        if args.fed and args.bystanders:
            db.events.insert_one({
                "_id": "evt_bystanders", "event_type": "batch.completed", "data": {},
                "created_at": datetime.datetime.now(datetime.timezone.utc)})
        for first in range(0, args.events, 500):
            db.events.insert_many([{
                "_id": f"evt_{i:08d}", "event_type": "collection.documents.written",
                "data": {"n": i}, "created_at": datetime.datetime.now(datetime.timezone.utc)}
                for i in range(first, min(args.events, first + 500))])
        # The bystanders' event goes to the burst's webhooks too (they take every type).
        fed = args.webhooks + args.bystanders if args.fed and args.bystanders else 0
        wanted = args.events * args.webhooks + fed
        began, last, last_moved = time.time(), None, time.time()
        while True:
            text = urllib.request.urlopen(metrics_url).read().decode()

            def metric(prefix):
                return sum(float(line.split()[-1]) for line in text.splitlines()
                           if line.startswith(prefix))

            succeeded = int(metric('herald_deliveries_total{outcome="succeeded"'))
            written = int(metric("herald_ledger_records_written_total"))
            ahead = int(metric("herald_deliveries_recorded_ahead_total"))
            read_back = int(metric("herald_deliveries_read_back_total"))
            print(f"{time.time() - began:6.0f} s  succeeded {succeeded}/{wanted}  written "
                  f"{written}  routed "
                  f"{int(metric('herald_events_routed_total'))}  in flight "
                  f"{int(metric('herald_events_in_flight'))}  recorded ahead "
                  f"{ahead}  read back {read_back}", flush=True)
            if succeeded >= wanted:
                took = time.time() - began
                # The last records are still on their way: count them once all are written.
                handed = metric("herald_ledger_batch_size_sum")
                until = time.time() + 120
                while written < handed and time.time() < until:
                    time.sleep(1)
                    text = urllib.request.urlopen(metrics_url).read().decode()
                    written = int(metric("herald_ledger_records_written_total"))
                    handed = metric("herald_ledger_batch_size_sum")
                print(f"DONE in {took:.0f} s: {written} records written for {wanted} "
                      f"deliveries ({written / wanted:.2f} each), {ahead} recorded ahead, "
                      f"{read_back} read back")
                break
            if (succeeded, written) != last:
                last, last_moved = (succeeded, written), time.time()
            elif time.time() - last_moved > 180:
                pending = db.deliveries.count_documents({"status": "pending"})
                print(f"STUCK: nothing succeeded or written for 180 s; {pending} pending in the "
                      "ledger")
                stuck = True
                break
            time.sleep(5)
    finally:
        if not args.keep:
            run.stop()
    sys.exit(1 if stuck else 0)


if __name__ == "__main__":
    main()

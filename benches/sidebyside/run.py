"""herald side by side with the open-source Svix server, in one run on this machine.

    cargo build --release --bin herald --example publisher
    .venv/bin/python benches/sidebyside/run.py --svix-server /path/to/svix-server \
        [--rounds 3] [--scenarios fanout,latency,api] [--secantus-storage memory] [--out DIR]

Needs Debian's nginx, postgresql and redis-server installed (not started as services: this
script starts its own), and an svix-server built from Svix's repository
(github.com/svix/svix-webhooks, `server/`; 4fc0cfb was measured) by whoever runs it.

Starts everything itself, on 127.0.0.1 only: nginx (Debian's) as the one HTTPS receiver of
both systems, behind a throwaway CA made with openssl; PostgreSQL and Redis for Svix;
SecantusDB (the MongoDB-compatible dev server, `scripts/secantus_quiet.py`) for herald.
Each round gets fresh state: a new dev server (and storage directory) and a new herald; a
new PostgreSQL database (migrated by svix-server itself), a flushed Redis and a new
svix-server. Rounds alternate: herald (events inserted into MongoDB), herald (POST
/v1/events), Svix (POST /api/v1/app/{app}/msg/), and again, `--rounds` times per scenario.

One publishing client serves both: the `publisher` example (Rust, one keep-alive HTTP/1.1
connection per concurrent publisher) for the HTTP APIs, pymongo for inserts. The receiver
logs `$msec $http_webhook_id $uri` per request (Svix runs with `whitelabel_headers`, so it sends
`webhook-id` too); throughput is deliveries counted in that log over first publish → last
receipt, latency is receipt time − the time the event's publish was sent (nginx's $msec has
millisecond resolution: 0.5 ms is added, the middle of the millisecond). CPU is read from
/proc/<pid>/stat around each round: the daemon alone, and its database(s) (PostgreSQL: the
postmaster and all its backends; Redis; the dev server).

Scenarios:
  fanout   10 endpoints, --fanout-events events published as fast as the path allows
  latency  1 endpoint, --latency-rate events/s paced for --latency-secs
  api      1 endpoint, --api-events events through the HTTP API by --publishers threads
  fanout_prefilled  (not in the default list) Svix's worker alone: the fan-out's messages
           published with svix-server's worker off, then drained by a new svix-server
  (herald is also published to by direct inserts into `events` in fanout and latency)

Nothing of Svix is in this file: it takes the path of an already built svix-server.
"""
import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENT_TYPE = "object.created"
CLK = os.sysconf("SC_CLK_TCK")
PG_BIN = "/usr/lib/postgresql/15/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, seconds=60, poll=0.1):
    until = time.time() + seconds
    last = None
    while time.time() < until:
        try:
            if check():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(poll)
    raise RuntimeError(f"{what} did not come up within {seconds} s ({last})")


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


# ---------------------------------------------------------------- CPU accounting

def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rfind(")") + 2:].split()


def cpu_self(pid):
    """utime + stime of pid (all its threads), in seconds."""
    try:
        s = _stat(pid)
    except OSError:
        return 0.0
    return (int(s[11]) + int(s[12])) / CLK


def cpu_with_reaped(pid):
    """pid's own CPU and its reaped children's (cutime + cstime)."""
    s = _stat(pid)
    return sum(int(x) for x in s[11:15]) / CLK


def cpu_tree(pid):
    """pid's own CPU, its reaped children's (cutime + cstime), and its live children's."""
    try:
        s = _stat(pid)
    except OSError:
        return 0.0
    total = sum(int(x) for x in s[11:15]) / CLK
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            c = _stat(d)
        except OSError:
            continue
        if c[1] == str(pid):
            total += (int(c[11]) + int(c[12])) / CLK
    return total


# ---------------------------------------------------------------- processes

class Procs:
    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []

    def start(self, cmd, log, env=None, cwd=None):
        out = open(os.path.join(self.logdir, log), "a")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=15):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p)


# ---------------------------------------------------------------- the receiver's log

class ReceiverLog:
    def __init__(self, path):
        self.path = path

    def offset(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def read(self, start):
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read()
        end = data.rfind(b"\n") + 1
        lines = []
        for line in data[:end].split(b"\n"):
            if line:
                t, wid, uri = line.decode().split(" ", 2)
                lines.append((float(t), wid, uri))
        return lines, start + end

    def wait_count(self, start, expected, timeout, stall=30.0):
        """Lines from `start` until `expected` of them, `timeout` s, or no new line for `stall` s."""
        lines, pos = [], start
        t_end = time.time() + timeout
        last_change = time.time()
        while time.time() < t_end:
            new, pos = self.read_from(pos)
            if new:
                lines += new
                last_change = time.time()
            if len(lines) >= expected:
                break
            if time.time() - last_change > stall:
                break
            time.sleep(0.05)
        return lines

    def read_from(self, pos):
        return self.read(pos)


# ---------------------------------------------------------------- publishing client

class HttpPublisher:
    """One keep-alive connection per thread."""

    def __init__(self, port, headers):
        self.port = port
        self.headers = dict(headers, **{"content-type": "application/json"})
        self.local = threading.local()

    def post(self, path, body):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("POST", path, body=body, headers=self.headers)
            r = conn.getresponse()
            data = r.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            self.local.conn = None
            raise
        return r.status, data


def run_pool(n_threads, items, fn):
    """fn(item) for each item, by n_threads threads; returns results in item order."""
    results = [None] * len(items)
    idx = iter(range(len(items)))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            results[i] = fn(items[i])

    ts = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def payload(i):
    return {"bucket_id": "bkt_bench", "object_id": f"obj_{i}",
            "metadata": {"i": i, "source": "sidebyside"}}


# ---------------------------------------------------------------- the systems

class Bench:
    def __init__(self, args):
        self.a = args
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.logdir = os.path.join(self.out, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.state = os.path.join(self.out, "state")
        shutil.rmtree(self.state, ignore_errors=True)
        os.makedirs(self.state)
        self.procs = Procs(self.logdir)
        self.results = []
        self.resfile = open(os.path.join(self.out, "results.jsonl"), "a")

    # --- shared infrastructure
    def start_infra(self):
        self.make_tls()
        self.start_nginx()
        self.start_postgres()
        self.start_redis()
        self.write_svix_config()

    def make_tls(self):
        d = os.path.join(self.state, "tls")
        os.makedirs(d)
        self.ca = os.path.join(d, "ca.pem")
        run = lambda *c: subprocess.run(c, check=True, cwd=d, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "7", "-subj", "/CN=sidebyside CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
        run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "7", "-extfile", "ext.cnf")
        self.tls_dir = d

    def start_nginx(self):
        self.rx_port = free_port()
        self.ceil_port = free_port()
        d = os.path.join(self.state, "nginx")
        os.makedirs(d)
        self.rx_log = os.path.join(self.logdir, "receiver-access.log")
        conf = f"""# the receiver of both systems: HTTPS, HTTP/1.1, 204 to every request
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {self.logdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format hook '$msec $http_webhook_id $uri';
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{self.rx_port} ssl;
        ssl_certificate {self.tls_dir}/server.pem;
        ssl_certificate_key {self.tls_dir}/server.key;
        access_log {self.rx_log} hook;
        location / {{ return 204; }}
    }}
    server {{
        # the publishing client's ceiling: what it does against a server that answers at once
        listen 127.0.0.1:{self.ceil_port};
        access_log off;
        location / {{ default_type application/json; return 202 '{{"id":"ceiling"}}'; }}
    }}
}}
"""
        self.nginx_conf = os.path.join(self.out, "nginx.conf")
        with open(self.nginx_conf, "w") as f:
            f.write(conf)
        self.nginx = self.procs.start(["nginx", "-c", self.nginx_conf, "-p", d], "nginx.log")
        wait_for("nginx", lambda: port_open(self.rx_port) and port_open(self.ceil_port))
        self.rxlog = ReceiverLog(self.rx_log)

    def start_postgres(self):
        self.pg_port = free_port()
        d = os.path.join(self.state, "pg")
        os.makedirs(d)
        as_pg = {}
        if os.geteuid() == 0:  # the postgres server refuses to run as root
            shutil.chown(d, "postgres", "postgres")
            as_pg = {"user": "postgres", "group": "postgres", "extra_groups": []}
        subprocess.run([f"{PG_BIN}/initdb", "-D", d, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, cwd="/", **as_pg)
        out = open(os.path.join(self.logdir, "postgres.log"), "a")
        self.pg = subprocess.Popen([f"{PG_BIN}/postgres", "-D", d, "-p", str(self.pg_port), "-k", d,
                                    "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]
                                   + [x for kv in self.a.pg_setting for x in ("-c", kv)],
                                   stdout=out, stderr=subprocess.STDOUT, cwd="/", **as_pg)
        self.procs.procs.append(self.pg)
        wait_for("postgres", lambda: subprocess.run(
            [f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.pg_port)],
            capture_output=True).returncode == 0)
        self.pg_pid = self.pg.pid

    def start_redis(self):
        self.redis_port = free_port()
        d = os.path.join(self.state, "redis")
        os.makedirs(d)
        self.redis = self.procs.start(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--dir", d, "--save", "", "--appendonly", "no"], "redis.log")
        wait_for("redis", lambda: port_open(self.redis_port))

    def write_svix_config(self):
        self.svix_dir = os.path.join(self.state, "svix")
        os.makedirs(self.svix_dir)
        self.svix_port = free_port()
        conf = f"""# svix-server's configuration for this run (config.toml in its working directory)
listen_address = "127.0.0.1:{self.svix_port}"
jwt_secret = "sidebyside-bench-jwt-secret-0123456789abcdef"
main_secret = "kPafCtH7KC351nWXQb2pEGa6IRW3OsYpzQJldB8X"
redis_dsn = "redis://127.0.0.1:{self.redis_port}"
queue_type = "redis"
cache_type = "memory"
whitelist_subnets = ["127.0.0.1/32"]
whitelabel_headers = true
log_level = "info"
"""
        with open(os.path.join(self.svix_dir, "config.toml"), "w") as f:
            f.write(conf)
        shutil.copy(os.path.join(self.svix_dir, "config.toml"), os.path.join(self.out, "svix-config.toml"))
        out = subprocess.run([self.a.svix_server, "jwt", "generate"], cwd=self.svix_dir,
                             capture_output=True, text=True, check=True)
        self.svix_token = out.stdout.strip().split()[-1]
        self.svix_env = dict(os.environ, SSL_CERT_FILE=self.ca)

    # --- per-round systems
    def start_herald(self, tag):
        d = os.path.join(self.state, f"db-{tag}")
        storage = ":memory:" if self.a.secantus_storage == "memory" else d
        if storage != ":memory:":
            os.makedirs(d)
        db_port = free_port()
        db = self.procs.start([self.a.python, self.a.secantus, "--host", "127.0.0.1", "--port", str(db_port),
                               "--storage-path", storage], f"secantus-{tag}.log")
        wait_for("secantus", lambda: port_open(db_port), 60)
        port = free_port()
        uri = f"mongodb://127.0.0.1:{db_port}/?directConnection=true"
        h = self.procs.start([self.a.herald, "serve", "--mongodb-uri", uri, "--database", "bench",
                              "--listen", f"127.0.0.1:{port}", "--ca-file", self.ca,
                              "--allow-private-networks", "127.0.0.1/32"] + self.a.herald_arg,
                             f"herald-{tag}.log", env=dict(os.environ, HERALD_LOG=self.a.log_filter))
        wait_for("herald", lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200, 60)
        return {"kind": "herald", "db": db, "daemon": h, "port": port, "uri": uri, "dir": d,
                "dbs": {"secantus": db.pid}}

    def herald_endpoints(self, sysd, n, tag):
        api = HttpPublisher(sysd["port"], {})
        for k in range(n):
            st, body = api.post("/v1/webhooks", json.dumps({
                "url": f"https://127.0.0.1:{self.rx_port}/{tag}/{k}", "event_types": [EVENT_TYPE],
                "name": f"{tag}-{k}", "secret": SECRET}))
            assert st == 201, (st, body)
        time.sleep(0.5)  # in effect in the answering daemon before the answer; a margin

    def start_svix(self, tag, extra_env=None, db=None):
        fresh = db is None
        db = db or f"svix_{tag}".replace("-", "_")
        if fresh:
            subprocess.run([f"{PG_BIN}/createdb", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", db],
                           check=True)
            subprocess.run(["redis-cli", "-p", str(self.redis_port), "flushall"], check=True, capture_output=True)
        env = dict(self.svix_env, RUST_LOG=self.a.log_filter, SVIX_DB_DSN=f"postgresql://postgres@127.0.0.1:{self.pg_port}/{db}",
                   **(extra_env or {}))
        p = self.procs.start([self.a.svix_server, "--run-migrations"], f"svix-{tag}.log", env=env, cwd=self.svix_dir)
        if (extra_env or {}).get("SVIX_API_ENABLED") == "false":
            time.sleep(1.0)
        else:
            wait_for("svix-server", lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{self.svix_port}/api/v1/health/", timeout=2).status in (200, 204), 120)
        return {"kind": "svix", "daemon": p, "port": self.svix_port, "dbname": db,
                "dbs": {"postgres": self.pg_pid, "redis": self.redis.pid}}

    def svix_endpoints(self, sysd, n, tag):
        api = HttpPublisher(sysd["port"], {"authorization": f"Bearer {self.svix_token}"})
        st, body = api.post("/api/v1/app/", json.dumps({"name": f"bench-{tag}"}))
        assert st == 201, (st, body)
        app = json.loads(body)["id"]
        for k in range(n):
            st, body = api.post(f"/api/v1/app/{app}/endpoint/", json.dumps({
                "url": f"https://127.0.0.1:{self.rx_port}/{tag}/{k}", "secret": SECRET}))
            assert st == 201, (st, body)
        sysd["app"] = app
        time.sleep(0.5)

    def stop_system(self, sysd):
        self.procs.stop(sysd["daemon"])
        if sysd["kind"] == "herald":
            self.procs.stop(sysd["db"])
            shutil.rmtree(sysd["dir"], ignore_errors=True)

    # --- publishing
    def publisher(self, sysd, via):
        """What `publish_one` publishes through: (MongoDB client, `events` collection) for
        "mongo", else (HTTP connection, the API path) of this system."""
        if via == "mongo":
            import pymongo
            client = pymongo.MongoClient(sysd["uri"], maxPoolSize=32)
            coll = client["bench"]["events"]
            return client, coll
        if sysd["kind"] == "herald":
            return HttpPublisher(sysd["port"], {}), "/v1/events"
        return (HttpPublisher(sysd["port"], {"authorization": f"Bearer {self.svix_token}"}),
                f"/api/v1/app/{sysd['app']}/msg/")

    def pub_http(self, sysd, mode, n, conc, rate, tag, port=None):
        """Publishes n events through the HTTP API with the `publisher` example:
        [(id, t_sent, t_answered, ok)]."""
        if port is not None:  # the client's ceiling: nginx answering at once
            cmd = [self.a.pubclient, mode, str(port), "/ceiling", str(n), str(conc), str(rate), "herald", tag]
        elif sysd["kind"] == "herald":
            cmd = [self.a.pubclient, mode, str(sysd["port"]), "/v1/events", str(n), str(conc), str(rate),
                   "herald", tag]
        else:
            cmd = [self.a.pubclient, mode, str(sysd["port"]), f"/api/v1/app/{sysd['app']}/msg/", str(n),
                   str(conc), str(rate), "svix", tag, self.svix_token]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        if out.stderr:
            with open(os.path.join(self.logdir, "pubclient-errors.log"), "a") as f:
                f.write(f"--- {tag}\n{out.stderr}")
        res = []
        for line in out.stdout.splitlines():
            i, t0, t1, st, rid = line.split(" ")
            res.append((rid, float(t0), float(t1), 200 <= int(st) < 300))
        return res

    def publish_one(self, sysd, via, pub, tag, i):
        """Publishes event i; returns (id, t_sent, t_answered, ok)."""
        if via == "mongo":
            _, coll = pub
            eid = f"evt_{tag}_{i}"
            t0 = time.time()
            coll.insert_one({"_id": eid, "event_type": EVENT_TYPE, "data": payload(i)})
            return eid, t0, time.time(), True
        conn, path = pub
        if sysd["kind"] == "herald":
            eid = f"evt_{tag}_{i}"
            body = json.dumps({"event_id": eid, "event_type": EVENT_TYPE, "data": payload(i)})
            t0 = time.time()
            st, _ = conn.post(path, body)
            return eid, t0, time.time(), st == 202
        body = json.dumps({"eventType": EVENT_TYPE, "payload": payload(i)})
        t0 = time.time()
        st, data = conn.post(path, body)
        t1 = time.time()
        ok = st in (200, 201, 202)
        return (json.loads(data)["id"] if ok else None), t0, t1, ok

    # --- measurement helpers
    def cpu_snapshot(self, sysd):
        snap = {"daemon": cpu_self(sysd["daemon"].pid), "receiver": cpu_tree(self.nginx.pid),
                "client": cpu_with_reaped(os.getpid())}
        for name, pid in sysd["dbs"].items():
            snap[name] = cpu_tree(pid) if name == "postgres" else cpu_self(pid)
        return snap

    def record(self, row):
        row["loadavg"] = loadavg()
        self.results.append(row)
        self.resfile.write(json.dumps(row) + "\n")
        self.resfile.flush()
        print(json.dumps(row), flush=True)

    def finish_round(self, sysd, start_off, expected, t_first, cpu0, pubs, timeout):
        lines = self.rxlog.wait_count(start_off, expected, timeout)
        time.sleep(self.a.settle)  # records written after the last delivery count too
        cpu1 = self.cpu_snapshot(sysd)
        cpu = {k: round(cpu1[k] - cpu0[k], 3) for k in cpu0}
        n = len(lines)
        t_last = max((l[0] for l in lines), default=t_first)
        return lines, n, t_last, cpu

    # --- scenarios
    def variants(self):
        v = []
        if "mongo" in self.a.herald_via:
            v.append(("herald", "mongo"))
        if "http" in self.a.herald_via:
            v.append(("herald", "http"))
        v.append(("svix", "http"))
        return v

    def scenario_fanout_prefilled(self, rnd, kind, via):
        """Svix only: its delivery rate alone. All events are created with the worker off
        (svix-server with worker_enabled=false), that server is stopped, then a worker-only
        svix-server drains the Redis queue; rate = deliveries / (first → last receipt)."""
        if kind != "svix":
            return
        tag = f"fp{rnd}s"
        n, fan = self.a.fanout_events, 10
        api = self.start_svix(tag, {"SVIX_WORKER_ENABLED": "false"})
        self.svix_endpoints(api, fan, tag)
        res = self.pub_http(api, "burst", n, self.a.publishers, 0, tag)
        oks = sum(1 for r in res if r[3])
        self.stop_system(api)
        off, load = self.rxlog.offset(), loadavg()
        pg0, rd0 = cpu_tree(self.pg_pid), cpu_self(self.redis.pid)
        w = self.start_svix(tag + "w", {"SVIX_API_ENABLED": "false"}, db=api["dbname"])
        try:
            cpu0 = self.cpu_snapshot(w)
            cpu0["postgres"], cpu0["redis"] = pg0, rd0
            t_start = time.time()
            lines, got, t_last, cpu = self.finish_round(w, off, n * fan, t_start, cpu0, None, self.a.round_timeout)
            t_first = min((l[0] for l in lines), default=t_start)
            dur = t_last - t_first
            row = {"scenario": "fanout", "round": rnd, "system": "svix", "via": "prefilled", "events": n,
                   "published_ok": oks, "expected": n * fan, "delivered": got,
                   "duration_s": round(dur, 3), "deliveries_per_s": round(got / dur if dur > 0 else 0, 1),
                   "cpu_s": cpu, "loadavg_start": load}
            self.add_cpu_per_k(row, got)
            self.record(row)
        finally:
            self.stop_system(w)

    def system_for(self, kind, tag, endpoints):
        if kind == "herald":
            s = self.start_herald(tag)
            self.herald_endpoints(s, endpoints, tag)
        else:
            s = self.start_svix(tag)
            self.svix_endpoints(s, endpoints, tag)
        # warm-up, not measured: the same path's first requests, connections and caches
        w = self.a.warmup
        if w:
            off = self.rxlog.offset()
            self.pub_http(s, "burst", w, self.a.publishers, 0, tag + "w")
            self.rxlog.wait_count(off, w * endpoints, 60, stall=10)
            time.sleep(1.0)
        return s

    @contextlib.contextmanager
    def system(self, kind, tag, endpoints, via=None):
        """A system started and warmed up for one round, with a publisher for `via` if
        given: (system, publisher). Stopped, its MongoDB client closed, however the round
        ends."""
        s = self.system_for(kind, tag, endpoints)
        pub = None
        try:
            if via is not None:
                pub = self.publisher(s, via)
            yield s, pub
        finally:
            if via == "mongo" and pub is not None:
                pub[0].close()
            self.stop_system(s)

    def round_start(self, sysd):
        """Where a measured round starts: the receiver log's offset, the load average and
        the CPU counters."""
        return self.rxlog.offset(), loadavg(), self.cpu_snapshot(sysd)

    def scenario_fanout(self, rnd, kind, via):
        tag = f"fo{rnd}{kind[0]}{via[0]}"
        n, fan = self.a.fanout_events, 10
        with self.system(kind, tag, fan, via) as (s, pub):
            off, load, cpu0 = self.round_start(s)
            t_first = time.time()
            if via == "mongo":
                _, coll = pub
                b = self.a.insert_batch
                for j in range(0, n, b):
                    coll.insert_many([{"_id": f"evt_{tag}_{i}", "event_type": EVENT_TYPE, "data": payload(i)}
                                      for i in range(j, min(n, j + b))], ordered=False)
                oks = n
            else:
                res = self.pub_http(s, "burst", n, self.a.publishers, 0, tag)
                oks = sum(1 for r in res if r[3])
                t_first = min(r[1] for r in res)
            t_pub = time.time()
            lines, got, t_last, cpu = self.finish_round(s, off, n * fan, t_first, cpu0, None, self.a.round_timeout)
            dur = t_last - t_first
            rate = got / dur if dur > 0 else 0
            row = {"scenario": "fanout", "round": rnd, "system": kind, "via": via, "events": n,
                   "published_ok": oks, "expected": n * fan, "delivered": got,
                   "publish_s": round(t_pub - t_first, 3), "duration_s": round(dur, 3),
                   "deliveries_per_s": round(rate, 1), "cpu_s": cpu, "loadavg_start": load}
            self.add_cpu_per_k(row, got)
            self.record(row)

    def add_cpu_per_k(self, row, deliveries):
        cpu = row["cpu_s"]
        dbs = sum(v for k, v in cpu.items() if k in ("postgres", "redis", "secantus"))
        k = max(deliveries, 1) / 1000.0
        row["cpu_per_1k_daemon"] = round(cpu["daemon"] / k, 4)
        row["cpu_per_1k_with_db"] = round((cpu["daemon"] + dbs) / k, 4)

    def scenario_latency(self, rnd, kind, via):
        tag = f"la{rnd}{kind[0]}{via[0]}"
        rate, secs = self.a.latency_rate, self.a.latency_secs
        n = int(rate * secs)
        with self.system(kind, tag, 1, via) as (s, pub):
            # warm the connections and the endpoint: a few events first, not measured
            for i in range(5):  # this path's own first requests (ids apart from the warm-up's)
                self.publish_one(s, via, pub, tag + "x", i)
            time.sleep(1.0)
            off, load, cpu0 = self.round_start(s)
            sent = {}
            errors = [0]
            lock = threading.Lock()
            t0 = time.time() + 0.2
            threads = self.a.latency_threads

            def pace(k):
                for i in range(k, n, threads):
                    d = t0 + i / rate - time.time()
                    if d > 0:
                        time.sleep(d)
                    eid, ts, ta, ok = self.publish_one(s, via, pub, tag, i)
                    with lock:
                        if ok:
                            sent[eid] = (ts, ta)
                        else:
                            errors[0] += 1

            if via == "mongo":
                ts_ = [threading.Thread(target=pace, args=(k,)) for k in range(threads)]
                for t in ts_:
                    t.start()
                for t in ts_:
                    t.join()
            else:
                for eid, ts, ta, ok in self.pub_http(s, "paced", n, threads, rate, tag):
                    if ok:
                        sent[eid] = (ts, ta)
                    else:
                        errors[0] += 1
            lines, got, t_last, cpu = self.finish_round(s, off, n, t0, cpu0, None, 120)
            lat = []
            for t, wid, _ in lines:
                if wid in sent:
                    lat.append((t + 0.0005 - sent[wid][0]) * 1000.0)
            api = [(a - b) * 1000.0 for b, a in sent.values()]
            row = {"scenario": "latency", "round": rnd, "system": kind, "via": via, "events": n,
                   "rate": rate, "delivered": got, "matched": len(lat), "errors": errors[0],
                   "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
                   "p999_ms": round(pct(lat, 99.9), 2), "max_ms": round(max(lat, default=0), 2),
                   "publish_p50_ms": round(pct(api, 50), 2), "publish_p99_ms": round(pct(api, 99), 2),
                   "cpu_s": cpu, "loadavg_start": load}
            self.add_cpu_per_k(row, got)
            self.record(row)

    def scenario_api(self, rnd, kind, via):
        tag = f"ap{rnd}{kind[0]}"
        n = self.a.api_events
        with self.system(kind, tag, 1) as (s, _):
            off, load, cpu0 = self.round_start(s)
            res = self.pub_http(s, "burst", n, self.a.publishers, 0, tag)
            t_first = min(r[1] for r in res)
            t_pub = max(r[2] for r in res)
            oks = sum(1 for r in res if r[3])
            lines, got, t_last, cpu = self.finish_round(s, off, n, t_first, cpu0, None, self.a.round_timeout)
            resp = [(r[2] - r[1]) * 1000.0 for r in res]
            dur = t_last - t_first
            row = {"scenario": "api", "round": rnd, "system": kind, "via": "http", "events": n,
                   "publishers": self.a.publishers, "published_ok": oks, "delivered": got,
                   "publish_s": round(t_pub - t_first, 3), "accepted_per_s": round(n / (t_pub - t_first), 1),
                   "duration_s": round(dur, 3), "delivered_per_s": round(got / dur if dur > 0 else 0, 1),
                   "api_p50_ms": round(pct(resp, 50), 2), "api_p99_ms": round(pct(resp, 99), 2),
                   "cpu_s": cpu, "loadavg_start": load}
            self.add_cpu_per_k(row, got)
            self.record(row)

    def client_ceiling(self):
        """The publishing client against nginx answering at once (plain HTTP), burst and paced."""
        n = self.a.api_events * 2
        c0 = cpu_with_reaped(os.getpid())
        res = self.pub_http(None, "burst", n, self.a.publishers, 0, "ceil", port=self.ceil_port)
        cpu = cpu_with_reaped(os.getpid()) - c0
        dur = max(r[2] for r in res) - min(r[1] for r in res)
        resp = [(r[2] - r[1]) * 1000.0 for r in res]
        self.record({"scenario": "client-ceiling", "requests": n, "publishers": self.a.publishers,
                     "ok": sum(1 for r in res if r[3]), "per_s": round(n / dur, 1),
                     "p50_ms": round(pct(resp, 50), 2), "p99_ms": round(pct(resp, 99), 2),
                     "client_cpu_s": round(cpu, 2)})

    def run(self):
        self.start_infra()
        info = {"scenario": "setup", "herald": self.a.herald, "svix_server": self.a.svix_server,
                "rx_port": self.rx_port, "pg_port": self.pg_port, "redis_port": self.redis_port,
                "secantus_storage": self.a.secantus_storage, "args": vars(self.a)}
        self.record(info)
        self.client_ceiling()
        for sc in self.a.scenarios.split(","):
            fn = getattr(self, f"scenario_{sc}")
            if sc == "fanout_prefilled":
                for rnd in range(1, self.a.rounds + 1):
                    fn(rnd, "svix", "prefilled")
                continue
            for rnd in range(1, self.a.rounds + 1):
                for kind, via in self.variants():
                    if sc == "api" and via == "mongo":
                        continue
                    try:
                        fn(rnd, kind, via)
                    except Exception as e:
                        self.record({"scenario": sc, "round": rnd, "system": kind, "via": via,
                                     "error": repr(e)})
        print_tables(self.results)

    def close(self):
        if getattr(self, "pg", None) is not None:
            self.procs.stop(self.pg, signal.SIGINT, 30)  # postgres: fast shutdown
        self.procs.stop_all()


# ---------------------------------------------------------------- tables

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def print_tables(results, file=sys.stdout):
    def rows(sc, system, via):
        return [r for r in results if r.get("scenario") == sc and r.get("system") == system
                and r.get("via") == via and "error" not in r]

    w = lambda s="": print(s, file=file)
    for r in results:
        if r.get("scenario") == "client-ceiling":
            w(f"client ceiling (nginx, plain HTTP, {r['publishers']} threads): {r['per_s']:,.0f} req/s, "
              f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
    spec = {
        "fanout": [("deliveries/s", "deliveries_per_s", True)],
        "latency": [("p50 ms", "p50_ms", False), ("p99 ms", "p99_ms", False), ("p99.9 ms", "p999_ms", False)],
        "api": [("delivered/s", "delivered_per_s", True), ("API p50 ms", "api_p50_ms", False),
                ("API p99 ms", "api_p99_ms", False)],
    }
    for sc, figs in spec.items():
        sv = rows(sc, "svix", "http")
        if sc == "fanout_prefilled":
            continue
        variants = [("herald", "mongo"), ("herald", "http"), ("svix", "http"), ("svix", "prefilled")]
        present = [(k, v) for k, v in variants if rows(sc, k, v)]
        if not present:
            continue
        w()
        w(f"### {sc}")
        for label, key, higher in figs + [("CPU s/1k deliveries, daemon", "cpu_per_1k_daemon", False),
                                          ("CPU s/1k deliveries, daemon + db", "cpu_per_1k_with_db", False)]:
            w()
            w(f"| {label} | " + " | ".join(f"round {i}" for i in range(1, 1 + max(len(rows(sc, k, v)) for k, v in present)))
              + " | median | herald/Svix | Svix/herald |")
            w("| --- |" + " ---: |" * (max(len(rows(sc, k, v)) for k, v in present) + 3))
            for k, v in present:
                rs = rows(sc, k, v)
                vals = [r.get(key) for r in rs]
                m = med(vals)
                ms = med([r.get(key) for r in sv])
                ratio = (m / ms) if (k == "herald" and ms and ms == ms) else None
                w(f"| {k} ({v}) | " + " | ".join(f"{x:,}" if x is not None else "-" for x in vals) + f" | {m:,.4g} | "
                  + (f"{ratio:.2f} | {1 / ratio:.2f}" if ratio else "— | —") + " |")
        w()
        w("load averages at each round's start: " + "; ".join(
            f"{r['system'][0]}{r['via'][0]}{r['round']}: {' '.join(r.get('loadavg_start', []))}"
            for r in results if r.get("scenario") == sc and "loadavg_start" in r))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(here))
    p.add_argument("--herald", default=os.path.join(root, "target/release/herald"),
                   help="herald's release binary")
    p.add_argument("--svix-server", required=True, help="an already built svix-server binary")
    p.add_argument("--herald-root", default=root,
                   help="herald checkout: its .venv (SecantusDB) and scripts/secantus_quiet.py")
    p.add_argument("--out", default=os.path.join(root, "target/sidebyside",
                                                 "run-" + time.strftime("%Y%m%d-%H%M%S")))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scenarios", default="fanout,latency,api")
    p.add_argument("--herald-via", default="mongo,http")
    p.add_argument("--fanout-events", type=int, default=3000)
    p.add_argument("--insert-batch", type=int, default=100)
    p.add_argument("--latency-rate", type=float, default=100)
    p.add_argument("--latency-secs", type=float, default=30)
    p.add_argument("--latency-threads", type=int, default=4)
    p.add_argument("--api-events", type=int, default=3000)
    p.add_argument("--publishers", type=int, default=16)
    p.add_argument("--round-timeout", type=float, default=300)
    p.add_argument("--settle", type=float, default=2.0, help="s after the last receipt before CPU is read")
    p.add_argument("--secantus-storage", choices=["disk", "memory"], default="disk")
    p.add_argument("--pg-setting", action="append", default=[],
                   help="extra PostgreSQL setting, e.g. synchronous_commit=off (default: Debian's defaults)")
    p.add_argument("--warmup", type=int, default=100, help="events published (HTTP) before each round, not measured")
    p.add_argument("--log-filter", default="warn", help="RUST_LOG for svix-server, HERALD_LOG for herald")
    p.add_argument("--herald-arg", action="append", default=[], help="extra `herald serve` argument")
    p.add_argument("--pubclient", default=os.path.join(root, "target/release/examples/publisher"),
                   help="the publishing client (cargo build --release --example publisher)")
    p.add_argument("--python", default=None, help="python with SecantusDB (default: herald-root/.venv)")
    a = p.parse_args()
    a.python = a.python or os.path.join(a.herald_root, ".venv/bin/python")
    a.secantus = os.path.join(a.herald_root, "scripts/secantus_quiet.py")
    a.herald = os.path.abspath(a.herald)
    a.svix_server = os.path.abspath(a.svix_server)
    b = Bench(a)
    try:
        b.run()
    finally:
        b.close()
        with open(os.path.join(a.out, "tables.md"), "w") as f:
            print_tables(b.results, f)


if __name__ == "__main__":
    main()

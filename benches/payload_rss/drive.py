"""One ~1 MiB event to N webhooks that all fail; then the database's share of it."""
import sys, time, datetime, bson, pymongo

uri, dbname, n, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
db = pymongo.MongoClient(uri)[dbname]
mode = sys.argv[5]
if mode == "setup":
    db.webhooks.insert_many([{
        "_id": "wh_%016x" % i, "url": "https://127.0.0.1:%d/h/%d" % (port, i),
        "event_types": ["*"], "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "enabled": True, "created_at": datetime.datetime.utcnow()} for i in range(n)])
elif mode == "event":
    db.events.insert_one({"_id": "evt_big", "event_type": "batch.completed",
                          "data": {"blob": "x" * 1_040_000}})
elif mode == "sizes":
    def size(coll, **kw):
        docs = list(db[coll].find(**kw))
        return len(docs), sum(len(bson.encode(d)) for d in docs)
    for coll in ["payloads", "deliveries"]:
        c, b = size(coll)
        print(f"{coll}: {c} documents, {b/1048576:.2f} MiB (BSON)")
    print("statuses:", {s: db.deliveries.count_documents({"status": s}) for s in ["pending", "failed", "succeeded"]})
    print("with inline payload:", db.deliveries.count_documents({"payload": {"$exists": True}}))

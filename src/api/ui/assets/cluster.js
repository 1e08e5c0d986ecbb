// The cluster (GET /v1/cluster): the daemons sharing this database, what each owns, its
// lag; and the partitions no live daemon holds.

import { get } from "./api.js";
import { badge, empty, facts, h, heading, short, table, time } from "./dom.js";

function ranges(partitions) {
  const sorted = [...partitions].sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}–${sorted[j]}`);
    i = j;
  }
  return out.join(", ");
}

export async function clusterView() {
  const cluster = await get("/v1/cluster");
  const members = cluster.members || [];
  const leases = cluster.leases || [];
  const live = new Set(members.filter((m) => m.live).map((m) => m.member_id));
  const orphaned = leases.filter((l) => !l.owner || !live.has(l.owner)).map((l) => l.partition);
  const seconds = (v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} s`);
  return h(
    "section",
    {},
    heading("Cluster"),
    facts([
      ["Partitions", String(cluster.partitions ?? "—")],
      ["Members", `${members.length} (${live.size} live)`],
      ["Not held by a live member", orphaned.length ? ranges(orphaned) : "none"],
    ]),
    members.length
      ? table(
          [
            { label: "Member" },
            { label: "Listen" },
            { label: "State" },
            { label: "Owns" },
            { label: "Partitions" },
            { label: "Feed lag" },
            { label: "Checkpoint age" },
            { label: "Heartbeat" },
            { label: "Version" },
          ],
          members.map((m) => [
            h("code", {}, m.member_id),
            m.listen || "—",
            badge(m.live ? "live" : "gone", m.live ? "succeeded" : "failed"),
            String(m.owned),
            short(ranges(m.partitions || []), 40),
            seconds(m.feed_lag_seconds),
            seconds(m.checkpoint_age_seconds),
            time(m.heartbeat_at),
            m.version || "—",
          ]),
          { class: "cluster" },
        )
      : empty("No member has registered yet."),
  );
}

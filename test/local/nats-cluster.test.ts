import { expect, it } from "vitest";
import { startTestCluster } from "../helpers/cluster.js";

const NS_PER_S = 1_000_000_000;

/**
 * `npm start -- --sync-interval=2m` (the usage's own example) ran the
 * servers with a sync interval of ~23 days: the config said `sync_interval: 2m`
 * unquoted, which nats-server reads as the number 2,000,000 (a size suffix)
 * of seconds. The value is now written quoted, which it reads as a duration.
 */
it.each([
  ["2m", { sync_interval: 120 * NS_PER_S }],
  ["always", { sync_always: true }],
])("sync interval %s reaches every server as %j (/varz)", async (syncInterval, want) => {
  const cluster = await startTestCluster({ syncInterval });
  try {
    for (const s of cluster.servers) {
      const res = await fetch(`http://127.0.0.1:${s.monitorPort}/varz`, { signal: AbortSignal.timeout(5000) });
      const varz = (await res.json()) as { jetstream?: { config?: Record<string, unknown> } };
      expect(varz.jetstream?.config, s.name).toMatchObject(want);
    }
  } finally {
    await cluster.dispose();
  }
});

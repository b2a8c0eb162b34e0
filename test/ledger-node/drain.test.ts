import { describe, expect, it, onTestFinished } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Codecs, Names } from "../../protocol/index.js";
import { decodeEntry } from "../../ledger/index.js";
import { createLedgerStore } from "../../nodes/ledger/index.js";
import type { LedgerStore } from "../../nodes/ledger/index.js";
import type { ChildProcess } from "node:child_process";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { spawnNode, until } from "../helpers/system.js";
import { headSize, ledgerIdentity, ledgerKv, publishEvents, startLedger } from "./helpers.js";

/** Event ids in ledger order, read block by block from the staged contents. */
async function ledgerOrder(store: LedgerStore): Promise<string[]> {
  const head = await store.readHead();
  const ids: string[] = [];
  for (let n = 0; head && n <= head.value.block; n++) {
    const ref = n === head.value.block ? head : await store.readBlockRef(n);
    const stage = await store.readStage(ref!.value.stage);
    for (const text of stage!.value.entries) ids.push(decodeEntry(new Uint8Array(Buffer.from(text, "base64"))).eventId);
  }
  return ids;
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once("exit", () => r())));

describe("ledger node drain", () => {
  const env = useProvisionedCluster();
  const id = ledgerIdentity();

  it("stopped gracefully mid-stream and restarted, several times: nothing is left delivered but unhandled, entries follow the stream order", async () => {
    const { nc, cluster } = env;
    const kv = await ledgerKv(nc);
    const jsm = await jetstreamManager(nc);
    const ledgerEnv = { FEN_LEDGER_BATCH_SIZE: "64", FEN_LEDGER_BATCH_MS: "20" };
    const N = 6000;
    const publishing = publishEvents(nc, "drain", 0, N, 128);
    // Should this test fail, its flow of events must end before the next test counts its own.
    onTestFinished(() => publishing.then(() => undefined, () => undefined));
    const left: number[] = [];
    // Each node has its own connection, drained after the node as main.ts does on SIGTERM; each is
    // stopped once it appended some entries itself, so that it is taking events as fast as it can.
    for (let cycle = 0; cycle < 3; cycle++) {
      const own = await connect({ servers: cluster.urls });
      const target = Math.min(N, (await headSize(kv)) + 300);
      const node = await startLedger(own, id, ledgerEnv);
      try {
        await until(`the head past ${target}`, async () => (await headSize(kv)) >= target, 90_000, 10);
      } finally {
        await node.drain();
        await own.drain();
      }
      expect(node.status()).toEqual({ state: "closed" });
      // No other ledger node runs: whatever is unacknowledged now was delivered to this one and left behind.
      left.push((await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer)).num_ack_pending);
    }
    const stoppedAt = await headSize(kv);
    const own = await connect({ servers: cluster.urls });
    const last = await startLedger(own, id, ledgerEnv);
    try {
      await publishing;
      await until(`all ${N} events appended`, async () => (await headSize(kv)) >= N, 90_000, 50);
    } finally {
      await last.drain();
      await own.drain();
    }
    const info = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer);

    const streamOrder: string[] = [];
    const reader = await jetstream(nc).consumers.get(Names.eventsStream);
    for await (const m of await reader.fetch({ max_messages: N, expires: 30_000 })) {
      streamOrder.push(Codecs.mailEvent.decode(m.data).eventId);
      if (streamOrder.length === N) break;
    }
    const ledger = await ledgerOrder(createLedgerStore(kv, jsm));
    const firstOff = ledger.findIndex((e, i) => e !== streamOrder[i]);
    console.log(`ledger drain: left unacknowledged by each stop ${left.join(", ")} (head ${stoppedAt} after the third); ` +
      `deliveries ${info.delivered.consumer_seq} for ${info.delivered.stream_seq} events; first entry out of stream order ${firstOff}`);
    expect(left).toEqual([0, 0, 0]);
    // Each event delivered once: none came back after ack_wait (or a nak).
    expect(info.delivered.consumer_seq).toBe(info.delivered.stream_seq);
    expect(info.num_ack_pending).toBe(0);
    expect(ledger.length).toBe(N);
    expect(firstOff, `the ledger departs from the stream order at entry ${firstOff}`).toBe(-1);
  }, 240_000);

  it("a ledger process sent SIGTERM under load leaves no event delivered but unhandled, and exits 0", async () => {
    const { nc, cluster } = env;
    const kv = await ledgerKv(nc);
    const jsm = await jetstreamManager(nc);
    const base = await headSize(kv);
    const before = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer);
    const N = 8000;
    const publishing = publishEvents(nc, "drain-sigterm", 0, N, 128);
    const child = spawnNode("ledger", {
      ...id.env, FEN_NATS_URLS: cluster.urls.join(","), FEN_LEDGER_BATCH_SIZE: "64", FEN_LEDGER_BATCH_MS: "20",
      FEN_NODE_NAME: "ledger-sigterm", FEN_HTTP_PORT: String(await freePort()),
    }, `${cluster.dir}/ledger-sigterm.log`);
    let killedAt = 0;
    let stopMs = 0;
    try {
      killedAt = await until("the process to append", async () => { const n = await headSize(kv); return n >= base + 300 && n; }, 90_000, 10);
      const t0 = Date.now();
      child.kill("SIGTERM");
      await exited(child);
      stopMs = Date.now() - t0;
    } finally {
      child.kill("SIGKILL");
    }
    expect(child.exitCode).toBe(0);
    const atStop = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer);
    const exitedAt = await headSize(kv);
    await publishing;
    const own = await connect({ servers: cluster.urls });
    const node = await startLedger(own, id, { FEN_LEDGER_BATCH_SIZE: "64", FEN_LEDGER_BATCH_MS: "20" });
    try {
      await until(`all ${N} events appended`, async () => (await headSize(kv)) >= base + N, 90_000, 50);
    } finally {
      await node.drain();
      await own.drain();
    }
    const info = await jsm.consumers.info(Names.eventsStream, Names.ledgerConsumer);
    console.log(`ledger SIGTERM: head ${killedAt - base} of ${N} new events at the signal, ${exitedAt - base} when it exited ${stopMs} ms later, ` +
      `${atStop.num_ack_pending} left unacknowledged; ` +
      `deliveries ${info.delivered.consumer_seq - before.delivered.consumer_seq} for ${N} events`);
    expect(atStop.num_ack_pending).toBe(0);
    expect(info.delivered.stream_seq - before.delivered.stream_seq).toBe(N);
    expect(info.delivered.consumer_seq - before.delivered.consumer_seq).toBe(N);
  }, 180_000);
});

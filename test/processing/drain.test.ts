import { describe, expect, it, onTestFinished } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Codecs, Names, mailIdFromIdempotencyKey, workSubject } from "../../protocol/index.js";
import type { WorkItem } from "../../protocol/index.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { startProcessing, until } from "../helpers/system.js";

/** A small work item as the gateway writes it, its body inline, its Message-ID `<drain-i@example.org>`. */
function workItem(i: number): WorkItem {
  const messageId = `<drain-${i}@example.org>`;
  const raw = Buffer.from(`From: a@example.org\r\nTo: b@example.net\r\nSubject: drain ${i}\r\nMessage-ID: ${messageId}\r\n\r\nbody ${i}\r\n`);
  return {
    kind: "mail.work", v: 1, mailId: mailIdFromIdempotencyKey(`drain-${i}`), messageId, submittedAt: new Date().toISOString(),
    envelope: { from: "a@example.org", to: ["b@example.net"] }, size: raw.length, body: { inline: raw.toString("base64") }, released: false,
  };
}

describe("processing node drain", () => {
  const env = useProvisionedCluster();

  it("stopped gracefully under a steady flow and restarted, many times: no work item is left to wait out ack_wait, every mail delivered once", async () => {
    const { nc, cluster } = env;
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    // A relay that takes 20 ms per message keeps deliveries in flight when a stop begins.
    const sink = await startSmtpSink({ delayMs: 20 });
    onTestFinished(() => sink.close());
    // About what one node delivers here, so that it pulls all the time; a work item lost at a stop is a race
    // with the stop (a pull answered as it unsubscribes), hence many stops.
    const N = 4000;
    const PER_SECOND = 200;
    const CHUNK = 10;
    const publishing = (async () => {
      const t0 = Date.now();
      for (let i = 0; i < N; i += CHUNK) {
        const due = t0 + (i / PER_SECOND) * 1000;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
        await Promise.all(Array.from({ length: Math.min(CHUNK, N - i) }, async (_, k) => {
          const item = workItem(i + k);
          await js.publish(workSubject(item.mailId), Codecs.workItem.encode(item), { msgID: item.mailId });
        }));
      }
    })();
    const consumerInfo = () => jsm.consumers.info(Names.workStream, Names.workConsumer);
    // Nodes connect to a server other than the consumer's leader, as two of three do: what a node asks for and
    // gives up reaches the leader through a route.
    const leader = (await consumerInfo()).cluster?.leader;
    const away = cluster.servers.filter((s) => s.name !== leader).map((s) => s.url);
    const nodeEnv = { FEN_CONCURRENCY: "32" };
    const left: number[] = [];
    const toAckWait: number[] = [];
    const stopMs: number[] = [];
    // Each node has its own connection, drained after the node as main.ts does on SIGTERM; each is stopped once
    // it delivered some mails itself, so that it is pulling as fast as it can.
    for (let cycle = 0; cycle < 16; cycle++) {
      const own = await connect({ servers: away });
      const target = sink.messages.length + 100;
      const node = await startProcessing(own, sink.port, nodeEnv);
      try {
        await until(`${target} mails delivered`, () => sink.messages.length >= target, 60_000, 10);
      } finally {
        const t0 = Date.now();
        await node.drain();
        stopMs.push(Date.now() - t0);
        await own.drain();
      }
      expect(node.status()).toEqual({ state: "closed" });
      // No processing node runs: a work item unacknowledged now was delivered to the stopped one and waits out
      // ack_wait (10 s; until then it counts at every later stop too). A nak or a retry after a failure would
      // be back within a few seconds; an acknowledgement may take a moment to reach the consumer's leader.
      const ackPending = async () => (await consumerInfo()).num_ack_pending;
      const l = await until("nothing left unacknowledged", async () => (await ackPending()) === 0 && 0, 3000, 100).catch(ackPending);
      left.push(l);
      // Of those, the server hands some out again at once (it takes back what it had not sent yet when the pull
      // request lost its subscriber): a probe takes what it is given first, redeliveries first, and naks it.
      let again = 0;
      if (l > 0) {
        for await (const m of await (await js.consumers.get(Names.workStream, Names.workConsumer)).fetch({ max_messages: l, expires: 1000 })) {
          if (m.info.redelivered) again++;
          m.nak();
        }
        await nc.flush();
      }
      toAckWait.push(l - again);
    }
    const own = await connect({ servers: away });
    const last = await startProcessing(own, sink.port, nodeEnv);
    try {
      await publishing;
      await until(`all ${N} work items acknowledged`, async () => {
        const info = await consumerInfo();
        return info.delivered.stream_seq >= N && info.num_pending === 0 && info.num_ack_pending === 0;
      }, 120_000, 100);
    } finally {
      await last.drain();
      await own.drain();
    }
    const info = await consumerInfo();
    const counts = new Map<string, number>();
    for (const m of sink.messages) counts.set(m.messageId ?? "?", (counts.get(m.messageId ?? "?") ?? 0) + 1);
    const twice = [...counts.values()].filter((c) => c > 1).length;
    const lost = Array.from({ length: N }, (_, i) => workItem(i).messageId).filter((id) => !counts.has(id)).length;
    console.log(`processing drain: left unacknowledged by each stop ${left.join(", ")}, of which waiting out ack_wait ${toAckWait.join(", ")} ` +
      `(stops took ${stopMs.join(", ")} ms); ` +
      `deliveries ${info.delivered.consumer_seq} for ${info.delivered.stream_seq} work items; ${twice} mails delivered twice, ${lost} lost`);
    expect(left).toEqual(left.map(() => 0));
    expect(toAckWait).toEqual(toAckWait.map(() => 0));
    // (Deliveries are printed, not asserted equal to the work items: a work item naked for a transient store fault
    // on a loaded machine is delivered again, which is no stop's doing.)
    expect(twice).toBe(0);
    expect(lost).toBe(0);
  }, 240_000);
});

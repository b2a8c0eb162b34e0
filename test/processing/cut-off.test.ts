import { expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { CLAIM_TTL_MS } from "../../protocol/index.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import { startTestCluster } from "../helpers/cluster.js";
import { connectAndProvision, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * A processing node cut off from NATS while the relay accepts a mail: its keep-alives and claim renewals are
 * lost, the work item's ack wait runs out and the claim grows older than CLAIM_TTL_MS. Once the node is back,
 * JetStream gives it the item again, and before it recorded the outcome it still held, the copy found an
 * abandoned claim and sent the mail a second time, from the same node (a reviewer's run: two copies at the
 * relay, the history ending Sent at attempt 2, the first 250 lost).
 */
it("a node cut off from NATS longer than a claim lives does not send again the mail it is still recording", async () => {
  const cluster = await startTestCluster();
  const admin = await connectAndProvision(cluster.urls.slice(1));
  // The relay holds each reply 3 s: the whole message is in when the node's server goes away.
  const sink = await startSmtpSink({ delayMs: 3000 });
  const gateway = await startGateway(admin);
  // The node knows one server only, so killing it cuts the node off while the rest of the cluster goes on.
  const nc = await connect({ servers: [cluster.servers[0]!.url], ignoreClusterUpdates: true, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  const node = await startProcessing(nc, sink.port);
  try {
    const mail = await submit(admin, structured("cut-off", { key: "cut-off" }));
    await until("the whole message at the relay, its reply held", async () => sink.awaitingReply() === 1, 30_000, 20);
    await cluster.kill(0);
    await new Promise((r) => setTimeout(r, CLAIM_TTL_MS + 5_000));
    await cluster.restart(0);
    const sent = await until("Sent", async () => { const s = await status(admin, mail.mailId); return s.state === "Sent" && s; }, 60_000, 250);
    // A copy the node put back comes again after CLAIM_RECHECK_MS and finds the mail Sent: wait for it.
    await new Promise((r) => setTimeout(r, 5_000));
    expect(sink.messages.filter((m) => m.messageId === mail.messageId)).toHaveLength(1);
    expect(sent.attempt).toBe(1);
    expect((await status(admin, mail.mailId)).history.map((e) => `${e.state}#${e.attempt}`)).toEqual([
      "PendingProcessing#0", "Processing#1", "Validated#1", "DeliveryScheduled#1", "Sent#1",
    ]);
  } finally {
    await Promise.race([Promise.all([node.drain(), gateway.drain()]), new Promise((r) => setTimeout(r, 15_000))]);
    await sink.close();
    await nc.close();
    await admin.close();
    await cluster.dispose();
  }
}, 180_000);

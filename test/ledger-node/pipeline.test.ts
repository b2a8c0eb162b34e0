import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, MAX_RECIPIENTS } from "../../protocol/index.js";
import type { Actor } from "../../nodes/common/actor.js";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";
import { connectAndProvision, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";
import { ledgerCli, ledgerIdentity, startLedger } from "./helpers.js";

describe("ledger through the real pipeline", () => {
  let cluster: TestCluster;
  let nc: NatsConnection;
  let sink: SmtpSink;
  const actors: Actor[] = [];
  const id = ledgerIdentity();

  beforeAll(async () => {
    cluster = await startTestCluster();
    nc = await connectAndProvision(cluster.urls);
    sink = await startSmtpSink({});
    actors.push(await startGateway(nc), await startProcessing(nc, sink.port), await startLedger(nc, id));
  });
  afterAll(async () => {
    for (const a of actors.reverse()) await a.drain();
    await sink?.close();
    await nc?.close();
    await cluster?.dispose();
  });

  it("a sent mail's status carries its ledger entries, and `ledger prove` gives a receipt that verifies offline", async () => {
    const reply = await submit(nc, structured("ledger-e2e", { key: "ledger-e2e", to: ["alice@example.net", "bob@example.net"] }));
    const st = await until("Sent with 5 ledger entries", async () => {
      const s = await status(nc, reply.mailId);
      return s.state === "Sent" && (s.ledger?.length ?? 0) === s.history.length && s;
    }, 30_000, 100);
    expect(st.ledger!.map((l) => l.eventId)).toEqual(st.history.map((e) => e.eventId));
    expect(st.history.map((e) => e.state)).toEqual(["PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Sent"]);

    const server = cluster.urls.join(",");
    const proved = await ledgerCli(["prove", reply.mailId, "--server", server], {});
    expect(proved.code).toBe(0);
    expect(proved.stdout).not.toContain("example.net");
    const file = path.join(cluster.dir, "e2e-receipt.json");
    await writeFile(file, proved.stdout);
    const ok = await ledgerCli(["verify-receipt", file, "--key", id.verifierKey, "--json"], {});
    expect(ok.code).toBe(0);
    const v = JSON.parse(ok.stdout) as { ok: boolean; mailId: string; entries: { state: string }[] };
    expect(v).toMatchObject({ ok: true, mailId: reply.mailId });
    expect(v.entries.map((e) => e.state)).toEqual(st.history.map((e) => e.state));
    const audit = await ledgerCli(["verify", "--server", server, "--key", id.verifierKey], {});
    expect(audit.stdout).toContain("ledger OK: 5 entries");
    expect(audit.stdout).toContain("trust root: the key given with --key");
    expect(audit.code).toBe(0);
  }, 60_000);

  it("a mail with the most recipients a mail may have is recorded whole; one more is refused with TOO_MANY_RECIPIENTS", async () => {
    // Addresses of 253 characters, the longest smtp-server takes (RFC 5321's 256-octet path): the events
    // and the status reply are large; the entries are not (recipients are 64-hex commitments).
    const domain = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(57)}.net`;
    const rcpt = (i: number) => `${String(i).padStart(4, "0")}${"l".repeat(59)}@${domain}`;
    const to = Array.from({ length: MAX_RECIPIENTS }, (_, i) => rcpt(i));
    const half = MAX_RECIPIENTS / 2;
    const req = structured("many", { key: "many-rcpts" });
    const reply = await submit(nc, { ...req, mail: { ...req.mail, to: to.slice(0, half), bcc: to.slice(half) } });
    const st = await until("Sent with every event in the ledger", async () => {
      const s = await status(nc, reply.mailId);
      return s.state === "Sent" && (s.ledger?.length ?? 0) === s.history.length && s;
    }, 60_000, 200);
    expect(st.history.map((e) => e.state)).toEqual(["PendingProcessing", "Processing", "Validated", "DeliveryScheduled", "Sent"]);
    expect(sink.messages.find((m) => m.messageId === reply.messageId)?.to).toHaveLength(MAX_RECIPIENTS);
    // The status reply gives the recipients once, not once per event.
    expect(st.recipients).toHaveLength(MAX_RECIPIENTS);
    expect(st.history.every((e) => e.recipients === undefined)).toBe(true);
    // NATS's default max_payload is 1 MiB (the test cluster allows 16): the reply must fit the default.
    const replyBytes = Codecs.statusReply.encode(st).length;
    expect(replyBytes).toBeLessThan(1024 * 1024);
    console.log(`status reply of a mail with ${MAX_RECIPIENTS} recipients of 253 characters: ${replyBytes} bytes`);

    const over = structured("too-many", { key: "too-many-rcpts" });
    await expect(submit(nc, { ...over, mail: { ...over.mail, to: to.slice(0, half), cc: [rcpt(-1)], bcc: to.slice(half) } }))
      .rejects.toMatchObject({ code: "TOO_MANY_RECIPIENTS", fields: [expect.objectContaining({ field: "mail" })] });
  }, 90_000);
});

/**
 * SMTP delivery per connection (a script, not a test): N mails of B bytes
 * sent one after another over ONE pooled connection to Postfix's smtp-sink,
 * by the processing node's delivery (`createDelivery`: nodemailer on a
 * socket with Nagle's algorithm off) and, alternately in the same run, by
 * nodemailer with its defaults (Nagle on), which is what the node used
 * before, and Postfix's `smtp-source` (a C SMTP client) on one session as
 * the peer's figure. Medians of R rounds each.
 *
 * usage: npm run bench:smtp -- [--mails 300] [--bytes 2000] [--rounds 5] [--json]
 * Last line: one JSON object with ms_per_mail and mails_per_second for each.
 */
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { createDelivery } from "../../nodes/processing/index.js";
import { freePort } from "../../nodes/local/nats-cluster.js";
import { ensureSmtpSink } from "./peers/postfix.js";
import { benchCli, cleanupOnSignal } from "./args.js";

const cli = benchCli("bench:smtp", "usage: npm run bench:smtp -- [--mails 300] [--bytes 2000] [--rounds 5] [--json]", {
  mails: { type: "string", default: "300" }, bytes: { type: "string", default: "2000" },
  rounds: { type: "string", default: "5" }, json: { type: "boolean", default: false },
});
const a = cli.values;
const N = cli.count("mails", 1), BYTES = cli.count("bytes", 1), ROUNDS = cli.count("rounds", 1);
const log = (s: string) => process.stderr.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

await ensureSmtpSink(log);
const port = await freePort();
const sink = spawn("smtp-sink", ["-u", "postfix", `127.0.0.1:${port}`, "1000"], { stdio: "ignore" });
cleanupOnSignal(async () => { sink.kill(); });
try {
  await new Promise((r) => setTimeout(r, 500));
  const envelope = { from: "bench@example.org", to: ["sink@example.net"] };
  const raw = Buffer.from(`From: bench@example.org\r\nTo: sink@example.net\r\nSubject: bench\r\n\r\n${"x".repeat(Math.max(0, BYTES - 80)).replace(/(.{76})/g, "$1\r\n")}\r\n`);

  const ours = createDelivery({ host: "127.0.0.1", port, secure: false, requireTls: false, tlsRejectUnauthorized: true, poolSize: 1, timeoutMs: 10_000, transactionTimeoutMs: 60_000 });
  const plain = nodemailer.createTransport({ pool: true, host: "127.0.0.1", port, maxConnections: 1, maxMessages: Infinity });
  const sendOurs = async () => { const o = await ours.send(envelope, raw); if (o.kind !== "sent") throw new Error(`not sent: ${JSON.stringify(o)}`); };
  const sendPlain = async () => { await plain.sendMail({ envelope, raw }); };
  // One mail each first, so that connecting is not timed.
  await sendOurs();
  await sendPlain();

  const time = async (send: () => Promise<void>) => {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await send();
    return (performance.now() - t0) / N;
  };
  // The peer: Postfix's smtp-source, N mails of B bytes in one session (its connect is timed too).
  const timeSmtpSource = async () => {
    const t0 = performance.now();
    await promisify(execFile)("smtp-source", ["-s", "1", "-m", String(N), "-l", String(BYTES), "-f", envelope.from, "-t", envelope.to[0]!, `127.0.0.1:${port}`]);
    return (performance.now() - t0) / N;
  };
  const msOurs: number[] = [], msPlain: number[] = [], msPeer: number[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    msOurs.push(await time(sendOurs));
    msPlain.push(await time(sendPlain));
    msPeer.push(await timeSmtpSource());
    log(`round ${r}/${ROUNDS} (ms per mail): no-delay ${msOurs.at(-1)!.toFixed(2)}, nodemailer defaults ${msPlain.at(-1)!.toFixed(2)}, smtp-source ${msPeer.at(-1)!.toFixed(2)}`);
  }
  ours.close();
  plain.close();
  const o = median(msOurs), p = median(msPlain), q = median(msPeer);
  const result = {
    mails: N, bytes: BYTES, rounds: ROUNDS, connections: 1,
    ms_per_mail: +o.toFixed(3), mails_per_second: Math.round(1000 / o),
    nodemailer_defaults_ms_per_mail: +p.toFixed(3), nodemailer_defaults_mails_per_second: Math.round(1000 / p),
    speedup: +(p / o).toFixed(1),
    peer: "postfix smtp-source, one session", peer_ms_per_mail: +q.toFixed(3), peer_mails_per_second: Math.round(1000 / q),
  };
  console.log(a.json ? JSON.stringify(result) : JSON.stringify(result, null, 2));
} finally {
  sink.kill();
}

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, FenError, ServiceSubjects, quarantineRequestSubject } from "../../protocol/index.js";
import type { ErrorCode, FieldError, QuarantineRequest, RecipientRefusal, SubmitRequest } from "../../protocol/index.js";
import { cliError, connectCli } from "../common/nats.js";
import { callService } from "../common/rpc.js";
import { parseDecimal } from "../common/decimal.js";

/** Streams and environment the CLI works with (injected for tests). */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
}

const USAGE = `usage: fastemailnet <command> [options]

commands:
  send      --from ADDR --to ADDR[,ADDR] [--cc ..] [--bcc ..] [--subject S] [--text T | --text-file F]
            [--html H] [--key IDEMPOTENCY_KEY] [--json]
  send      --raw FILE --from ADDR --to ADDR[,ADDR] [--key IDEMPOTENCY_KEY] [--json]   (an RFC 5322 file as is)
  status    MAIL_ID [--json]
  queue     [--limit N] [--after SEQ] [--json]   the mails not yet settled (mailq)
  classify  [--json] [--threshold T] [--model DIR] FILE... (or - for stdin; classify --help)
  quarantine list [--limit N] [--after SEQ] [--json] | release MAIL_ID --reason R | delete MAIL_ID --reason R
  ledger    verify [--json] [--key PUBKEY] | prove MAIL_ID | verify-receipt FILE --key PUBKEY [--origin O]
            | consistency FILE --key PUBKEY [--save FILE]   (ledger --help)

NATS servers: --server URL[,URL], FEN_NATS_URLS or NATS_URL (default nats://127.0.0.1:4222);
credentials: FEN_NATS_USER / FEN_NATS_PASSWORD; NATS_USER / NATS_PASSWORD only go with NATS_URL's servers
(not with --server or FEN_NATS_URLS: a password exported for one cluster is not sent to another).
Exit codes: 0 ok, 1 failed (or no cluster reachable), 2 usage error, 3 the request failed with a code (printed;
a transient one, e.g. NO_REPLY or STORE_UNAVAILABLE, may have been carried out: repeat it, a send with the same
--key is answered as a duplicate if it was stored; see protocol/ERRORS.md);
classify and ledger have their own (classify --help, ledger --help).
With --json a failure is printed on stdout too, as the wire's error reply: {"kind":"error","v":1,"code":…,"message":…,"fields":[…]}.`;

/** Entry point of the CLI; returns the exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  const out = (s: string) => io.stdout.write(`${s}\n`);
  const err = (s: string) => io.stderr.write(`${s}\n`);
  // With --json a script reads stdout: a failure is one JSON object there too (the wire's error reply), not silence.
  const json = command !== "classify" && command !== "ledger" && rest.includes("--json");
  const failed = (code: ErrorCode, message: string, fields: readonly FieldError[] = []) => {
    if (json) out(Buffer.from(Codecs.errorReply.encode({ kind: "error", v: 1, code, message, fields: [...fields] })).toString());
  };
  try {
    if ((command === "send" || command === "status" || command === "queue" || command === "quarantine") && rest.some((a) => a === "--help" || a === "-h")) {
      out(USAGE);
      return 0;
    }
    switch (command) {
      case "send": return await send(rest, io, out);
      case "status": return await status(rest, io, out);
      case "queue": return await queue(rest, io, out);
      case "quarantine": return await quarantine(rest, io, out);
      case "classify": {
        const { runClassifyCommand } = await import("../classifier/cli.js");
        return await runClassifyCommand(rest, { stdout: io.stdout, stderr: io.stderr, stdin: io.stdin });
      }
      case "ledger": {
        const mod = await import("../ledger/cli.js");
        return await mod.runLedgerCommand(rest, io);
      }
      case undefined: case "help": case "--help": case "-h":
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        err(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    // node:util parseArgs: an unknown option, a missing option value, a stray positional.
    if (String((e as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS")) {
      failed("BAD_REQUEST", `usage error: ${(e as Error).message}`);
      err(`usage error: ${(e as Error).message}\n\n${USAGE}`);
      return 2;
    }
    const fe = cliError(e);
    if (!fe) {
      failed("INTERNAL", (e as Error).message ?? String(e));
      err(`error: ${(e as Error).message ?? String(e)}`);
      return 1;
    }
    failed(fe.code, fe.message, fe.fields);
    err(`error ${fe.code}: ${fe.message}`);
    for (const f of fe.fields) err(`  ${f.field || "(request)"}: ${f.code} ${f.message}`);
    if (fe.code === "BAD_REQUEST" && fe.message.startsWith("usage")) return 2;
    return fe.code === "NATS_UNREACHABLE" ? 1 : 3; // unreachable: the request was never sent
  }
}

const connectFrom = (server: string | undefined, io: CliIo): Promise<NatsConnection> => connectCli(server, io.env, "fastemailnet-cli");

const list = (s: string | undefined) => (s ? s.split(",").map((x) => x.trim()).filter(Boolean) : []);

async function send(argv: string[], io: CliIo, out: (s: string) => void): Promise<number> {
  const { values: o } = parseArgs({
    args: argv,
    options: {
      server: { type: "string" }, from: { type: "string" }, to: { type: "string" }, cc: { type: "string" },
      bcc: { type: "string" }, subject: { type: "string" }, text: { type: "string" }, "text-file": { type: "string" },
      html: { type: "string" }, raw: { type: "string" }, key: { type: "string" }, json: { type: "boolean", default: false },
    },
  });
  if (!o.from || !o.to) throw new FenError("BAD_REQUEST", "usage: send needs --from and --to");
  // An unreadable file is the caller's mistake (exit 2), named with its option.
  const read = (option: string, file: string) => readFile(file).catch((e: unknown) => {
    throw new FenError("BAD_REQUEST", `usage: ${option} ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  });
  const text = o["text-file"] ? (await read("--text-file", o["text-file"])).toString("utf8") : o.text;
  const req: SubmitRequest = o.raw
    ? { kind: "mail.submit", v: 1, ...(o.key ? { idempotencyKey: o.key } : {}), mail: { raw: (await read("--raw", o.raw)).toString("base64"), envelope: { from: o.from, to: list(o.to) } } }
    : {
      kind: "mail.submit", v: 1, ...(o.key ? { idempotencyKey: o.key } : {}),
      mail: {
        from: o.from, to: list(o.to), cc: list(o.cc), bcc: list(o.bcc), subject: o.subject ?? "", headers: {}, attachments: [],
        ...(text !== undefined ? { text } : {}), ...(o.html !== undefined ? { html: o.html } : {}),
      },
    };
  const nc = await connectFrom(o.server, io);
  try {
    const reply = await callService(nc, ServiceSubjects.submit, Codecs.submitRequest, req, Codecs.submitReply, 30_000);
    out(o.json ? JSON.stringify(reply) : `${reply.duplicate ? "duplicate of" : "accepted"} ${reply.mailId} ${reply.messageId}`);
    return 0;
  } finally {
    await nc.close();
  }
}

/** `refused a@x 550, b@y 450 (+3 more)`: the recipients a relay refused in one attempt. */
function refusedText(rejected: readonly RecipientRefusal[] | undefined): string {
  if (!rejected?.length) return "";
  const shown = rejected.slice(0, 3).map((x) => `${x.recipient} ${x.smtp?.code ?? "?"}`).join(", ");
  return `refused ${shown}${rejected.length > 3 ? ` (+${rejected.length - 3} more)` : ""}`;
}

async function status(argv: string[], io: CliIo, out: (s: string) => void): Promise<number> {
  const { values: o, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { server: { type: "string" }, json: { type: "boolean", default: false } } });
  const mailId = positionals[0];
  if (!mailId || positionals.length > 1) throw new FenError("BAD_REQUEST", "usage: status MAIL_ID");
  const nc = await connectFrom(o.server, io);
  try {
    const r = await callService(nc, ServiceSubjects.status, Codecs.statusRequest, { kind: "mail.status", v: 1, mailId: mailId as never }, Codecs.statusReply);
    if (o.json) { out(JSON.stringify(r)); return 0; }
    out(`${r.mailId}  ${r.state}  attempt ${r.attempt}  updated ${r.updatedAt}`);
    for (const e of r.history) {
      const d = e.detail;
      // A deferral's error message quotes the relay's reply already: print it once.
      const quoted = d.smtp !== undefined && d.error !== undefined && d.error.message.includes(d.smtp.response);
      const extra = [
        d.smtp && !quoted ? (d.smtp.response.startsWith(String(d.smtp.code)) ? d.smtp.response : `${d.smtp.code} ${d.smtp.response}`).slice(0, 200) : "",
        d.error ? `${d.error.code}: ${d.error.message}`.slice(0, 300) : "", d.reason ?? "", refusedText(d.rejected),
        d.pending ? `${d.pending.length} recipient(s) pending` : "", d.retryAt ? `retry at ${d.retryAt}` : "",
        d.classification ? `score ${d.classification.score.toFixed(3)}` : "", d.inDoubt ? "in doubt (may have reached the relay)" : "",
      ].filter(Boolean).join("; ");
      out(`  ${e.at}  ${e.state.padEnd(17)} #${e.attempt} ${e.node}${extra ? `  ${extra}` : ""}`);
    }
    if (r.trimmed) out(`  (the recipient lists of ${r.trimmed} earlier event(s) are left out: too long for one reply)`);
    for (const l of r.ledger ?? []) out(`  ledger: entry ${l.index} in tree of ${l.treeSize} (${l.eventId})`);
    return 0;
  } finally {
    await nc.close();
  }
}

/** `--limit` (1..1000, default 100) and `--after` (a reply's `next`, default 0) of a paged listing. */
function pageOptions(o: { limit?: string | undefined; after?: string | undefined }, command: string): { limit: number; after: number } {
  const whole = (s: string) => parseDecimal(s, "integer");
  const limit = o.limit === undefined ? 100 : whole(o.limit);
  const after = o.after === undefined ? 0 : whole(o.after);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new FenError("BAD_REQUEST", `usage: ${command} --limit takes 1..1000`);
  if (!Number.isSafeInteger(after) || after < 0) throw new FenError("BAD_REQUEST", `usage: ${command} --after takes a reply's next`);
  return { limit, after };
}

/**
 * `queue`: the mails in MAIL_WORK (submitted, not yet Sent, Bounced,
 * Rejected or Quarantined), oldest first, one page per call, like `mailq`.
 */
async function queue(argv: string[], io: CliIo, out: (s: string) => void): Promise<number> {
  const { values: o, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { server: { type: "string" }, json: { type: "boolean", default: false }, limit: { type: "string" }, after: { type: "string" } },
  });
  if (positionals.length > 0) throw new FenError("BAD_REQUEST", "usage: queue [--limit 1..1000] [--after SEQ]");
  const { limit, after } = pageOptions(o, "queue");
  const nc = await connectFrom(o.server, io);
  try {
    const r = await callService(nc, ServiceSubjects.queue, Codecs.queueRequest, { kind: "mail.queue", v: 1, limit, after }, Codecs.queueReply);
    if (o.json) { out(JSON.stringify(r)); return 0; }
    for (const m of r.mails) {
      const extra = [m.retryAt ? `retry at ${m.retryAt}` : "", m.error ? `${m.error.code}: ${m.error.message}` : ""].filter(Boolean).join("; ");
      out(`${m.mailId}  ${m.state.padEnd(17)} #${m.attempt}  since ${m.since}  ${m.recipients} rcpt${extra ? `  ${extra}` : ""}`);
    }
    const page = r.next === undefined ? "" : `; next page: queue --after ${r.next}`;
    out(`${r.mails.length} shown of ${r.remaining} from here (${r.waiting} waiting for a node, ${r.held} held by nodes)${page}`);
    return 0;
  } finally {
    await nc.close();
  }
}

/** `quarantine list|release|delete`: the operator's requests on quarantined mail (`mail.quarantine.*`). */
async function quarantine(argv: string[], io: CliIo, out: (s: string) => void): Promise<number> {
  const { values: o, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      server: { type: "string" }, json: { type: "boolean", default: false }, limit: { type: "string" }, after: { type: "string" }, reason: { type: "string" },
    },
  });
  const [action, mailId, ...extra] = positionals;
  let req: QuarantineRequest;
  if (action === "list" && mailId === undefined) {
    req = { kind: "mail.quarantine.list", v: 1, ...pageOptions(o, "quarantine list") };
  } else if ((action === "release" || action === "delete") && mailId && extra.length === 0) {
    if (!o.reason?.trim()) throw new FenError("BAD_REQUEST", `usage: quarantine ${action} MAIL_ID needs --reason (it is recorded in the mail's history)`);
    req = { kind: `mail.quarantine.${action}`, v: 1, mailId: mailId as never, reason: o.reason };
  } else {
    throw new FenError("BAD_REQUEST", "usage: quarantine list [--limit N] | release MAIL_ID --reason R | delete MAIL_ID --reason R");
  }
  const nc = await connectFrom(o.server, io);
  try {
    const r = await callService(nc, quarantineRequestSubject(req.kind), Codecs.quarantineRequest, req, Codecs.quarantineReply);
    if (o.json) { out(JSON.stringify(r)); return 0; }
    const done = action === "list" ? "" : action === "release" ? "released " : "deleted ";
    for (const m of r.mails) {
      const left = m.unfinished ? `  ${m.unfinished} unfinished: repeat it` : "";
      out(`${done}${m.mailId}  score ${m.score >= 0 ? m.score.toFixed(3) : "-"}  model ${m.modelVersion || "-"}  ${m.at}${left}`);
    }
    if (action === "list" && req.kind === "mail.quarantine.list") {
      // A later page's count is that page's, not the total: say so.
      const which = req.after > 0 ? ` after ${req.after}` : "";
      out(r.done ? `${r.mails.length} quarantined${which}${which ? " (the last page)" : ""}` : `${r.mails.length} quarantined shown${which}; next page: quarantine list --after ${r.next}`);
    }
    return 0;
  } finally {
    await nc.close();
  }
}

import { existsSync } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { cliError, connectCli } from "../common/nats.js";
import { callService } from "../common/rpc.js";
import type { NatsConnection } from "@nats-io/nats-core";
import { FenError, LedgerCodecs, Names, ServiceSubjects, isMailId, toFenError } from "../../protocol/index.js";
import { LedgerError, LedgerErrorCode, ledgerErrorCode, openCheckpoint, parseReceipt, parseVerifierKey, serializeReceipt, verifyGrowth, verifyReceipt } from "../../ledger/index.js";
import type { Receipt } from "../../ledger/index.js";
import { auditLedger } from "./audit.js";
import type { AuditReport } from "./audit.js";
import { eventsProbe, proveMail } from "./prove.js";
import { createLedgerStore } from "./store.js";

/** Streams and environment of the CLI (the same shape as `nodes/cli`'s). */
export interface LedgerCliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
}

const USAGE = `usage: fastemailnet ledger <command>

  verify [--json] [--key PUBKEY] [--server URL]
      audit the whole ledger bucket: every entry, block, checkpoint signature, tile and index record
  prove MAIL_ID [--server URL] > receipt.json
      export an offline receipt for every ledger entry of a mail
  verify-receipt FILE|- --key PUBKEY [--origin ORIGIN] [--json]
      check a receipt offline (no NATS) against a trusted verifier key
  consistency FILE --key PUBKEY [--origin ORIGIN] [--save FILE] [--json] [--server URL]
      check that the log only grew since a checkpoint you kept (a receipt, or a signed checkpoint
      note): fetches the head's signed checkpoint and a consistency proof, and verifies both
      against the key (nothing the server says is trusted); --save writes the head's checkpoint
      for next time

PUBKEY is a signed-note verifier key <name>+<hex8>+<base64>, or a file holding one.
Exit codes: 0 ok, 1 verification failed, 2 usage error, 3 request failed or refused, or no cluster (code printed).`;

/** A key file is a line of text: anything bigger (a device, a wrong file) is refused before it is read. */
const MAX_KEY_FILE_BYTES = 4096;

const keyUsage = (message: string) => new FenError("BAD_REQUEST", `usage: --key ${message}; pass the log's verifier key <name>+<hex8>+<base64>, or a file holding it`);

/**
 * `--key`: a file holding a verifier key, or the key itself. Whatever is not
 * a well-formed verifier key (a missing, empty or unreadable file, a private
 * key, a mistyped key) is a usage error, so that `verify` never falls back to
 * the bucket's own key and neither command reports a bad key as a failed
 * verification. A private key is not echoed.
 */
async function keyArg(value: string | undefined): Promise<string | undefined> {
  if (value === undefined) return undefined;
  let key = value.trim();
  let source = JSON.stringify(value);
  if (existsSync(value)) {
    source = `file ${JSON.stringify(value)}`;
    const info = await stat(value).catch(() => undefined);
    if (!info?.isFile() || info.size > MAX_KEY_FILE_BYTES) throw keyUsage(`${source} is not a key file (a regular file of at most ${MAX_KEY_FILE_BYTES} bytes)`);
    key = (await readFile(value, "utf8").catch((e: unknown) => { throw keyUsage(`${source} cannot be read (${(e as Error).message})`); })).trim();
  }
  if (key.startsWith("PRIVATE+KEY+")) throw keyUsage(`${source === JSON.stringify(value) ? "value" : source} is a private signing key, not a verifier key (it was not shown)`);
  if (key === "") throw keyUsage(`${source} is empty`);
  try {
    parseVerifierKey(key);
  } catch (err) {
    const what = source.length > 200 ? "value" : source;
    throw keyUsage(`${what} is ${source.startsWith("file") ? "" : "no file and "}not a verifier key (${ledgerErrorCode(err) ?? "error"}: ${(err as Error).message})`);
  }
  return key;
}

const connectFrom = (server: string | undefined, io: LedgerCliIo): Promise<NatsConnection> => connectCli(server, io.env, "fastemailnet-ledger-cli");

async function openStore(server: string | undefined, io: LedgerCliIo) {
  const nc = await connectFrom(server, io);
  try {
    const kv = await new Kvm(jetstream(nc)).open(Names.ledgerBucket);
    const jsm = await jetstreamManager(nc);
    return { nc, jsm, store: createLedgerStore(kv, jsm) };
  } catch (err) {
    // A refused user (PERMISSION_DENIED) must not leave the connection open: the command would never exit.
    await nc.close();
    throw err;
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
  return Buffer.concat(chunks);
}

function describeTrust(r: AuditReport): string {
  if (r.trustRoot === "flag") return `trust root: the key given with --key (${r.verifierKey})`;
  if (r.trustRoot === "bucket") return `trust root: the key stored in the bucket's meta record (${r.verifierKey}); it is not pinned — pass --key to check against your own copy`;
  return "trust root: none";
}

async function verify(argv: string[], io: LedgerCliIo, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { values: o } = parseArgs({ args: argv, options: { server: { type: "string" }, json: { type: "boolean", default: false }, key: { type: "string" } } });
  const key = await keyArg(o.key);
  const { nc, store } = await openStore(o.server, io);
  try {
    let last = 0;
    const report = await auditLedger(store, {
      ...(key ? { verifierKey: key } : {}),
      onProgress: (p) => {
        const now = performance.now();
        if (now - last < 1000 || p.lastBlock < 50) return;
        last = now;
        err(`audited ${p.block}/${p.lastBlock + 1} blocks, ${p.size} entries`);
      },
    });
    if (o.json) out(JSON.stringify(report));
    else {
      if (report.ok) out(`ledger OK: ${report.size} entries in ${report.blocks} blocks; root ${report.root ?? "(empty)"}`);
      else out(`ledger FAILED: first bad block ${report.firstBadBlock}${report.faults[0]?.where === "head" ? " (the head)" : ""}; ${report.size} entries in ${report.blocks} blocks before it verified`);
      for (const f of report.faults) out(`  fault ${f.code} in ${f.where} ${f.block}: ${f.message}`);
      if (report.origin) out(`origin: ${report.origin}`);
      out(describeTrust(report));
      for (const w of report.warnings) out(`  note: ${w}`);
    }
    return report.ok ? 0 : 1;
  } finally {
    await nc.close();
  }
}

async function prove(argv: string[], io: LedgerCliIo, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { values: o, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { server: { type: "string" } } });
  const mailId = positionals[0];
  if (!mailId) throw new FenError("BAD_REQUEST", "usage: ledger prove MAIL_ID");
  if (!isMailId(mailId)) throw new FenError("BAD_REQUEST", `usage: ledger prove MAIL_ID: ${JSON.stringify(mailId.slice(0, 100))} is not a mail id (26 lower-case base32 characters, as the gateway returns it)`);
  const { nc, jsm, store } = await openStore(o.server, io);
  try {
    // A mail whose events are not in a signed block yet: wait for its block (sealed within about a second).
    for (let waited = 0; ; waited += 250) {
      try {
        const reply = await proveMail(store, mailId, eventsProbe(jsm));
        out(serializeReceipt(reply.receipt as Receipt));
        return 0;
      } catch (e) {
        if (toFenError(e).code !== "LEDGER_PENDING" || waited >= 15_000) throw e;
        if (waited === 0) err(`mail ${mailId} is not in a signed block yet; waiting…`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close();
  }
}

async function verifyReceiptCommand(argv: string[], io: LedgerCliIo, out: (s: string) => void): Promise<number> {
  const { values: o, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { key: { type: "string" }, origin: { type: "string" }, json: { type: "boolean", default: false } },
  });
  const file = positionals[0];
  const key = await keyArg(o.key);
  if (!file || !key) throw new FenError("BAD_REQUEST", "usage: ledger verify-receipt FILE|- --key PUBKEY");
  const bytes = file === "-" ? await readAll(io.stdin) : await readFile(file).catch((e: unknown) => {
    throw new FenError("BAD_REQUEST", `usage: cannot read the receipt ${file}: ${(e as Error).message}`);
  });
  try {
    const v = verifyReceipt(new Uint8Array(bytes), key, o.origin ? { origin: o.origin } : {});
    if (o.json) {
      out(JSON.stringify({ ok: true, mailId: v.mailId, size: v.checkpoint.size, origin: v.checkpoint.origin, entries: v.entries.map((e) => ({ leafIndex: e.leafIndex, eventId: e.entry.eventId, state: e.entry.state, at: e.entry.at })) }));
    } else {
      out(`receipt OK: mail ${v.mailId}, ${v.entries.length} entries in the tree of ${v.checkpoint.size} signed by ${key.split("+")[0]}`);
      for (const e of v.entries) out(`  entry ${e.leafIndex}: ${e.entry.at} ${e.entry.state} #${e.entry.attempt} (${e.entry.eventId})`);
    }
    return 0;
  } catch (e) {
    const code = ledgerErrorCode(e) ?? toFenError(e).code;
    if (o.json) out(JSON.stringify({ ok: false, code, message: (e as Error).message }));
    else out(`receipt INVALID: ${code}: ${(e as Error).message}`);
    return 1;
  }
}

/**
 * The signed checkpoint note a kept file holds: a receipt's (JSON with a
 * `checkpoint`), or the file itself (a note, as `--save` writes it).
 */
function keptCheckpoint(bytes: Buffer, file: string): string {
  const text = bytes.toString("utf8");
  if (!text.trimStart().startsWith("{")) return text;
  try {
    return parseReceipt(new Uint8Array(bytes)).checkpoint;
  } catch (e) {
    throw new FenError("BAD_REQUEST", `usage: ${file} is neither a signed checkpoint nor a receipt (${ledgerErrorCode(e) ?? "error"}: ${(e as Error).message})`);
  }
}

/**
 * `consistency`: the log as it is now extends the checkpoint kept in FILE.
 * Exit 0 when the head's signed checkpoint and the proof verify, 1 when
 * anything fails to (a fork, a rewrite, a log rolled back below it or
 * emptied, a wrong key or origin), 3 when the ledger cannot be asked.
 */
async function consistencyCommand(argv: string[], io: LedgerCliIo, out: (s: string) => void): Promise<number> {
  const { values: o, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { key: { type: "string" }, origin: { type: "string" }, save: { type: "string" }, json: { type: "boolean", default: false }, server: { type: "string" } },
  });
  const file = positionals[0];
  const key = await keyArg(o.key);
  if (!file || !key || positionals.length > 1) throw new FenError("BAD_REQUEST", "usage: ledger consistency FILE --key PUBKEY");
  const bytes = await readFile(file).catch((e: unknown) => {
    throw new FenError("BAD_REQUEST", `usage: cannot read ${file}: ${(e as Error).message}`);
  });
  const kept = keptCheckpoint(bytes, file);
  const origin = o.origin ? { origin: o.origin } : {};
  const verifier = parseVerifierKey(key);
  const fail = (e: unknown, what: string): number => {
    const code = ledgerErrorCode(e) ?? toFenError(e).code;
    if (o.json) out(JSON.stringify({ ok: false, code, message: (e as Error).message }));
    else out(`${what}: ${code}: ${(e as Error).message}`);
    return 1;
  };
  // The kept checkpoint is checked before anything is asked: a wrong key or file says so without a cluster.
  let from: number;
  try {
    from = openCheckpoint(kept, verifier, origin).checkpoint.size;
  } catch (e) {
    return fail(e, `the checkpoint in ${file} does not verify with this key`);
  }
  const inconsistent = `log INCONSISTENT with ${file}`;
  const nc = await connectFrom(o.server, io);
  let reply;
  try {
    reply = await callService(nc, ServiceSubjects.ledgerConsistency, LedgerCodecs.consistencyRequest,
      { kind: "ledger.consistency", v: 1, from }, LedgerCodecs.consistencyReply);
  } catch (e) {
    // An empty log (NOT_FOUND) cannot extend a kept checkpoint of any entries: wiped, or emptied. That is what
    // this command is for, so it is a failed check (exit 1), not a failed request. (The empty log has no signed
    // head to show; a kept checkpoint of 0 entries stays a failed request: there is nothing to compare.)
    if (toFenError(e).code === "NOT_FOUND" && from > 0) {
      return fail(new LedgerError(LedgerErrorCode.RangeInvalid, `the log is empty, but the kept checkpoint has ${from} entries (${(e as Error).message})`), inconsistent);
    }
    // No proof from a larger tree than the log has: a log rolled back (restored from a backup, truncated) is
    // exactly what this command is for, so it is a failed check (exit 1), shown with the head's own signature.
    if (toFenError(e).code !== "BAD_REQUEST") throw e;
    const head = await callService(nc, ServiceSubjects.ledgerHead, LedgerCodecs.headRequest, { kind: "ledger.head", v: 1 }, LedgerCodecs.headReply);
    try {
      verifyGrowth(kept, head.checkpoint, [], verifier, origin);
    } catch (rolledBack) {
      return fail(rolledBack, inconsistent);
    }
    throw e;
  } finally {
    await nc.close();
  }
  if (reply.checkpoint === undefined) return fail(new FenError("INTERNAL", `the ledger sent a proof to ${reply.to} entries without the head's signed checkpoint`), inconsistent);
  let growth;
  try {
    growth = verifyGrowth(kept, reply.checkpoint, reply.proof.map((h) => new Uint8Array(Buffer.from(h, "base64"))), verifier, origin);
  } catch (e) {
    return fail(e, inconsistent);
  }
  if (o.save) await writeFile(o.save, reply.checkpoint);
  const { earlier, later } = growth;
  const b64 = (h: Uint8Array) => Buffer.from(h).toString("base64");
  if (o.json) {
    out(JSON.stringify({ ok: true, origin: earlier.origin, from: earlier.size, fromRoot: b64(earlier.rootHash), to: later.size, toRoot: b64(later.rootHash), checkpoint: reply.checkpoint }));
  } else {
    out(`log consistent: the ${earlier.size} entries of ${file} (root ${b64(earlier.rootHash)}) are the first ${earlier.size} of the head's ${later.size} (root ${b64(later.rootHash)}), signed by ${key.split("+")[0]}`);
    if (o.save) out(`head checkpoint saved to ${o.save}`);
  }
  return 0;
}

/**
 * `fastemailnet ledger …`: audit the bucket, export a receipt, verify a
 * receipt offline. Returns the exit code; never exits the process.
 */
export async function runLedgerCommand(argv: string[], io: LedgerCliIo): Promise<number> {
  const [command, ...rest] = argv;
  const out = (s: string) => io.stdout.write(`${s}\n`);
  const err = (s: string) => io.stderr.write(`${s}\n`);
  try {
    switch (command) {
      case "verify": return await verify(rest, io, out, err);
      case "prove": return await prove(rest, io, out, err);
      case "verify-receipt": return await verifyReceiptCommand(rest, io, out);
      case "consistency": return await consistencyCommand(rest, io, out);
      case undefined: case "help": case "--help": case "-h":
        out(USAGE);
        return command === undefined ? 2 : 0;
      default:
        err(`unknown ledger command ${JSON.stringify(command)}\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    const fe = cliError(e) ?? toFenError(e);
    if (fe.code === "BAD_REQUEST" && fe.message.startsWith("usage")) {
      err(`${fe.message}\n\n${USAGE}`);
      return 2;
    }
    if (e instanceof TypeError && (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      err(`${e.message}\n\n${USAGE}`);
      return 2;
    }
    // 3, not 1: exit 1 means a verification failed, which an unreachable cluster is not.
    err(`error ${fe.code}: ${fe.message}`);
    return 3;
  }
}

import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/nats-core";
import { Codecs, MAIL_STATES, Names, eventSubject, mailIdFromIdempotencyKey } from "../../protocol/index.js";
import type { MailEvent, MailState } from "../../protocol/index.js";
import { encodeEntry, generateNoteKeyPair, parseSignerKey, parseVerifierKey } from "../../ledger/index.js";
import { systemClock } from "../../nodes/common/clock.js";
import { publishOnce } from "../../nodes/common/js-errors.js";
import { createMetrics } from "../../nodes/common/metrics.js";
import type { Metrics } from "../../nodes/common/metrics.js";
import { LedgerKeys, loadConfig } from "../../nodes/config/index.js";
import { createLedgerNode, createLedgerStore, entryOfEvent, ledgerSecrets, runLedgerCommand } from "../../nodes/ledger/index.js";
import type { BlockCommitted, LedgerNode, LedgerStore } from "../../nodes/ledger/index.js";
import type { PendingEntry, SequencerDeps } from "../../nodes/ledger/sequencer.js";
import { captureCli } from "../helpers/cli.js";
import type { CliResult } from "../helpers/cli.js";
import { pool, testLog } from "../helpers/system.js";

/** A fresh ledger identity: env for a ledger node plus the public key. */
export interface LedgerIdentity {
  readonly env: Record<string, string>;
  readonly verifierKey: string;
  readonly origin: string;
}

/** Generates a signing key and a commitment key for a test log. */
export function ledgerIdentity(origin = "test.fastemailnet/ledger"): LedgerIdentity {
  const pair = generateNoteKeyPair(origin);
  return {
    origin,
    verifierKey: pair.verifierKey,
    env: { FEN_LEDGER_ORIGIN: origin, FEN_LEDGER_SIGNING_KEY: pair.signerKey, FEN_LEDGER_COMMITMENT_KEY: randomBytes(32).toString("hex") },
  };
}

/** Starts an in-process ledger node. */
export async function startLedger(
  nc: NatsConnection, id: LedgerIdentity, env: Record<string, string> = {}, onBlock?: (b: BlockCommitted) => void,
): Promise<LedgerNode & { metrics: Metrics }> {
  const config = loadConfig(LedgerKeys, { ...id.env, ...env });
  const metrics = createMetrics({ defaults: false });
  const node = createLedgerNode({
    nc, log: testLog, clock: systemClock, node: `ledger-test-${randomBytes(3).toString("hex")}`, metrics, ...ledgerSecrets(config),
    ...(onBlock ? { onBlock } : {}),
  }, config);
  await node.start();
  return Object.assign(node, { metrics });
}

/** The life-cycle event `i` of a test run: mails of 5 events each, walking the states in order. */
export function testEvent(prefix: string, i: number): MailEvent {
  const mailId = mailIdFromIdempotencyKey(`${prefix}-${Math.floor(i / 5)}`);
  const state = MAIL_STATES[i % 5] as MailState;
  return {
    kind: "mail.event", v: 1, eventId: `${mailId}.${state}.0`, mailId, state, attempt: 0,
    at: new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString(), node: "test", recipients: [`rcpt${i % 7}@example.net`],
    detail: state === "Sent" ? { smtp: { code: 250, enhanced: "2.0.0", response: "250 2.0.0 queued as X" } } : {},
  };
}

/**
 * Publishes one event as the processing node does (de-duplicated by event id, `publishOnce`: a publish met by a
 * leader change is made again), and that up to five times more if it still fails: a busy 2-core CI machine can
 * leave MAIL_EVENTS without a leader for longer than one publishOnce waits (a fresh-clone CI run saw "no
 * responders" end a test's whole flow of events).
 */
export async function publishEventSurely(js: ReturnType<typeof jetstream>, ev: MailEvent): Promise<void> {
  for (let i = 1; ; i++) {
    try {
      await publishOnce(js, eventSubject(ev.mailId, ev.state), Codecs.mailEvent.encode(ev), { msgID: ev.eventId });
      return;
    } catch (err) {
      if (i >= 6) throw err;
      await new Promise((r) => setTimeout(r, 250 * i));
    }
  }
}

/** Publishes events `from..to-1` to MAIL_EVENTS (see {@link publishEventSurely}). */
export async function publishEvents(nc: NatsConnection, prefix: string, from: number, to: number, concurrency = 256): Promise<MailEvent[]> {
  const js = jetstream(nc);
  const events = Array.from({ length: to - from }, (_, k) => testEvent(prefix, from + k));
  await pool(events, concurrency, (ev) => publishEventSurely(js, ev));
  return events;
}

/** Opens the ledger bucket. */
export async function ledgerKv(nc: NatsConnection): Promise<KV> {
  return new Kvm(jetstream(nc)).open(Names.ledgerBucket);
}

/** Tree size of the head, or 0. */
export async function headSize(kv: KV): Promise<number> {
  const e = await kv.get("head");
  return e && e.operation === "PUT" ? (e.json() as { size: number }).size : 0;
}

/** Runs `fastemailnet ledger …` in-process and captures its output. */
export const ledgerCli = (args: string[], env: Record<string, string>, stdin = ""): Promise<CliResult> =>
  captureCli((io) => runLedgerCommand(args, io), { env, stdin });

/** The ledger bucket's store plus what a test needs to run sequencers on it directly. */
export interface SequencerKit {
  /** The store over the real bucket. */
  readonly store: LedgerStore;
  /** Sequencer dependencies over `store` (or a wrapper of it). */
  deps(store?: LedgerStore): SequencerDeps;
  /** Pending entries for the life-cycle events `from..to-1` of {@link testEvent}`(prefix, i)`. */
  pending(prefix: string, from: number, to: number): PendingEntry[];
}

/** A {@link SequencerKit} for identity `id` on the provisioned cluster behind `nc`. */
export async function sequencerKit(nc: NatsConnection, id: LedgerIdentity): Promise<SequencerKit> {
  const store = createLedgerStore(await ledgerKv(nc), await jetstreamManager(nc));
  const signer = parseSignerKey(id.env["FEN_LEDGER_SIGNING_KEY"]!);
  const verifier = parseVerifierKey(signer.verifierKey);
  const key = Buffer.from(id.env["FEN_LEDGER_COMMITMENT_KEY"]!, "hex");
  return {
    store,
    deps: (s = store) => ({ store: s, signer, verifier, origin: id.origin, clock: systemClock, log: testLog }),
    pending: (prefix, from, to) => Array.from({ length: to - from }, (_, k) => {
      const ev = testEvent(prefix, from + k);
      return { mailId: ev.mailId, eventId: ev.eventId, bytes: encodeEntry(entryOfEvent(ev, key)) };
    }),
  };
}

/**
 * A store whose roll-forward writes (`putImmutableAll`) wait while the gate
 * is shut, as behind a slow replica: blocks are committed, their records not
 * written. `crash()` makes every call fail from then on, the held writes
 * included, as if the writer's process died.
 */
export function gatedStore(inner: LedgerStore): LedgerStore & { shut(): void; open(): void; crash(): void } {
  let gate: { promise: Promise<void>; open(): void; fail(err: Error): void } | undefined;
  let crashed = false;
  const alive = () => {
    if (crashed) throw new Error("test: this writer crashed");
  };
  const wrapped = Object.fromEntries(Object.entries(inner).map(([k, v]) => [k, typeof v !== "function" ? v : (...args: unknown[]) => {
    alive();
    return (v as (...a: unknown[]) => unknown).apply(inner, args);
  }])) as unknown as LedgerStore;
  return Object.assign(wrapped, {
    async putImmutableAll(writes: Parameters<LedgerStore["putImmutableAll"]>[0]) {
      alive();
      await gate?.promise;
      alive();
      return inner.putImmutableAll(writes);
    },
    shut() {
      let open!: () => void;
      let fail!: (err: Error) => void;
      const promise = new Promise<void>((res, rej) => { open = res; fail = rej; });
      promise.catch(() => undefined);
      gate = { promise, open, fail };
    },
    open() {
      gate?.open();
      gate = undefined;
    },
    crash() {
      crashed = true;
      gate?.fail(new Error("test: this writer crashed"));
    },
  });
}

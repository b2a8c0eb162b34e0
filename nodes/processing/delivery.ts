import { isAscii } from "node:buffer";
import net from "node:net";
import nodemailer from "nodemailer";
import type { Transporter } from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js";
import type { Envelope } from "../../protocol/index.js";
import type { Logger } from "../common/logger.js";
import { classifyFailure, recipientRefusals, smtpReplyOf } from "./smtp-outcome.js";
import type { Outcome } from "./smtp-outcome.js";

/** Sends raw messages to the configured relay. */
export interface Delivery {
  send(envelope: Envelope, raw: Buffer): Promise<Outcome>;
  /**
   * Gives up every transaction still in progress and refuses later ones:
   * each pending `send` resolves at once as a transient failure marked
   * `stopped`, its reason naming `cause`, in doubt when its message had gone
   * out (as at the transaction deadline); later sends resolve so without
   * reaching the relay. For a drain that must end before the process is
   * killed.
   */
  abortAll(cause: string): void;
  close(): void;
}

export interface RelayOptions {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly requireTls: boolean;
  readonly tlsRejectUnauthorized: boolean;
  readonly user?: string | undefined;
  readonly password?: string | undefined;
  readonly poolSize: number;
  /** Socket (idle), connection and greeting timeout. */
  readonly timeoutMs: number;
  /** Longest one mail's transaction may take, from `send` to the relay's last reply, however busy the relay keeps the socket. */
  readonly transactionTimeoutMs: number;
}

/** The relay options of a processing node's configuration (validated by `loadConfig`, cross-key rules included). */
export function relayOptions(config: {
  smtpHost: string; smtpPort: number; smtpSecure: boolean; smtpRequireTls: boolean; smtpTlsRejectUnauthorized: boolean;
  smtpUser?: string | undefined; smtpPassword?: string | undefined; smtpPoolSize: number; smtpTimeoutMs: number; smtpTransactionTimeoutMs: number;
}): RelayOptions {
  return {
    host: config.smtpHost, port: config.smtpPort, secure: config.smtpSecure, requireTls: config.smtpRequireTls,
    tlsRejectUnauthorized: config.smtpTlsRejectUnauthorized, user: config.smtpUser, password: config.smtpPassword,
    poolSize: config.smtpPoolSize, timeoutMs: config.smtpTimeoutMs, transactionTimeoutMs: config.smtpTransactionTimeoutMs,
  };
}

/**
 * Opens one pool connection's socket, as nodemailer's `getSocket` hook does: hands over an already connected
 * socket (`connection`) or an error. `mark` is that connection's: while the socket opens, `fenCancel` on it
 * closes the socket at once and fails the connect in the next turn; `fenAbandoned` closes it as it opens.
 */
type ConnectFor = (mark: AbandonMark, callback: (err: Error | null, socketOptions?: { connection: net.Socket }) => void) => void;

/**
 * Opens the TCP connection to the relay for nodemailer, with Nagle's
 * algorithm off. nodemailer leaves it on, and it writes a message's body and
 * its final "." separately: the "." then waits until the relay acknowledges
 * the body, which the relay delays (40 ms on Linux), so every mail took
 * ~44 ms per connection instead of ~1 ms (`npm run bench:smtp`). Failures
 * carry nodemailer's codes (ECONNECTION, ETIMEDOUT, EDNS) so the failure table
 * classifies them as before; TLS (STARTTLS or implicit) stays nodemailer's.
 */
export function connectNoDelay(host: string, port: number, timeoutMs: number): ConnectFor {
  return (mark, callback) => {
    let done = false;
    const finish = (err: Error | null, socket?: net.Socket) => {
      if (done) return;
      done = true;
      delete mark.fenCancel;
      clearTimeout(timer);
      socket?.removeListener("error", onError);
      if (!err && mark.fenAbandoned) {
        // Its mail was given up at the transaction deadline while this connection opened.
        socket!.destroy();
        callback(givenUp());
        return;
      }
      if (err) callback(err);
      else callback(null, { connection: socket! });
    };
    const onError = (err: Error & { syscall?: string }) => {
      socket.destroy();
      // As nodemailer's own connect: a name that did not resolve is EDNS, not a refused connection.
      const code = err.syscall === "getaddrinfo" ? "EDNS" : "ECONNECTION";
      finish(Object.assign(new Error(`Connection error: ${err.message}`, { cause: err }), { code }));
    };
    const socket = net.connect({ host, port, noDelay: true, keepAlive: true });
    const timer = setTimeout(() => {
      socket.destroy();
      finish(Object.assign(new Error(`Connection timeout after ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    socket.once("error", onError);
    socket.once("connect", () => finish(null, socket));
    mark.fenCancel = () => {
      // Closed now, so no SYN retry of a given-up connect goes out once its send has its answer; the failure is
      // reported in the next turn, after that answer (it calls the mail's callback). A destroyed socket emits
      // neither "connect" nor "error".
      socket.destroy();
      setImmediate(() => finish(givenUp()));
    };
  };
}

/** The failure of a connect whose mail was given up at the transaction deadline (classified as ECONNECTION). */
const givenUp = () => Object.assign(new Error("connection given up at the transaction deadline"), { code: "ECONNECTION" });

/**
 * What of nodemailer 6.10's pool this module reaches into (not public API;
 * nodemailer is pinned, and test/processing/delivery.test.ts and
 * pipeline.test.ts fail if this stops working): the queue of mails waiting
 * for a connection, and each connection's current mail (with its envelope:
 * nodemailer reports RCPT refusals only with a success or an every-recipient
 * refusal, not with a failure after DATA), last reply and socket. A mail is recognised by
 * its `raw` object, unique per `send`.
 */
interface PoolInternals {
  readonly _queue?: { mail?: { data?: { raw?: unknown } } }[];
  readonly _connections?: PoolConnection[];
  /** The pool's own copy of its options: `maxConnections` is read each time it considers opening a connection. */
  readonly options: { maxConnections: number };
}

/** A pool connection (nodemailer's PoolResource), with our marks on it. */
interface PoolConnection extends AbandonMark {
  queueEntry?: {
    mail?: {
      data?: { raw?: unknown };
      /**
       * The mail's own envelope object, which the connection's transaction fills in (its recipients refused at
       * RCPT TO so far). Not the connection's `_envelope`: a send that fails before its envelope is set would
       * find the previous mail's there.
       */
      message?: { getEnvelope?: () => { rejectedErrors?: unknown[] } };
    };
  } | false;
  connection?: {
    lastServerResponse?: string | false; _socket?: net.Socket & { socket?: net.Socket };
    /** The envelope of its current transaction: false until it first sends MAIL FROM. */
    _envelope?: unknown;
    _destroyed?: boolean;
    /** Set while a TLS handshake (STARTTLS, or implicit TLS on our socket) is under way; stays set if it fails. */
    upgrading?: boolean;
  };
  /** Mails whose transaction this connection has finished (nodemailer's count; the current one not yet). */
  messages?: number;
  /** Its session is open (greeting, EHLO, STARTTLS and AUTH done) and not closed. */
  _connected?: boolean;
  /** Its socket has been asked for (by the pool, once per connection). */
  fenSocketAsked?: boolean;
  emit(event: "error", err: Error): boolean;
  listenerCount(event: "error"): number;
  once(event: "error" | "close", listener: () => void): unknown;
}

/**
 * Set on a pool connection when its mail was given up while the connection was still being opened. (Not on
 * the options the pool hands to `getSocket`: those are the pool's own, shared by every connection.)
 */
interface AbandonMark {
  fenAbandoned?: boolean;
  /** While its socket is being opened: give the connect up (closes the socket now, frees the pool slot in the next turn). */
  fenCancel?: () => void;
}

/**
 * The pool connection asking for a socket: nodemailer 6.10's pool creates a
 * connection, appends it to `_connections` and has it ask for its socket in
 * the same synchronous step (`_processMessages` → `send` → `connect`), so it
 * is the newest one, and one that has not asked before.
 */
function askingConnection(pool: PoolInternals): PoolConnection | undefined {
  const newest = pool._connections?.at(-1);
  if (!newest || newest.fenSocketAsked || newest.connection) return undefined;
  newest.fenSocketAsked = true;
  return newest;
}

/** How often one attempt goes again after failures that show the relay cannot have the mail (`closedBeforeTransaction`, `turnedAway`). */
const REUSED_CLOSE_RETRIES = 5;

/**
 * How long the pool keeps to the number of sessions a relay served when it turned a further one away, before it
 * tries its full size again (a relay's limit may be shared with other clients, whose sessions end).
 */
const SESSION_LIMIT_HOLD_MS = 60_000;

/** Whether the relay serves a session on this pool connection: it greeted it (2xx), and it is not closed. */
const inSession = (c: PoolConnection): boolean =>
  c._connected === true || (c.connection?._destroyed === false && String(c.connection.lastServerResponse || "").startsWith("2"));

/**
 * Whether a send failed on a connection the relay accepted and then refused a session (421 as its greeting, or it
 * closed or reset the connection) before it sent MAIL FROM: the relay cannot have this mail. Not a connect that
 * failed: a relay refusing connections (restarting, down) is no session limit.
 */
const turnedAway = (connection: PoolConnection | undefined): boolean =>
  connection?.connection !== undefined && (connection.messages ?? 0) === 0 && !connection.connection._envelope && !sentWhole(connection);

/**
 * Whether a send failed on a connection that had carried mail before, by the connection closing or breaking
 * (no reply to anything of this mail's) before its data phase: the relay cannot have this mail.
 */
function closedBeforeTransaction(err: unknown, connection: PoolConnection | undefined): boolean {
  const e = (err ?? {}) as { code?: string; responseCode?: number };
  return e.responseCode === undefined && (e.code === "ECONNECTION" || e.code === "ESOCKET") && !sentWhole(connection) && (connection?.messages ?? 0) > 0;
}

/** The recipients the relay refused at RCPT TO in the transaction of the mail `connection` carries. */
const refusalsOf = (connection: PoolConnection | undefined): unknown[] | undefined =>
  (connection?.queueEntry || undefined)?.mail?.message?.getEnvelope?.().rejectedErrors;

/** The pool connection carrying the mail whose `raw` this is, if it has one. */
const resourceOf = (connections: Iterable<PoolConnection> | undefined, raw: unknown) =>
  [...(connections ?? [])].find((c) => c.queueEntry && c.queueEntry.mail?.data?.raw === raw);

/**
 * Whether the relay had answered DATA with 354 on the mail's connection: its
 * content was going out, so if no reply to the final "." came, the relay
 * may have it. Before 354 the relay cannot have taken the mail.
 */
const sentWhole = (connection: PoolConnection | undefined): boolean =>
  String(connection?.connection?.lastServerResponse || "").startsWith("354");

/**
 * The failure of a send, with a TLS handshake's failure as such (ETLS): nodemailer reports one that fails on the
 * TLS socket (a certificate that does not verify, a relay that hangs up) as a socket error (ESOCKET).
 */
function withTlsClass(err: unknown, connection: PoolConnection | undefined): unknown {
  const e = err as { code?: string } | undefined;
  if (e?.code === "ESOCKET" && connection?.connection?.upgrading) e.code = "ETLS";
  return err;
}

/** Whether a failure is nodemailer's for the relay's answer to the final "." (any answer not starting with 2). */
const answersDot = (err: unknown): boolean => {
  const e = (err ?? {}) as { code?: string; command?: string };
  return e.code === "EMESSAGE" && e.command === "DATA";
};

/**
 * Frees the pool slot of a connection whose `getSocket` failed. nodemailer
 * 6.10's pool removes a connection only when it emits "error" or "close",
 * which one that never got a socket does not: every failed connect (relay
 * down, refused, timed out) kept its slot for good, and after `poolSize` of
 * them the pool never sent again. The pool's own "error" handler removes it
 * (its mail has had its callback by then) and goes on with the queue.
 */
function release(pool: PoolInternals, connection: PoolConnection, err: Error): void {
  if (pool._connections?.includes(connection) && connection.listenerCount("error") > 0) connection.emit("error", err);
}

/**
 * Gives up on the mail: out of the queue if it still waits for a
 * connection (then it never reaches the relay: returns false); otherwise
 * its connection is destroyed, so a relay that keeps the session busy
 * (continuation lines, a byte at a time) cannot hold the connection
 * either. A connection that is still being opened is marked, and
 * `connectNoDelay` closes its socket as it opens. Returns whether the mail
 * may still have reached the relay (it was in its data phase).
 */
function abandon(pool: PoolInternals, raw: unknown): { inData: boolean; refusals?: unknown[] | undefined } {
  const queued = pool._queue?.findIndex((e) => e.mail?.data?.raw === raw) ?? -1;
  if (queued >= 0) {
    pool._queue!.splice(queued, 1);
    return { inData: false };
  }
  const resource = resourceOf(pool._connections, raw);
  const socket = resource?.connection?._socket;
  if (socket) {
    const given = { inData: sentWhole(resource), refusals: refusalsOf(resource) };
    (socket.socket ?? socket).destroy();
    return given;
  }
  // Still connecting: its socket is closed now (before the caller has this answer) and the connect fails in the
  // next turn, so the mail never goes out and the slot is free.
  if (resource?.fenSocketAsked) {
    resource.fenAbandoned = true;
    resource.fenCancel?.();
    return { inData: false };
  }
  return { inData: resource !== undefined };
}

/**
 * A pooled nodemailer SMTP transport. STARTTLS is used whenever the relay
 * offers it (nodemailer's default unless `ignoreTLS`); `requireTls` refuses
 * to send in clear, and without it a relay that offers STARTTLS and then
 * refuses it gets the mail in clear (opportunistic TLS, as Postfix's "may"),
 * unless a relay user is configured (the password never goes in clear).
 * The message is sent as is (`raw`): composition and the Message-ID were
 * fixed at submission, so a retry sends the same bytes.
 *
 * Retries are the node's alone: nodemailer's own re-queueing of a mail whose
 * connection closed mid-send is off (`maxRequeues: 0`), as it would send
 * again, unrecorded, a mail the relay may already have.
 *
 * A relay that limits concurrent sessions per client turns away the pool's
 * connections beyond its limit (421 as the greeting, or closing them). That
 * refuses the session, not the mail, and the relay serves the others: the
 * mail goes again in the same attempt, and the pool keeps to the sessions the
 * relay served for `SESSION_LIMIT_HOLD_MS` (each new session it turns away
 * again lowers it, logged). Otherwise, with a pool larger than the limit,
 * most mails of a busy node failed attempt after attempt on new connections
 * and bounced (RETRIES_EXHAUSTED) while the relay accepted mail.
 */
export function createDelivery(opts: RelayOptions, deps: { readonly log?: Logger } = {}): Delivery {
  const connect = connectNoDelay(opts.host, opts.port, opts.timeoutMs);
  // `maxRequeues` is an SMTPPool option the type definitions lack.
  const options: SMTPPool.Options & { maxRequeues: number } = {
    pool: true,
    host: opts.host,
    port: opts.port,
    secure: opts.secure,
    // The relay password never goes in clear: with a relay user, TLS is a
    // must (implicit, or STARTTLS even when the relay does not advertise it,
    // as an on-path attacker would strip it). Without one, a relay that
    // refuses STARTTLS gets the mail in clear unless TLS is required.
    requireTLS: opts.requireTls || (opts.user !== undefined && opts.user !== "" && !opts.secure),
    opportunisticTLS: !opts.requireTls && !opts.user,
    maxRequeues: 0,
    tls: { rejectUnauthorized: opts.tlsRejectUnauthorized },
    maxConnections: opts.poolSize,
    getSocket: (_shared, callback) => {
      const connection = askingConnection(pool);
      if (connection) {
        known.add(connection);
        // Later: the mail's callback may still be running, or (after a close) come 50 ms later (see `known`).
        const forget = () => setTimeout(() => known.delete(connection), 100).unref();
        connection.once("close", forget);
        connection.once("error", forget);
      }
      connect(connection ?? {}, (err, socket) => {
        callback(err, socket);
        if (err && connection) release(pool, connection, err);
      });
    },
    maxMessages: Infinity,
    connectionTimeout: opts.timeoutMs,
    greetingTimeout: opts.timeoutMs,
    socketTimeout: opts.timeoutMs,
    ...(opts.user ? { auth: { user: opts.user, pass: opts.password ?? "" } } : {}),
  };
  /**
   * Every pool connection that asked for a socket, until 100 ms after it
   * closed or failed. The pool drops a connection whose transaction failed
   * (a 4xx or 5xx reply) before it calls the mail's callback, which reads
   * that connection's last reply and envelope; the mail of a connection that
   * closed without an error it fails 50 ms after the close.
   */
  const known = new Set<PoolConnection>();
  const transport: Transporter<SMTPPool.SentMessageInfo> = nodemailer.createTransport(options);
  const pool = transport.transporter as unknown as PoolInternals;
  let restoreSize: NodeJS.Timeout | undefined;
  /**
   * After `failed` was turned away: keeps the pool to the sessions the relay serves (see above). Returns false when
   * it serves none (the relay refuses us altogether: the mail fails as it is).
   */
  const keepToServedSessions = (failed: PoolConnection): boolean => {
    const served = (pool._connections ?? []).filter((c) => c !== failed && inSession(c)).length;
    if (served === 0) return false;
    if (served < pool.options.maxConnections) {
      deps.log?.warn({ sessions: served, poolSize: opts.poolSize, holdMs: SESSION_LIMIT_HOLD_MS }, "the relay turned a new session away while it served others: the SMTP pool keeps to those");
      pool.options.maxConnections = served;
    }
    clearTimeout(restoreSize);
    restoreSize = setTimeout(() => { pool.options.maxConnections = opts.poolSize; }, SESSION_LIMIT_HOLD_MS);
    restoreSize.unref();
    return true;
  };
  type Result = { readonly info: SMTPPool.SentMessageInfo }
    | { readonly err: unknown; readonly inData: boolean; readonly refusals?: unknown[] | undefined; readonly gaveUp?: string; readonly stopped?: true };
  /** Sends in progress: their `raw` view and how to give each up. */
  const pending = new Map<Buffer, (reason: string, stopped?: true) => void>();
  /** Set by abortAll: the reason every attempt from then on gets. */
  let stoppedReason: string | undefined;
  return {
    async send(envelope, raw) {
      if (stoppedReason !== undefined) return { kind: "transient", reason: stoppedReason, failure: stoppedReason, stopped: true };
      // A view of the same bytes: a new object, by which the pool's entry for this mail is found.
      const body = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      let timer: NodeJS.Timeout | undefined;
      const result = await new Promise<Result>((resolve) => {
        const giveUp = (reason: string, stopped?: true) => {
          pending.delete(body); // no retry once given up
          resolve({ err: undefined, ...abandon(pool, body), gaveUp: reason, ...(stopped ? { stopped } : {}) });
        };
        pending.set(body, giveUp);
        timer = setTimeout(() => giveUp(`the relay did not finish the transaction within ${opts.transactionTimeoutMs} ms`), opts.transactionTimeoutMs);
        // The callback runs while the pool still knows the mail's connection (and its last reply).
        // An 8-bit message is declared (BODY=8BITMIME, RFC 6152) when the relay offers 8BITMIME; to one that does not,
        // it goes as it is (nothing here downgrades it to 7 bit).
        const eightBit = !isAscii(body);
        // SIZE= (RFC 1870): nodemailer declares it, and refuses a mail over the relay's advertised limit itself.
        const mailEnvelope = { from: envelope.from, to: [...envelope.to], size: body.length, ...(eightBit ? { use8BitMime: true } : {}) };
        let retries = 0;
        const go = () => transport.sendMail({ envelope: mailEnvelope, raw: body }, (err, info) => {
          if (!err) return resolve({ info });
          const connection = resourceOf(known, body);
          // A relay may close a pooled connection right after its 250 for the previous mail, as the pool hands it
          // this one: nothing of this mail reached it, so it goes again in this attempt. (A relay that closes every
          // connection after one mail can do that to the retry too, while other mails take the new connections:
          // each such failure means another mail went through, and REUSED_CLOSE_RETRIES bounds them.)
          // A session the relay turned away beside others it serves: its limit of sessions (see above).
          if (retries < REUSED_CLOSE_RETRIES && pending.get(body) === giveUp
            && (closedBeforeTransaction(err, connection) || (turnedAway(connection) && keepToServedSessions(connection!)))) {
            retries++;
            go();
            return;
          }
          resolve({ err: withTlsClass(err, connection), inData: sentWhole(connection), refusals: refusalsOf(connection) });
        });
        go();
      });
      clearTimeout(timer);
      pending.delete(body);
      if ("info" in result) {
        const smtp = smtpReplyOf({ response: result.info.response }) ?? { code: 250, response: String(result.info.response) };
        return { kind: "sent", smtp, rejected: recipientRefusals((result.info as { rejectedErrors?: unknown[] }).rejectedErrors) };
      }
      const rejected = recipientRefusals(result.refusals);
      const refusals = rejected.length > 0 ? { rejected } : {};
      if (result.gaveUp !== undefined) {
        return { kind: "transient", reason: result.gaveUp, failure: result.gaveUp, ...refusals, ...(result.inData ? { inDoubt: true } : {}), ...(result.stopped ? { stopped: true } : {}) };
      }
      const o = classifyFailure(result.err);
      if (o.kind === "refused") return o;
      const withRefusals = { ...o, ...refusals };
      // The message had gone out and no 4xx or 5xx refused it: no reply to the final "." (the connection broke or timed
      // out in the data phase, RFC 1047), or an answer to it that is no refusal (noise, a 3xx): the relay may have it.
      const refused = o.smtp !== undefined && o.smtp.code >= 400;
      return withRefusals.kind === "transient" && !refused && (result.inData || answersDot(result.err)) ? { ...withRefusals, inDoubt: true } : withRefusals;
    },
    abortAll(cause) {
      stoppedReason = `the node stopped (${cause}) before this attempt finished`;
      for (const giveUp of [...pending.values()]) giveUp(stoppedReason, true);
    },
    close: () => {
      clearTimeout(restoreSize);
      transport.close();
    },
  };
}

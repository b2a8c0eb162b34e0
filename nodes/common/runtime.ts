import { createServer } from "node:http";
import type { Server } from "node:http";
import type { NatsConnection } from "@nats-io/nats-core";
import { FenError } from "../../protocol/index.js";
import type { CommonConfig } from "../config/index.js";
import type { Actor } from "./actor.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";

/**
 * Serves `/healthz` (process alive), `/readyz` (actor running, NATS
 * connected: not while the client is reconnecting, which it does for ever,
 * and nothing the actor reports through `notReady()`; a 503 says why) and
 * `/metrics` (Prometheus). Returns the bound port.
 */
export async function serveHealth(opts: {
  host: string; port: number; actor: Actor; nc: NatsConnection; metrics: Metrics; log: Logger;
}): Promise<{ server: Server; port: number }> {
  let connected = true;
  void (async () => {
    for await (const s of opts.nc.status()) {
      // Logged: a server cutting the node off (e.g. as a slow consumer) was otherwise silent in the node's log.
      if (s.type === "disconnect") {
        connected = false;
        opts.log.warn({ server: s.server }, "disconnected from NATS; reconnecting");
      } else if (s.type === "reconnect") {
        connected = true;
        opts.log.info({ server: s.server }, "reconnected to NATS");
      } else if (s.type === "error") {
        opts.log.warn({ err: s.error }, "NATS server error");
      }
    }
  })().catch(() => undefined);
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (url === "/readyz") {
      // The reason is for the operator who curls it (a probe reads the status only).
      const state = opts.actor.status().state;
      const why = state !== "running" ? state
        : opts.nc.isClosed() ? "NATS connection closed"
          : !connected ? "disconnected from NATS, reconnecting"
            : opts.actor.notReady?.();
      res.writeHead(why === undefined ? 200 : 503, { "content-type": "text/plain" }).end(why === undefined ? "ready\n" : `not ready: ${why}\n`);
    } else if (url === "/metrics") {
      opts.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": opts.metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  opts.log.info({ port }, "health and metrics server listening");
  return { server, port };
}

/**
 * A request to stop (a signal, the supervisor gone) and who hears it: before {@link runUntilSignal} runs,
 * nobody (the node has taken nothing yet: the process ends at once); while its actor starts, it is kept and
 * the node drains as soon as the start ends; then `onStop` resolves its wait.
 */
const stop: { why?: string; phase: "loading" | "starting" | "running"; onStop?: (why: string) => void; log?: Logger } = { phase: "loading" };

function requestStop(why: string): void {
  if (stop.why !== undefined) {
    // A second Ctrl-C, or a supervisor repeating its signal: the default action would kill the node mid-drain,
    // leaving its SMTP transactions unrecorded (their mails sent again, in doubt). SIGKILL still ends it.
    stop.log?.warn({ why, stopping: stop.why }, "already stopping (SIGKILL ends the node at once)");
    return;
  }
  stop.why = why;
  if (stop.phase === "loading") process.exit(0);
  stop.onStop?.(why);
}

/**
 * Installs the node's stop requests, first thing in each node's main.ts: SIGINT and SIGTERM, and for a node
 * spawned with an IPC channel by a supervisor (npm start), the supervisor going away (killed with -9). Until
 * {@link runUntilSignal} runs, a request ends the process at once; later ones drain the node. Installed this
 * early because a node is PID 1 in its container, where the kernel drops a signal that has no handler: a
 * SIGTERM during start-up was lost, and the pod ran (and took work) until it was killed at its grace period.
 * The channel does not keep the process alive.
 */
export function watchSupervisor(): void {
  process.on("SIGINT", () => requestStop("SIGINT"));
  process.on("SIGTERM", () => requestStop("SIGTERM"));
  // `process.send` exists for a process spawned with IPC, also once the channel has closed.
  if (typeof process.send !== "function") return;
  if (!process.connected) {
    requestStop("supervisor gone"); // gone while this module was loading
    return;
  }
  process.channel?.unref();
  process.once("disconnect", () => requestStop("supervisor gone"));
}

/**
 * Runs an actor until a stop request (see {@link watchSupervisor}), or
 * until it closes: drains it, closes the connection and the health server.
 * Used by every node's main.ts; returns the exit code: 0 drained, 1 start
 * failed, the actor closed with an error, or the drain was given up (no
 * NATS server answered for NATS_GONE_MS); pass it to {@link endProcess}.
 */
export async function runUntilSignal(opts: {
  actor: Actor; nc: NatsConnection; config: CommonConfig; metrics: Metrics; log: Logger;
}): Promise<number> {
  const { actor, nc, log } = opts;
  stop.log = log;
  stop.phase = "starting";
  let health: Server | undefined;
  try {
    // The health server first: a taken FEN_HTTP_PORT must stop the node before it registers its service
    // or takes work (/readyz says "not ready" until the actor runs).
    health = (await serveHealth({ host: opts.config.httpHost, port: opts.config.httpPort, actor, nc, metrics: opts.metrics, log })).server;
    await actor.start();
  } catch (err) {
    log.fatal({ err, code: err instanceof FenError ? err.code : undefined }, "start failed");
    health?.close();
    await nc.close().catch(() => undefined);
    return 1;
  }
  const requested = new Promise<string>((resolve) => {
    stop.phase = "running";
    if (stop.why !== undefined) resolve(stop.why); // asked during the start
    stop.onStop = resolve;
  });
  const why = await Promise.race([requested, actor.closed.then(() => "closed")]);
  const closed = actor.status();
  if (closed.state === "closed" && closed.error !== undefined) {
    // Stopped by a fault of its own (e.g. LEDGER_CORRUPT; it logged it): nothing to drain. Draining would also
    // overwrite its status, and the node exited 0, as if stopped on purpose.
    stop.why ??= "closed";
    await nc.close().catch(() => undefined);
    await new Promise<void>((r) => (health ? health.close(() => r()) : r()));
    log.info("stopped");
    return 1;
  }
  stop.why ??= why;
  log.info({ why }, "stopping");
  // With no NATS server answering, a drain cannot finish (stopping a service unsubscribes and flushes, an outcome
  // is recorded in JetStream): the node stayed up for ever after SIGTERM. It gives up once no server has answered
  // for NATS_GONE_MS; what it held is redelivered, as after a kill.
  const gone = natsGone(nc, NATS_GONE_MS);
  // The connection's own drain (it flushes what the actor wrote last) is bounded the same way: servers going away
  // right after the actor's drain left the node waiting on it for ever.
  const drained = await Promise.race([
    (async () => { await actor.drain(); await actor.closed; await nc.drain().catch(() => undefined); return true; })(),
    gone.promise.then(() => false),
  ]);
  gone.cancel();
  if (!drained) log.warn({ natsGoneMs: NATS_GONE_MS }, "no NATS server answers: stopping without finishing the drain");
  // A drain fails while no server answers and leaves the client reconnecting for ever: close it.
  if (!nc.isClosed()) await nc.close().catch(() => undefined);
  await new Promise<void>((r) => (health ? health.close(() => r()) : r()));
  log.info("stopped");
  return drained ? 0 : 1;
}

/**
 * Ends a node's process with `code` (what {@link runUntilSignal} returned):
 * a clean stop lets the event loop empty; any other ends at once, once
 * stdout is written, since a drain given up leaves work in flight whose
 * timers and pooled sockets would keep the process up or act on the closed
 * connection.
 */
export async function endProcess(code: number): Promise<void> {
  process.exitCode = code;
  if (code === 0) return;
  await new Promise<void>((r) => process.stdout.write("", () => r()));
  process.exit(code);
}

/** How long a stopping node waits for a NATS server to answer before it gives up its drain. */
const NATS_GONE_MS = 10_000;

/** Resolves once no server has answered a flush (PING) for `ms` in a row; checked every second until cancelled. */
function natsGone(nc: NatsConnection, ms: number): { promise: Promise<void>; cancel(): void } {
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  const sleep = (t: number) => new Promise<void>((r) => { timer = setTimeout(r, t); });
  const promise = (async () => {
    // A flush made while the client is between servers waits for a reconnect: the sleep bounds each try, and
    // "gone" is no answer for `ms` in a row.
    let since = Date.now();
    while (!cancelled) {
      const answered = await Promise.race([nc.flush().then(() => true, () => false), sleep(ms).then(() => false)]);
      clearTimeout(timer);
      if (cancelled) break;
      if (answered) since = Date.now();
      else if (Date.now() - since >= ms) return;
      await sleep(answered ? 1000 : 250);
    }
    await new Promise<never>(() => undefined); // cancelled: never
  })();
  return { promise, cancel: () => { cancelled = true; clearTimeout(timer); } };
}

import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { AuthorizationError } from "@nats-io/nats-core";
import type { NatsConnection } from "@nats-io/nats-core";
import { FenError } from "../../protocol/index.js";
import type { CommonConfig } from "../config/index.js";

/**
 * Opens the node's NATS connection from its configuration. Called by main.ts
 * only; everything else receives the connection.
 */
export async function connectNats(config: CommonConfig, name: string): Promise<NatsConnection> {
  return connect({
    servers: [...config.natsUrls],
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Every JetStream publish and ack is a request; with async traces on,
    // each one captures a stack trace up front (about a tenth of a busy
    // processing node's CPU). Errors still carry their message and code.
    noAsyncTraces: true,
    ...(config.natsUser ? { user: config.natsUser, pass: config.natsPassword ?? "" } : {}),
    ...(config.natsTlsCa ? { tls: { ca: readFileSync(config.natsTlsCa, "utf8") } } : {}),
  });
}

/**
 * Opens a command-line tool's connection: servers from `--server` or
 * `FEN_NATS_URLS` (default `nats://127.0.0.1:4222`, where `npm start`
 * listens), user from `FEN_NATS_USER` / `FEN_NATS_PASSWORD`. A failure to
 * connect is rethrown as `NATS_UNREACHABLE`, naming the servers or the user
 * and where they come from, not just "connection refused".
 */
export async function connectCli(server: string | undefined, env: Readonly<Record<string, string | undefined>>, name: string): Promise<NatsConnection> {
  const servers = (server ?? env["FEN_NATS_URLS"] ?? "nats://127.0.0.1:4222").split(",").map((s) => s.trim()).filter(Boolean);
  const user = env["FEN_NATS_USER"];
  try {
    return await connect({ servers, name, ...(user ? { user, pass: env["FEN_NATS_PASSWORD"] ?? "" } : {}) });
  } catch (err) {
    const why = (err as Error).message ?? String(err);
    const hint = err instanceof AuthorizationError
      ? `the servers refused ${user ? `user ${user}` : "a connection without a user"} (set FEN_NATS_USER and FEN_NATS_PASSWORD; npm start prints them)`
      : "set --server or FEN_NATS_URLS to a running cluster (npm start serves nats://127.0.0.1:4222)";
    throw new FenError("NATS_UNREACHABLE", `cannot connect to NATS at ${servers.join(",")}: ${why}; ${hint}`, { cause: err });
  }
}

import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { AuthorizationError, PermissionViolationError } from "@nats-io/nats-core";
import type { NatsConnection } from "@nats-io/nats-core";
import { selfOrCause } from "./js-errors.js";
import { FenError } from "../../protocol/index.js";
import type { CommonConfig } from "../config/index.js";

/**
 * Opens the node's NATS connection from its configuration. Called by main.ts
 * only; everything else receives the connection. A CA file that cannot be
 * read is CONFIG_INVALID naming FEN_NATS_TLS_CA; a failure to connect is
 * NATS_UNREACHABLE naming the servers (FEN_NATS_URLS) or the user.
 */
export async function connectNats(config: CommonConfig, name: string): Promise<NatsConnection> {
  let ca: string | undefined;
  if (config.natsTlsCa) {
    try {
      ca = readFileSync(config.natsTlsCa, "utf8");
    } catch (err) {
      throw new FenError("CONFIG_INVALID", `FEN_NATS_TLS_CA: cannot read ${config.natsTlsCa}: ${(err as Error).message}`, {
        fields: [{ field: "FEN_NATS_TLS_CA", code: "CONFIG_INVALID", message: "cannot be read" }], cause: err,
      });
    }
  }
  const servers = [...config.natsUrls];
  try {
    return await connect({
      servers,
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      // Every JetStream publish and ack is a request; with async traces on,
      // each one captures a stack trace up front (about a tenth of a busy
      // processing node's CPU). Errors still carry their message and code.
      noAsyncTraces: true,
      ...(config.natsUser ? { user: config.natsUser, pass: config.natsPassword ?? "" } : {}),
      ...(ca ? { tls: { ca } } : {}),
    });
  } catch (err) {
    throw unreachable(err, servers, config.natsUser, "check FEN_NATS_URLS and that the cluster is up");
  }
}

/**
 * Where a command-line tool connects, and as whom. `--server` or
 * `FEN_NATS_URLS` go with `FEN_NATS_USER` / `FEN_NATS_PASSWORD`. Without
 * them, the nats CLI's own `NATS_URL` with `NATS_USER` / `NATS_PASSWORD` (an
 * operator who exported the banner's line for `nats` need not export it
 * twice), unless `FEN_NATS_USER` is set. The nats variables' user is never
 * sent to servers that did not come from `NATS_URL`: a password exported for
 * one cluster must not go to another.
 */
export function cliTarget(server: string | undefined, env: Readonly<Record<string, string | undefined>>): { servers: string[]; user?: string; pass?: string } {
  const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);
  const ours = env["FEN_NATS_USER"] ? { user: env["FEN_NATS_USER"], pass: env["FEN_NATS_PASSWORD"] ?? "" } : {};
  const explicit = server ?? env["FEN_NATS_URLS"];
  if (explicit !== undefined) return { servers: list(explicit), ...ours };
  const natsUrl = env["NATS_URL"];
  if (natsUrl !== undefined) {
    const theirs = env["NATS_USER"] ? { user: env["NATS_USER"], pass: env["NATS_PASSWORD"] ?? "" } : {};
    return { servers: list(natsUrl), ...(env["FEN_NATS_USER"] ? ours : theirs) };
  }
  return { servers: ["nats://127.0.0.1:4222"], ...ours };
}

/** A failed connect as NATS_UNREACHABLE: the servers, or for a refused user the user and the variables that set it. */
function unreachable(err: unknown, servers: readonly string[], user: string | undefined, hint: string): FenError {
  const why = (err as Error).message ?? String(err);
  const fix = err instanceof AuthorizationError
    ? `the servers refused ${user ? `user ${user}` : "a connection without a user"} (set FEN_NATS_USER and FEN_NATS_PASSWORD; npm start prints them)`
    : hint;
  return new FenError("NATS_UNREACHABLE", `cannot connect to NATS at ${servers.join(",")}: ${why}; ${fix}`, { cause: err });
}

/**
 * Opens a command-line tool's connection: servers from `--server`,
 * `FEN_NATS_URLS` or `NATS_URL` (default `nats://127.0.0.1:4222`, where
 * `npm start` listens), user from `FEN_NATS_USER` / `FEN_NATS_PASSWORD`, else
 * `NATS_USER` / `NATS_PASSWORD`. A failure to
 * connect is rethrown as `NATS_UNREACHABLE`, naming the servers or the user
 * and where they come from, not just "connection refused".
 */
export async function connectCli(server: string | undefined, env: Readonly<Record<string, string | undefined>>, name: string): Promise<NatsConnection> {
  const { servers, user, pass } = cliTarget(server, env);
  try {
    return await connect({ servers, name, ...(user ? { user, pass: pass ?? "" } : {}) });
  } catch (err) {
    throw unreachable(err, servers, user, "set --server or FEN_NATS_URLS to a running cluster (npm start serves nats://127.0.0.1:4222)");
  }
}

/**
 * A command-line tool's error as a FenError with a stable code, when it has
 * one: a FenError as is, a subject the server refused to the user as
 * PERMISSION_DENIED (not INTERNAL). Anything else (no responders, a local
 * file that cannot be read) is undefined: the tool reports it as a plain
 * failure.
 */
export function cliError(e: unknown): FenError | undefined {
  if (e instanceof FenError) return e;
  const pv = selfOrCause(e, (x): x is PermissionViolationError => x instanceof PermissionViolationError);
  if (pv) return new FenError("PERMISSION_DENIED", `${pv.message}; this user's role may not do that (FEN_NATS_USER; npm start prints the operator's)`, { cause: e });
  return undefined;
}

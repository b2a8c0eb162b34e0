import { readFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
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

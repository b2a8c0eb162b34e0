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
    ...(config.natsUser ? { user: config.natsUser, pass: config.natsPassword ?? "" } : {}),
    ...(config.natsTlsCa ? { tls: { ca: readFileSync(config.natsTlsCa, "utf8") } } : {}),
  });
}

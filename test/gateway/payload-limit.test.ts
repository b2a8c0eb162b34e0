import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { maxMessageBytesWithin } from "../../nodes/gateway/index.js";
import { SERVER_LIMITS } from "../../nodes/local/nats-cluster.js";
import { startTestCluster } from "../helpers/cluster.js";
import type { TestCluster } from "../helpers/cluster.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

let cluster: TestCluster;
beforeAll(async () => { cluster = await startTestCluster(); });
afterAll(async () => { await cluster?.dispose(); });

/**
 * values-production.yaml set FEN_MAX_MESSAGE_BYTES to 25 MiB against servers
 * that carry 16 MiB: every mail over ~11 MiB was refused by the NATS client
 * before it reached a gateway. The gateway now refuses to start, in one line
 * naming the key, the server's max_payload and the largest limit that fits.
 */
it("the gateway with a message limit its NATS server cannot carry exits 1 with CONFIG_INVALID, before offering its service", async () => {
  const child = spawn(process.execPath, ["--import", "tsx", "nodes/gateway/main.ts"], {
    cwd: root, stdio: ["ignore", "ignore", "pipe"],
    env: { PATH: process.env["PATH"] ?? "", FEN_NATS_URLS: cluster.urls.join(","), FEN_MAX_MESSAGE_BYTES: String(25 * 1024 * 1024) },
  });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => { stderr += b.toString(); });
  const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
  expect(code).toBe(1);
  expect(stderr.trim().split("\n")).toEqual([
    expect.stringMatching(new RegExp(`^fen-gateway: CONFIG_INVALID: FEN_MAX_MESSAGE_BYTES \\(26214400\\) needs requests of up to \\d+ bytes, more than the NATS server's max_payload \\(${SERVER_LIMITS.maxPayload}\\) carries: set it to at most ${maxMessageBytesWithin(SERVER_LIMITS.maxPayload)}`)),
  ]);
}, 30_000);

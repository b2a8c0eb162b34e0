import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Runs a node's main.ts with only `env` (and PATH) and returns its exit code and stderr. */
function start(role: string, env: Record<string, string>): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", `nodes/${role}/main.ts`], {
    cwd: root, env: { PATH: process.env["PATH"] ?? "", ...env }, encoding: "utf8", timeout: 30_000,
  });
  return { status: r.status, stderr: r.stderr };
}

describe("a node that cannot start says why in one line, naming what to fix, and exits 1", () => {
  it.each([
    ["ledger", { FEN_LEDGER_BATCH_SIZE: "0" }, /^fen-ledger: CONFIG_INVALID: .*FEN_LEDGER_BATCH_SIZE/],
    ["gateway", { FEN_NATS_URLS: "nats://127.0.0.1:1" }, /^fen-gateway: NATS_UNREACHABLE: cannot connect to NATS at nats:\/\/127\.0\.0\.1:1: .*FEN_NATS_URLS/],
    ["provision", { FEN_NATS_TLS_CA: "/nonexistent/ca.crt" }, /^fen-provision: CONFIG_INVALID: FEN_NATS_TLS_CA: cannot read \/nonexistent\/ca\.crt/],
    ["processing", { FEN_SMTP_TIMEOUT_MS: "5000", FEN_SMTP_TRANSACTION_TIMEOUT_MS: "2000" }, /^fen-processing: CONFIG_INVALID: .*FEN_SMTP_TRANSACTION_TIMEOUT_MS \(2000\) is shorter than FEN_SMTP_TIMEOUT_MS \(5000\)/],
    ["processing", { FEN_SMTP_USER: "relay" }, /^fen-processing: CONFIG_INVALID: .*FEN_SMTP_USER: FEN_SMTP_USER is set but FEN_SMTP_PASSWORD is not/],
  ])("%s with %j", (role, env, line) => {
    const r = start(role, env);
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringMatching(line)]);
  });
});

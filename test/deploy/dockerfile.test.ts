import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { chown, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSmtpSink } from "../../nodes/local/smtp-sink.js";
import type { SmtpSink } from "../../nodes/local/smtp-sink.js";
import { status, structured, submit, until } from "../helpers/system.js";
import { useProvisionedCluster } from "../helpers/suite.js";
import { rehearseDockerfile } from "./dockerfile.js";
import type { RehearsedStage } from "./dockerfile.js";
import { REPO_ROOT } from "./render.js";

/**
 * deploy/Dockerfile, rehearsed without a Docker engine (see dockerfile.ts):
 * the build stage's `npm ci`, `npm run build` (tsc) and `npm prune` run for
 * real in a folder, the runtime stage gets only what its COPY lines copy,
 * and its ENTRYPOINT + CMD then run as the image's user (uid 1000, when
 * this test runs as root) with nothing else on disk: the gateway and a
 * processing node (with the committed model) deliver a mail end to end.
 */

const IMAGE_UID = 1000;
const asRoot = process.getuid?.() === 0;
const cl = useProvisionedCluster();
let out: string;
let image: RehearsedStage;
let sink: SmtpSink;
const children: ChildProcess[] = [];

beforeAll(async () => {
  out = await mkdtemp(path.join(os.tmpdir(), "fen-image-"));
  const stages = await rehearseDockerfile(path.join(REPO_ROOT, "deploy/Dockerfile"), REPO_ROOT, out,
    (s) => process.stderr.write(`  dockerfile: ${s}\n`));
  image = stages[stages.length - 1]!;
  sink = await startSmtpSink();
}, 600_000);

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await sink?.close();
  if (out && !process.env["FEN_KEEP_TEST_DIRS"]) await rm(out, { recursive: true, force: true });
});

/** Runs the image's ENTRYPOINT + `cmd` in its work dir with its ENV plus `env`, as its user. */
async function runImage(cmd: string[], env: Record<string, string>): Promise<{ child: ChildProcess; log: string[] }> {
  const tmp = path.join(out, `tmp-${children.length}`); // the chart's emptyDir at /tmp
  await mkdir(tmp, { recursive: true });
  if (asRoot) await chown(tmp, IMAGE_UID, IMAGE_UID);
  const [bin, ...args] = [...image.entrypoint, ...cmd];
  expect(bin).toBe("node");
  const child = spawn(process.execPath, args, {
    cwd: path.join(image.root, image.workdir),
    env: { PATH: process.env["PATH"] ?? "", HOME: tmp, TMPDIR: tmp, ...image.env, FEN_HTTP_HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    ...(asRoot ? { uid: IMAGE_UID, gid: IMAGE_UID } : {}),
  });
  children.push(child);
  const log: string[] = [];
  child.stdout!.on("data", (b: Buffer) => log.push(b.toString()));
  child.stderr!.on("data", (b: Buffer) => log.push(b.toString()));
  return { child, log };
}

/**
 * Waits for a node run with FEN_HTTP_PORT=0 to log the port it bound (no
 * port picked in advance that a concurrent test could take in between) and
 * to answer /readyz 200. A failure shows the node's log and exit status as
 * they are then.
 */
async function ready({ child, log }: { child: ChildProcess; log: string[] }): Promise<void> {
  try {
    const port = await until("the node's health server port in its log", () => {
      const m = /"port":(\d+),"msg":"health and metrics server listening"/.exec(log.join(""));
      return m ? Number(m[1]) : undefined;
    }, 90_000, 200);
    await until("/readyz 200", async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200, 60_000, 200);
  } catch (err) {
    const exit = child.exitCode !== null || child.signalCode !== null ? `exited ${child.exitCode ?? child.signalCode}` : "still running";
    throw new Error(`${(err as Error).message}; the node is ${exit}; its log:\n${log.join("").slice(-3000)}`, { cause: err });
  }
}

describe("deploy/Dockerfile, rehearsed", () => {
  it("leaves the runtime stage only production files, run by a non-root USER", async () => {
    expect(image.user).toBe("node");
    expect(image.entrypoint).toEqual(["node", "--import", "tsx"]);
    const app = path.join(image.root, image.workdir);
    // npm prune removed the dev dependencies; tsx (the entrypoint's loader) stays.
    await expect(stat(path.join(app, "node_modules/vitest"))).rejects.toThrow();
    await expect(stat(path.join(app, "node_modules/tsx/package.json"))).resolves.toBeDefined();
    await expect(stat(path.join(app, "test"))).rejects.toThrow();
    await expect(stat(path.join(app, "nodes/classifier/model/weights.bin"))).resolves.toBeDefined();
    // Nothing in the image is writable by its user.
    if (asRoot) expect((await stat(path.join(app, "nodes/gateway/main.ts"))).uid).toBe(0);
  });

  it("runs the gateway and a processing node from the image files alone, as uid 1000, and a mail is delivered", async () => {
    const nats = { FEN_NATS_URLS: cl.cluster.urls.join(","), FEN_LOG_LEVEL: "info" };
    const gw = await runImage(image.cmd, { ...nats, FEN_HTTP_PORT: "0", FEN_NODE_NAME: "image-gw" });
    const proc = await runImage(["nodes/processing/main.ts"], {
      ...nats, FEN_HTTP_PORT: "0", FEN_NODE_NAME: "image-p1", FEN_SMTP_PORT: String(sink.port),
    });
    await ready(gw);
    await ready(proc);
    const r = await submit(cl.nc, structured("image", { key: `image-${Date.now()}` }));
    await until("Sent", async () => (await status(cl.nc, r.mailId)).state === "Sent", 60_000);
    expect(sink.messages.filter((m) => m.messageId === r.messageId)).toHaveLength(1);
    // The classifier ran with the model the image carries (not the pass-through default).
    const history = (await status(cl.nc, r.mailId)).history;
    const validated = history.find((h) => h.state === "Validated");
    expect(validated?.detail.classification?.modelVersion).toMatch(/^[0-9a-f]{16}$/);
    await writeFile(path.join(out, "ok"), "");
  }, 180_000);
});

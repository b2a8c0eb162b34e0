import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { until } from "../helpers/system.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const pgrep = (...args: string[]) => spawnSync("pgrep", args, { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
/** Processes whose command line mentions `dir` (the supervisor and the servers of one npm start), and their children (the nodes). */
const running = (dir: string) => {
  const direct = pgrep("-f", dir);
  return [...new Set([...direct, ...direct.flatMap((pid) => pgrep("-P", pid))])];
};

/** Waits until no process of the `npm start` on `dir` is left. */
const noneRunning = (dir: string) => until("nothing of it left running", () => running(dir).length === 0, 20_000, 200);

/** A test's teardown: whatever of the `npm start` on `dir` still runs is killed, and `dir` removed. */
async function killAndRemove(dir: string): Promise<void> {
  for (const pid of running(dir)) process.kill(Number(pid), "SIGKILL");
  await rm(dir, { recursive: true, force: true });
}

/**
 * The README's main command as a service manager or a script runs it: a
 * SIGTERM to the `npm start` process itself (not to its process group, as a
 * terminal's Ctrl-C is) stops the cluster, the nodes and the sink. Before,
 * npm's shell did not exec node, and everything kept running.
 */
it("npm start stops everything on a SIGTERM to the npm process", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-npm-start-"));
  const npm = spawn("npm", ["start", "--", "--data-dir", dir, "--nats-port", "0", "--smtp-port", "0", "--http-port", "0"], {
    cwd: root, env: { ...process.env, FEN_MODEL_DIR: "none", FEN_LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  npm.stdout!.on("data", (b: Buffer) => { out += b.toString(); });
  npm.stderr!.on("data", (b: Buffer) => { out += b.toString(); });
  try {
    await until("the start banner", () => out.includes("Ctrl-C stops everything"), 120_000, 200);
    expect(running(dir).length).toBeGreaterThanOrEqual(9); // npm, the supervisor, 3 servers, 4 nodes
    const exited = new Promise<number | null>((r) => npm.once("exit", (code) => r(code)));
    npm.kill("SIGTERM");
    const code = await exited;
    expect(code, out.slice(-2000)).toBe(0);
    await noneRunning(dir);
  } finally {
    await killAndRemove(dir);
  }
}, 180_000);

/**
 * A terminal's Ctrl-C goes to the whole foreground process group. The
 * servers used to get it too and stop at once while the nodes were still
 * draining (a probe under load: 64 of 200 mails delivered twice). Every
 * child now has a process group of its own, so the supervisor stops the
 * nodes first. And one data folder serves one `npm start` at a time.
 */
it("npm start: a second start on the same data folder is refused, and Ctrl-C to the group stops the nodes before the servers", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-npm-start-"));
  const start = () => spawn("npm", ["start", "--", "--data-dir", dir, "--nats-port", "0", "--smtp-port", "0", "--http-port", "0"], {
    cwd: root, env: { ...process.env, FEN_MODEL_DIR: "none", FEN_LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"], detached: true,
  });
  const npm = start();
  let out = "";
  npm.stdout!.on("data", (b: Buffer) => { out += b.toString(); });
  npm.stderr!.on("data", (b: Buffer) => { out += b.toString(); });
  try {
    await until("the start banner", () => out.includes("Ctrl-C stops everything"), 120_000, 200);
    const second = start();
    let secondOut = "";
    second.stdout!.on("data", (b: Buffer) => { secondOut += b.toString(); });
    const secondCode = await new Promise<number | null>((r) => second.once("exit", (code) => r(code)));
    expect(secondCode).not.toBe(0);
    expect(secondOut).toMatch(/another npm start is using .*: processes [\d ]+ still run/);

    const exited = new Promise<number | null>((r) => npm.once("exit", (code) => r(code)));
    process.kill(-npm.pid!, "SIGINT"); // as a terminal's Ctrl-C
    const code = await exited;
    expect(code, out.slice(-2000)).toBe(0);
    expect(out).toContain("stopped.");
    // The nodes drained with their servers still up: no node lost its connection while stopping.
    expect(out).not.toMatch(/disconnected from NATS/);
    await noneRunning(dir);
  } finally {
    await killAndRemove(dir);
  }
}, 240_000);

/**
 * A mistyped option used to be a stack trace (an unknown one) or, for a
 * port that is not a number, silently a free port: the operator asked for
 * 4222 and the cluster listened elsewhere. Refused before anything starts.
 */
it("npm start refuses an unknown option or a bad port with one line and the usage (exit 2), starting nothing", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-npm-start-"));
  try {
    const cases: [string[], RegExp][] = [
      [["--bogus"], /^npm start: Unknown option '--bogus'/m],
      [["--nats-port", "abc"], /^npm start: --nats-port must be a port from 0 to 65533 \(got "abc"\)$/m],
      [["--smtp-port", "-1"], /^npm start: .*--smtp-port/m],
      [["--http-port", "65534"], /^npm start: --http-port must be a port from 0 to 65532/m],
      [["--sync-interval", "sometimes"], /^npm start: --sync-interval must be "always" or a duration/m],
    ];
    const results = await Promise.all(cases.map(([args]) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "nodes/local/main.ts"), "--data-dir", dir, ...args], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (b: Buffer) => { stderr += b.toString(); });
      child.once("exit", (code) => resolve({ code, stderr }));
    })));
    cases.forEach(([args, want], i) => {
      expect(results[i]!.code, args.join(" ")).toBe(2);
      expect(results[i]!.stderr, args.join(" ")).toMatch(want);
      expect(results[i]!.stderr, args.join(" ")).toContain("usage: npm start");
      expect(results[i]!.stderr, args.join(" ")).not.toMatch(/^\s+at /m);
    });
    expect(running(dir)).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

/** Starts nodes/local/main.ts itself (the process a terminal's hangup reaches) on `dir`; output collected. */
function supervisor(dir: string): { child: ReturnType<typeof spawn>; out: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "nodes/local/main.ts"), "--data-dir", dir, "--nats-port", "0", "--smtp-port", "0", "--http-port", "0"], {
    cwd: root, env: { ...process.env, FEN_MODEL_DIR: "none", FEN_LOG_LEVEL: "warn" }, stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (b: Buffer) => { out += b.toString(); });
  child.stderr!.on("data", (b: Buffer) => { out += b.toString(); });
  return { child, out: () => out };
}

/** The supervisor exited with `code`, saying "stopped.", and left nothing running and no pid file. */
async function expectStoppedCleanly(exit: Promise<number | null>, code: number, out: () => string, dir: string): Promise<void> {
  expect(await exit, out().slice(-2000)).toBe(code);
  expect(out()).toContain("stopped.");
  await noneRunning(dir);
  expect(existsSync(path.join(dir, "npm-start.pids"))).toBe(false);
}

/**
 * A closed terminal sends SIGHUP to the supervisor only (every child has a
 * process group of its own). It used to die of it at once, leaving the
 * nats-servers running, and the next start refused the data folder. It now
 * stops everything as on SIGTERM.
 */
it("npm start stops everything on a SIGHUP (a closed terminal), leaving nothing running and no pid file", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-npm-start-"));
  const { child, out } = supervisor(dir);
  try {
    await until("the start banner", () => out().includes("Ctrl-C stops everything"), 120_000, 200);
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGHUP");
    await expectStoppedCleanly(exited, 0, out, dir);
  } finally {
    await killAndRemove(dir);
  }
}, 180_000);

/**
 * A failure after the cluster started, outside the guarded provisioning step
 * (here: the ledger's key folder cannot be made, a file is in its place),
 * used to end the supervisor with an unhandled rejection and leave the
 * servers running. It now stops what was started and exits 1.
 */
it("npm start: a failure after the cluster started stops the nodes and servers it started (exit 1), leaving nothing running", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "fen-npm-start-"));
  await writeFile(path.join(dir, "ledger"), "not a folder\n");
  const { child, out } = supervisor(dir);
  try {
    await expectStoppedCleanly(new Promise<number | null>((r) => child.once("exit", (c) => r(c))), 1, out, dir);
    expect(out()).toMatch(/npm start failed: .*ledger/);
  } finally {
    await killAndRemove(dir);
  }
}, 180_000);

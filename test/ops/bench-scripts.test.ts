import { execFile, spawn, spawnSync } from "node:child_process";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import madge from "madge";
import { describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const benchDir = path.join(root, "test/bench");

// The benchmark scripts run under tsx, outside vitest, where importing
// "vitest" throws ("Vitest failed to access its internal state"). They share
// helpers with the tests, so this keeps the test-only hooks out of their reach.
// The import graph is madge's, as in `npm run circular` (type-only imports
// are skipped: they vanish at run time).
describe("benchmark scripts", () => {
  it("import nothing that loads vitest", async () => {
    const scripts = (await readdir(benchDir)).filter((f) => f.endsWith(".ts")).map((f) => path.join(benchDir, f));
    expect(scripts.length).toBeGreaterThanOrEqual(4);
    const graph = await madge(scripts, {
      baseDir: root, fileExtensions: ["ts"], tsConfig: path.join(root, "tsconfig.json"), includeNpm: true,
      detectiveOptions: { ts: { skipTypeImports: true }, es6: { skipTypeImports: true } },
    });
    const offenders = Object.entries(graph.obj())
      .flatMap(([file, deps]) => deps.filter((d) => /node_modules\/vitest\//.test(d)).map(() => file));
    expect(offenders).toEqual([]);
  }, 60_000);
});

describe("benchmark scripts' command lines", () => {
  const run = (script: string, args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ["--import", "tsx", path.join(benchDir, script), ...args], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr });
    });
  });
  const scripts = { "e2e.ts": "npm run bench --", "smtp-connection.ts": "npm run bench:smtp --", "ledger-append.ts": "npm run bench:ledger --", "classify.ts": "npm run bench:classify --" };

  it("--help prints the usage and exits 0, starting nothing", async () => {
    const results = await Promise.all(Object.keys(scripts).map((s) => run(s, ["--help"])));
    Object.values(scripts).forEach((usage, i) => {
      expect(results[i]!.code, usage).toBe(0);
      expect(results[i]!.stdout, usage).toContain(`usage: ${usage}`);
    });
  }, 90_000);

  it("an unknown option, a stray argument or a bad count is one line naming it, the usage, exit 2: never a stack trace", async () => {
    const cases: [string, string[], RegExp][] = [
      ["e2e.ts", ["--mails", "0"], /^bench: --mails must be a whole number ≥ 1 \(got "0"\)$/m],
      ["e2e.ts", ["--mails", "abc"], /^bench: --mails must be a whole number/m],
      ["e2e.ts", ["--publishers", "0"], /^bench: --publishers must be/m],
      ["e2e.ts", ["--mail", "10"], /^bench: Unknown option '--mail'/m],
      ["e2e.ts", ["--sync", "sometimes"], /^bench: --sync must be "always" or a duration/m],
      ["e2e.ts", ["--pool", "0"], /^bench: .*FEN_SMTP_POOL_SIZE/m],
      ["e2e.ts", ["5000"], /^bench: Unexpected argument '5000'/m],
      ["smtp-connection.ts", ["--rounds", "0"], /^bench:smtp: --rounds must be/m],
      ["ledger-append.ts", ["--events", "-1"], /^bench:ledger: Option '--events' argument is ambiguous/m],
      ["classify.ts", ["--reps", "x"], /^bench:classify: --reps must be/m],
    ];
    const results = await Promise.all(cases.map(([s, args]) => run(s, args)));
    cases.forEach(([s, args, want], i) => {
      const r = results[i]!;
      const what = `${s} ${args.join(" ")}`;
      expect(r.code, what).toBe(2);
      expect(r.stderr, what).toMatch(want);
      expect(r.stderr, what).toContain("usage: ");
      expect(r.stderr, what).not.toMatch(/^\s+at /m);
    });
  }, 120_000);
});

/** Every process descended from `pid`. */
const descendants = (pid: number): number[] => {
  const kids = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" }).stdout.split("\n").filter(Boolean).map(Number);
  return kids.flatMap((k) => [k, ...descendants(k)]);
};
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

it("npm run bench stopped by a SIGTERM to the script alone (timeout, a CI cancel) stops its servers, sink and nodes", async () => {
  const bench = spawn(process.execPath, ["--import", "tsx", path.join(benchDir, "e2e.ts"), "--mails", "100000", "--publishers", "1", "--no-peer", "--no-ledger", "--no-model"], {
    cwd: root, stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  bench.stderr!.on("data", (b: Buffer) => { err += b.toString(); });
  const exited = new Promise<number | null>((r) => bench.once("exit", (code) => r(code)));
  let started: number[] = [];
  try {
    // Running: mails are being submitted (servers, sink and nodes are up).
    for (const until = Date.now() + 90_000; !/submitted [1-9]/.test(err) && Date.now() < until;) await new Promise((r) => setTimeout(r, 200));
    expect(err).toMatch(/submitted [1-9]/);
    started = descendants(bench.pid!);
    expect(started.length, err.slice(-2000)).toBeGreaterThanOrEqual(6); // 3 servers, the sink, the gateway and two processing nodes
    bench.kill("SIGTERM");
    expect(await exited).toBe(143);
    for (const until = Date.now() + 15_000; started.some(alive) && Date.now() < until;) await new Promise((r) => setTimeout(r, 200));
    expect(started.filter(alive)).toEqual([]);
  } finally {
    for (const pid of [bench.pid!, ...started]) if (alive(pid)) process.kill(pid, "SIGKILL");
  }
}, 150_000);

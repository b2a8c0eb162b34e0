import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { generateNoteKeyPair } from "../../ledger/index.js";
import { main } from "../../nodes/cli/main.js";
import { cliTarget } from "../../nodes/common/nats.js";
import { captureCli, fastemailnet } from "../helpers/cli.js";

/** Runs the CLI in-process; no server is contacted by these cases. */
const run = (...argv: string[]) => fastemailnet(undefined, ...argv);

describe("fastemailnet usage", () => {
  it.each([["send", "--help"], ["status", "-h"], ["--help"]])("%s %s prints the usage and exits 0", async (...argv) => {
    const r = await run(...argv.filter(Boolean));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("usage: fastemailnet <command>");
  });

  it("an unknown option is a usage error (exit 2) naming the option, with the usage", async () => {
    for (const argv of [["send", "--idempotency-key", "k"], ["status", "--bogus", "x"]]) {
      const r = await run(...argv);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`usage error: Unknown option '${argv[1]}'`);
      expect(r.stderr).toContain("--key IDEMPOTENCY_KEY");
    }
  });

  it("a missing required option is a usage error (exit 2)", async () => {
    const r = await run("send", "--to", "you@example.net");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("send needs --from and --to");
  });

  it("no command prints the usage and exits 2; an unknown one names it", async () => {
    expect((await run()).code).toBe(2);
    const r = await run("sned");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "sned"');
  });
});

describe("fastemailnet ledger usage errors are usage errors, not failed verifications", () => {
  it("a --key that is no file and no verifier key, or a receipt file that cannot be read, exits 2 saying so", async () => {
    const k = await run("ledger", "verify-receipt", "receipt.json", "--key", "/tmp/no-such-key-file");
    expect(k.code).toBe(2);
    expect(k.stderr).toMatch(/--key "\/tmp\/no-such-key-file" is no file and not a verifier key/);
    // A well-formed key (one that only looks like a key is itself a usage error, named first).
    const f = await run("ledger", "verify-receipt", "/tmp/no-such-receipt.json", "--key", generateNoteKeyPair("fastemailnet.local/ledger").verifierKey);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/cannot read the receipt \/tmp\/no-such-receipt\.json: ENOENT/);
    expect((await run("status", "m1", "m2")).code).toBe(2);
  });
});

describe("fastemailnet without a reachable cluster", () => {
  it("names the servers and how to set them, with code NATS_UNREACHABLE (exit 1; in `ledger`, 3, as 1 means a failed verification there)", async () => {
    // A port that was just free: nothing listens there.
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const url = `nats://127.0.0.1:${port}`;
    const r = await run("status", "m1", "--server", url);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error NATS_UNREACHABLE: cannot connect to NATS at ${url}`);
    expect(r.stderr).toContain("set --server or FEN_NATS_URLS");
    const l = await run("ledger", "verify", "--server", url);
    expect(l.code).toBe(3);
    expect(l.stderr).toContain("error NATS_UNREACHABLE");
    // Without FEN_NATS_*, the nats CLI's own variables (the operator line README exports).
    const n = await captureCli((io) => main(["status", "m1"], io), { env: { NATS_URL: url, NATS_USER: "fen-operator", NATS_PASSWORD: "x" } });
    expect(n.stderr).toContain(`cannot connect to NATS at ${url}`);
  });

  it("takes the nats CLI's NATS_USER only for NATS_URL's servers, never for others", () => {
    const nats = { NATS_URL: "nats://a:4222", NATS_USER: "op", NATS_PASSWORD: "pw" };
    expect(cliTarget(undefined, nats)).toEqual({ servers: ["nats://a:4222"], user: "op", pass: "pw" });
    expect(cliTarget("nats://test:4222", nats)).toEqual({ servers: ["nats://test:4222"] });
    expect(cliTarget(undefined, { ...nats, FEN_NATS_URLS: "nats://b:4222" })).toEqual({ servers: ["nats://b:4222"] });
    expect(cliTarget(undefined, { ...nats, FEN_NATS_USER: "fen-operator", FEN_NATS_PASSWORD: "p2" })).toEqual({ servers: ["nats://a:4222"], user: "fen-operator", pass: "p2" });
    expect(cliTarget(undefined, {})).toEqual({ servers: ["nats://127.0.0.1:4222"] });
  });
});

describe("fastemailnet as the head of a pipe", () => {
  it("stops quietly with exit 0 when the reader goes away early (`| head -1`)", async () => {
    const { spawn } = await import("node:child_process");
    const file = new URL("../fixtures/classifier/ham-easy-1.eml", import.meta.url).pathname;
    // ~3,000 result lines: far more than a pipe buffers, so writes go on after the reader has closed.
    const child = spawn(process.execPath, ["nodes/cli/bin.js", "classify", ...Array<string>(3000).fill(file)], {
      cwd: new URL("../..", import.meta.url).pathname, stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => { stderr += b.toString(); });
    const first = await new Promise<string>((resolve) => child.stdout.once("data", (b: Buffer) => resolve(b.toString())));
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(first).toContain("ham-easy-1.eml");
    expect(stderr).toBe("");
    expect(code).toBe(0);
  }, 60_000);
});

describe("fastemailnet send with a file that cannot be read", () => {
  it.each([["--text-file"], ["--raw"]])("%s naming a missing file is a usage error (exit 2) naming the option and the file", async (option) => {
    const r = await run("send", "--from", "a@example.org", "--to", "b@example.net", "--subject", "s", option, "/nonexistent/mail.txt");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`usage: ${option} /nonexistent/mail.txt: ENOENT`);
  });
});

describe("fastemailnet --json when the command fails", () => {
  it("prints the error as one JSON object on stdout (the wire's error reply), with the same exit code", async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const cases: [string[], number, string][] = [
      [["status", "m1", "--json", "--server", `nats://127.0.0.1:${port}`], 1, "NATS_UNREACHABLE"],
      [["send", "--to", "you@example.net", "--json"], 2, "BAD_REQUEST"],
      [["status", "--bogus", "--json"], 2, "BAD_REQUEST"],
      [["quarantine", "list", "--limit", "0", "--json"], 2, "BAD_REQUEST"],
      [["send", "--from", "a@example.org", "--to", "b@example.net", "--raw", "/nonexistent/mail.eml", "--json"], 2, "BAD_REQUEST"],
    ];
    for (const [argv, code, errorCode] of cases) {
      const r = await run(...argv);
      expect(r.code, argv.join(" ")).toBe(code);
      expect(() => JSON.parse(r.stdout) as unknown, `${argv.join(" ")}: stdout ${JSON.stringify(r.stdout)}`).not.toThrow();
      expect(JSON.parse(r.stdout)).toMatchObject({ kind: "error", v: 1, code: errorCode, message: expect.any(String), fields: expect.any(Array) });
      expect(r.stderr).toContain(errorCode === "BAD_REQUEST" ? "usage" : `error ${errorCode}`);
    }
  });
});

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { rawRelay } from "./raw-relay.js";

/**
 * A relay whose connections stay "being opened" until the test says so: a
 * child process listens with a backlog of 1, two idle connections fill that
 * backlog (Linux queues backlog + 1), and the child's event loop is blocked
 * reading its stdin, so it accepts nothing; a client's connect hangs (its
 * SYNs are dropped) until `release()`. Then it speaks plain SMTP (`rawRelay`) and counts
 * the connections it accepted (the two fillers included) and the messages it
 * received. Run as a script, this file is the child.
 */
export async function slowAcceptRelay(): Promise<{ port: number; release: () => void; output: () => string; received: () => number; accepted: () => number; close: () => void }> {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "child"], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (c: Buffer) => { out += c.toString(); });
  const fillers: net.Socket[] = [];
  const close = () => { child.kill("SIGKILL"); for (const f of fillers) f.destroy(); };
  try {
    const started = Date.now();
    while (!/^port (\d+)$/m.test(out)) {
      if (Date.now() - started > 20_000 || child.exitCode !== null) throw new Error(`slow-accept relay did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const port = Number(/^port (\d+)$/m.exec(out)![1]);
    for (let i = 0; i < 2; i++) {
      const f = net.connect(port, "127.0.0.1");
      f.on("error", () => undefined);
      fillers.push(f);
      await new Promise((r) => f.once("connect", r));
    }
    return {
      port, release: () => child.stdin!.write("go\n"), output: () => out,
      received: () => (out.match(/^got$/gm) ?? []).length, accepted: () => (out.match(/^connection$/gm) ?? []).length, close,
    };
  } catch (err) {
    close();
    throw err;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const relay = await rawRelay({
    backlog: 1,
    onConnection: () => process.stdout.write("connection\n"),
    afterDot: (sock) => { process.stdout.write("got\n"); sock.write("250 ok\r\n"); },
  });
  process.stdout.write(`port ${relay.port}\n`); // synchronous on a Linux pipe
  // Nothing is accepted until the parent writes a line: the fillers' connections stay in the backlog.
  readSync(0, Buffer.alloc(16));
}

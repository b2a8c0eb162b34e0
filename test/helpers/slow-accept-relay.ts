import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * A relay whose connections stay "being opened" until the test says so: a
 * child process listens with a backlog of 1, two idle connections fill that
 * backlog (Linux queues backlog + 1), and the child's event loop is blocked
 * reading its stdin, so it accepts nothing; a client's connect hangs (its
 * SYNs are dropped) until `release()`. Then it speaks plain SMTP and counts
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
  const server = net.createServer((sock) => {
    process.stdout.write("connection\n");
    sock.on("error", () => undefined);
    sock.write("220 slow.example ESMTP\r\n");
    let buf = "";
    let data = false;
    sock.on("data", (c: Buffer) => {
      buf += c.toString("latin1");
      for (;;) {
        if (data) {
          const end = buf.indexOf("\r\n.\r\n");
          if (end < 0) return;
          buf = buf.slice(end + 5);
          data = false;
          process.stdout.write("got\n");
          sock.write("250 ok\r\n");
          continue;
        }
        const eol = buf.indexOf("\r\n");
        if (eol < 0) return;
        const verb = buf.slice(0, 4).toUpperCase();
        buf = buf.slice(eol + 2);
        if (verb === "DATA") { data = true; sock.write("354 go on\r\n"); } else if (verb === "QUIT") sock.end("221 bye\r\n"); else sock.write("250 ok\r\n");
      }
    });
  });
  server.listen({ port: 0, host: "127.0.0.1", backlog: 1 }, () => {
    const addr = server.address() as net.AddressInfo;
    process.stdout.write(`port ${addr.port}\n`); // synchronous on a Linux pipe
    // Nothing is accepted until the parent writes a line: the fillers' connections stay in the backlog.
    readSync(0, Buffer.alloc(16));
  });
}

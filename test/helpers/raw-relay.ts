import { createServer } from "node:net";
import type { AddressInfo, Socket } from "node:net";

/**
 * A relay scripted at the byte level (npm smtp-server cannot misbehave like
 * this): plain SMTP answers, except where `script` says otherwise. `afterDot`
 * decides what the relay does once a message's final "." has arrived.
 */
export async function rawRelay(script: {
  greeting?: string; starttls?: string; onMail?: (sock: Socket) => boolean;
  /** Advertise AUTH PLAIN LOGIN and accept any credentials. */
  auth?: boolean;
  /** More EHLO extension lines (e.g. "SIZE 1000"). */
  extensions?: readonly string[];
  afterDot?: (sock: Socket, n: number) => void;
  /** Told of every connection accepted, before the greeting. */
  onConnection?: () => void;
  /** The listen backlog. @default Node's */
  backlog?: number;
}): Promise<{ port: number; received: () => number; lines: () => string[]; close: () => void }> {
  let received = 0;
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    script.onConnection?.();
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => undefined);
    let buf = "";
    let inData = false;
    sock.write(script.greeting ?? "220 raw.example ESMTP\r\n");
    sock.on("data", (chunk: Buffer) => {
      buf += chunk.toString("latin1");
      for (;;) {
        if (inData) {
          const end = buf.indexOf("\r\n.\r\n");
          if (end < 0) return;
          buf = buf.slice(end + 5);
          inData = false;
          received++;
          (script.afterDot ?? ((s) => s.write("250 2.0.0 queued\r\n")))(sock, received);
          continue;
        }
        const eol = buf.indexOf("\r\n");
        if (eol < 0) return;
        const line = buf.slice(0, eol);
        seen.push(line);
        buf = buf.slice(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") sock.write(`250-raw.example\r\n${script.starttls ? "250-STARTTLS\r\n" : ""}${script.auth ? "250-AUTH PLAIN LOGIN\r\n" : ""}${(script.extensions ?? []).map((x) => `250-${x}\r\n`).join("")}250 8BITMIME\r\n`);
        else if (verb === "AUTH") sock.write("235 2.7.0 ok\r\n");
        else if (verb === "STAR") sock.write(`${script.starttls}\r\n`);
        else if (verb === "MAIL") { if (script.onMail?.(sock) !== false) sock.write("250 ok\r\n"); }
        else if (verb === "DATA") { inData = true; sock.write("354 go on\r\n"); }
        else if (verb === "QUIT") { sock.end("221 bye\r\n"); }
        else sock.write("250 ok\r\n");
      }
    });
  });
  await new Promise<void>((r) => server.listen({ port: 0, host: "127.0.0.1", ...(script.backlog === undefined ? {} : { backlog: script.backlog }) }, () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    /** Command lines the relay read (not message data). */
    lines: () => [...seen],
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}

import { PassThrough, Readable } from "node:stream";
import { main } from "../../nodes/cli/main.js";
import type { CliIo } from "../../nodes/cli/main.js";

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a CLI entry point in-process with the given environment and stdin, capturing its output and exit code. */
export async function captureCli(run: (io: CliIo) => Promise<number>, opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks = { out: [] as Buffer[], err: [] as Buffer[] };
  stdout.on("data", (c: Buffer) => chunks.out.push(c));
  stderr.on("data", (c: Buffer) => chunks.err.push(c));
  const code = await run({ stdout, stderr, stdin: Readable.from([opts.stdin ?? ""]), env: opts.env ?? {} });
  return { code, stdout: Buffer.concat(chunks.out).toString("utf8"), stderr: Buffer.concat(chunks.err).toString("utf8") };
}

/** `fastemailnet ARGV` in-process; with `urls`, against those servers (`--server`). */
export const fastemailnet = (urls: readonly string[] | undefined, ...argv: string[]): Promise<CliResult> =>
  captureCli((io) => main(urls ? [...argv, "--server", urls.join(",")] : argv, io));

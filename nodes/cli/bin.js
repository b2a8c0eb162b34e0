#!/usr/bin/env node
/* global process */
// The `fastemailnet` command. Runs the TypeScript sources through tsx's
// loader so a checkout needs no build step.
import { register } from "tsx/esm/api";
// Output piped into a reader that stops early (`| head`): stop quietly, as Unix tools do.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}
register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });

#!/usr/bin/env node
/* global process */
// The `fastemailnet` command. Runs the TypeScript sources through tsx's
// loader so a checkout needs no build step.
import { register } from "tsx/esm/api";
register();
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });

/**
 * Generates a ledger's keys into a folder, for the chart's ledger Secret:
 *
 *   node --import tsx deploy/ledger-keygen.ts mail.example.com/ledger ./ledger-keys
 *
 * writes signing.key (the `PRIVATE+KEY+…` signed-note key, mode 0600),
 * commitment.key (32 random bytes, hex, mode 0600) and verifier.key (the
 * public key to publish), and prints the verifier key. Refuses to overwrite.
 */
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { generateNoteKeyPair } from "../ledger/index.js";

const [origin, dir] = process.argv.slice(2);
if (!origin || !dir) {
  process.stderr.write("usage: node --import tsx deploy/ledger-keygen.ts ORIGIN DIR\n");
  process.exit(2);
}
const pair = generateNoteKeyPair(origin);
await mkdir(dir, { recursive: true, mode: 0o700 });
await writeFile(path.join(dir, "signing.key"), `${pair.signerKey}\n`, { mode: 0o600, flag: "wx" });
await writeFile(path.join(dir, "commitment.key"), `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
await writeFile(path.join(dir, "verifier.key"), `${pair.verifierKey}\n`, { flag: "wx" });
process.stdout.write(`${pair.verifierKey}\n`);

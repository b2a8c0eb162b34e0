import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ledgerCli, ledgerIdentity } from "./helpers.js";

// Arguments the CLI refuses before it connects: the server given is one nobody listens on,
// so a command that went on to connect would end with exit 3 (NATS_UNREACHABLE), not 2.
const server = "nats://127.0.0.1:1";

describe("fastemailnet ledger: a bad --key or mail id is a usage error", () => {
  const id = ledgerIdentity();
  let dir: string;
  let receipt: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "fen-ledger-cli-"));
    receipt = path.join(dir, "receipt.json");
    await writeFile(receipt, "{}");
    await writeFile(path.join(dir, "empty.pub"), "\n");
    await writeFile(path.join(dir, "words.pub"), "hello world\n");
    await writeFile(path.join(dir, "private.key"), `${id.env["FEN_LEDGER_SIGNING_KEY"]}\n`);
    await writeFile(path.join(dir, "big.pub"), `${id.verifierKey}\n${" ".repeat(10_000)}`);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cases: [string, () => string, RegExp][] = [
    ["an empty key file", () => path.join(dir, "empty.pub"), /empty\.pub" is empty/],
    ["a key file holding something else", () => path.join(dir, "words.pub"), /words\.pub" is not a verifier key \(LEDGER_KEY_MALFORMED/],
    ["a key file holding the private key", () => path.join(dir, "private.key"), /private\.key" is a private signing key/],
    ["a directory", () => dir, /is not a key file/],
    ["a key file too big to be one", () => path.join(dir, "big.pub"), /is not a key file/],
    ["a key whose material is not a public key", () => "name+01234567+AAAA", /"name\+01234567\+AAAA" is no file and not a verifier key \(LEDGER_KEY_MALFORMED/],
    ["the private key itself", () => id.env["FEN_LEDGER_SIGNING_KEY"]!, /--key value is a private signing key/],
  ];
  for (const [what, key, message] of cases) {
    it(`verify and verify-receipt with ${what}: exit 2, never a verdict`, async () => {
      const verify = await ledgerCli(["verify", "--server", server, "--key", key()], {});
      const offline = await ledgerCli(["verify-receipt", receipt, "--key", key()], {});
      for (const r of [verify, offline]) {
        expect(r.stdout).toBe("");
        expect(r.stderr).toMatch(message);
        // The secret part of PRIVATE+KEY+<name>+<hex8>+<base64> (which may itself hold "+").
        expect(r.stderr).not.toContain(id.env["FEN_LEDGER_SIGNING_KEY"]!.split("+").slice(4).join("+"));
        expect(r.code).toBe(2);
      }
    });
  }

  it("prove with a malformed mail id: exit 2 before connecting", async () => {
    for (const mailId of ["../x", "M5QL7NOJJB5WVLNT3C22WYUTM6", "a".repeat(27), "*"]) {
      const r = await ledgerCli(["prove", mailId, "--server", server], {});
      expect(r.stderr).toContain("is not a mail id");
      expect(r.code).toBe(2);
    }
  });
});

import { execFile } from "node:child_process";
import { promisify } from "node:util";

/**
 * Makes sure Postfix's `smtp-sink` and `smtp-source` are on this machine:
 * they come with Debian's postfix package, installed on first use (needs
 * root and apt), as the peer script `postfix-relay-bench` does.
 */
export async function ensureSmtpSink(log: (line: string) => void): Promise<void> {
  const run = promisify(execFile);
  if (await run("sh", ["-c", "command -v smtp-sink"]).then(() => true, () => false)) return;
  log("installing Debian's postfix package for smtp-sink (first run only) …");
  await run("bash", ["-c", "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq postfix"], { maxBuffer: 16 << 20 })
    .catch((err: unknown) => { throw new Error(`smtp-sink is missing and installing Debian's postfix failed (needs root and apt): ${String(err)}`); });
}

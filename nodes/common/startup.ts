/**
 * Start-up of a node's main.ts: what can fail before the node runs (its
 * configuration, its keys, its NATS connection) ends the process with one
 * line `fen-<role>: CODE: message` on stderr and exit code 1, never a stack
 * trace; the message names the variable to fix.
 */
export async function orExit<T>(role: string, step: () => T | Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // eslint-disable-next-line no-console -- before a logger exists: the one line an operator reads
    console.error(`fen-${role}: ${typeof code === "string" ? code : "ERROR"}: ${(err as Error).message ?? String(err)}`);
    process.exit(1);
  }
}

import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";

/**
 * Command-line handling of the benchmark scripts: `--help` prints the usage
 * and exits 0; an unknown option, a stray argument or a bad value prints
 * one line naming it, then the usage, on stderr and exits 2, before the
 * script starts anything (a cluster, a sink). Never a stack trace.
 */
export interface BenchCli<T extends NonNullable<ParseArgsConfig["options"]>> {
  readonly values: ReturnType<typeof parseArgs<{ options: T }>>["values"];
  /** The whole number given for `name` (or its default), refused unless `min ≤ n ≤ max`. */
  count(name: keyof T & string, min: number, max?: number): number;
  /** Refuses the command line with `message` (exit 2). */
  fail(message: string): never;
}

export function benchCli<const T extends NonNullable<ParseArgsConfig["options"]>>(
  script: string, usage: string, options: T, argv: string[] = process.argv.slice(2),
): BenchCli<T> {
  const fail = (message: string): never => {
    process.stderr.write(`${script}: ${message}\n${usage}\n`);
    process.exit(2);
  };
  let parsed: Record<string, unknown>;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // node's messages name the option ("Unknown option '--mail'", "Option '--mails <value>' argument missing").
    return fail((err as Error).message.replace(/\n/g, " "));
  }
  if (parsed["help"] === true) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const values = parsed as BenchCli<T>["values"];
  return {
    values,
    fail,
    count(name, min, max = Number.MAX_SAFE_INTEGER) {
      const raw = (values as Record<string, unknown>)[name];
      const n = typeof raw === "string" && /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        fail(`--${name} must be a whole number${max === Number.MAX_SAFE_INTEGER ? ` ≥ ${min}` : ` from ${min} to ${max}`} (got ${JSON.stringify(raw)})`);
      }
      return n;
    },
  };
}

/**
 * Runs `cleanup` (stop the servers and processes the script started) when the
 * script is stopped by SIGINT or SIGTERM, then exits 128 + the signal number.
 * A `timeout`, a CI cancel or a `kill` reaches only the script, not its
 * children: without this they kept running (three nats-servers, the sink and
 * four nodes reconnecting for ever).
 */
export function cleanupOnSignal(cleanup: () => Promise<void>): void {
  let once = false;
  for (const [signal, n] of [["SIGINT", 2], ["SIGTERM", 15]] as const) {
    process.on(signal, () => {
      if (once) return;
      once = true;
      process.stderr.write(`${signal}: stopping what the benchmark started…\n`);
      void cleanup().catch(() => undefined).finally(() => process.exit(128 + n));
    });
  }
}

import { expect } from "vitest";
import { LedgerError } from "../../ledger/index.js";

/** The LedgerError code `fn` throws (asserting it is a LedgerError), or undefined when it does not throw. */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LedgerError);
    return (err as LedgerError).code;
  }
  return undefined;
}

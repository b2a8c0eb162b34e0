/**
 * The number a decimal string spells (optional "-", digits, for a non-integer
 * an optional fraction), or NaN. `Number()` alone reads "" and " " as 0,
 * "0x10" as 16 and "1e3" as 1000: a blank quarantine threshold once
 * quarantined every mail. Surrounding blanks are the caller's to trim.
 */
export function parseDecimal(s: string, kind: "integer" | "number"): number {
  return (kind === "integer" ? /^-?\d+$/ : /^-?(\d+(\.\d*)?|\.\d+)$/).test(s) ? Number(s) : NaN;
}

// The error-code registry (ledger/errors.ts) and its documentation
// (ledger/ERRORS.md) must agree row by row.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LEDGER_ERRORS, LedgerError, LedgerErrorCode, ledgerErrorCode } from "../../ledger/index.js";

const doc = readFileSync(new URL("../../ledger/ERRORS.md", import.meta.url), "utf8");
const rows = [...doc.matchAll(/^\| `(LEDGER_[A-Z_]+)` \| (permanent|transient) \| (.+) \|$/gm)].map((m) => ({
  code: m[1],
  retry: m[2],
}));

describe("error registry", () => {
  it("documents every code once, with the registry's retry class", () => {
    expect(rows.map((r) => r.code).sort()).toEqual(Object.keys(LEDGER_ERRORS).sort());
    for (const r of rows) expect(LEDGER_ERRORS[r.code as LedgerErrorCode].retry).toBe(r.retry);
  });

  it("the code constants are the registry keys, all distinct", () => {
    const values = Object.values(LedgerErrorCode);
    expect(new Set(values).size).toBe(values.length);
    expect([...values].sort()).toEqual(Object.keys(LEDGER_ERRORS).sort());
  });

  it("errors carry code, retry class, issues and cause", () => {
    const cause = new Error("inner");
    const err = new LedgerError(LedgerErrorCode.StorageFailed, "outer", { cause, issues: ["a"] });
    expect(err).toMatchObject({ name: "LedgerError", code: "LEDGER_STORAGE_FAILED", retry: "transient", cause });
    expect(err.issues).toEqual(["a"]);
    expect(ledgerErrorCode(err)).toBe("LEDGER_STORAGE_FAILED");
    // Classification works on plain objects that crossed a boundary.
    expect(ledgerErrorCode({ code: "LEDGER_ROOT_MISMATCH" })).toBe("LEDGER_ROOT_MISMATCH");
    expect(ledgerErrorCode({ code: "ENOENT" })).toBeUndefined();
    expect(ledgerErrorCode(null)).toBeUndefined();
  });
});

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLASSIFIER_ERRORS, ClassifierError, ClassifierErrorCode, classifierErrorCode } from "../../nodes/classifier/index.js";

const doc = readFileSync(new URL("../../nodes/classifier/ERRORS.md", import.meta.url), "utf8");

describe("classifier error registry", () => {
  it("documents every code with its retry class, and nothing else", () => {
    const rows = [...doc.matchAll(/^\| `([A-Z_]+)` \| (permanent|transient) \|/gm)].map((m) => [m[1], m[2]]);
    const table = Object.entries(CLASSIFIER_ERRORS).map(([code, info]) => [code, info.retry]);
    expect(rows).toEqual(table);
  });

  it("names every code constant in the registry", () => {
    expect(Object.values(ClassifierErrorCode).sort()).toEqual(Object.keys(CLASSIFIER_ERRORS).sort());
  });

  it("carries code, retry class and cause", () => {
    const cause = new Error("ENOENT");
    const err = new ClassifierError(ClassifierErrorCode.ModelMissing, "no model", { cause });
    expect(err.code).toBe("CLASSIFIER_MODEL_MISSING");
    expect(err.retry).toBe("permanent");
    expect(err.cause).toBe(cause);
    expect(err.name).toBe("ClassifierError");
    expect(classifierErrorCode(err)).toBe("CLASSIFIER_MODEL_MISSING");
    expect(classifierErrorCode({ code: "CLASSIFIER_MODEL_CORRUPT" })).toBe("CLASSIFIER_MODEL_CORRUPT");
    expect(classifierErrorCode({ code: "ENOENT" })).toBeUndefined();
    expect(classifierErrorCode(null)).toBeUndefined();
  });
});

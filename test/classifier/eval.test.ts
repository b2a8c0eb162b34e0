import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { evaluate, summaryJson } from "../../nodes/classifier/eval.js";

/**
 * The figures documented in nodes/classifier/README.md and recorded in the
 * committed model's manifest.json: the committed model on the held-out split
 * (1,139 mails) at the default threshold 0.5.
 */
const PINNED = {
  confusion: { tp: 349, fp: 5, tn: 778, fn: 7 },
  f1: 698 / 710,
  fpr: 5 / 783,
  accuracy: 1127 / 1139,
  auc: 0.9997022400160719,
  hardHamFpr: 5 / 37,
};

const manifest = JSON.parse(readFileSync(new URL("../../nodes/classifier/model/manifest.json", import.meta.url), "utf8"));

describe("committed model on the held-out split", () => {
  it("reproduces the documented metrics", async () => {
    const r = await evaluate({ peer: false, parsedPath: false });
    const m = r.model.metrics;
    expect(r.scored).toBe(1139);
    expect(r.trainedOn).toBe(4907);
    expect(r.model.version).toBe(manifest.version);
    expect(m.confusion).toEqual(PINNED.confusion);
    expect(Math.abs(m.f1 - PINNED.f1)).toBeLessThan(1e-9);
    expect(Math.abs(m.fpr - PINNED.fpr)).toBeLessThan(1e-9);
    expect(Math.abs(m.accuracy - PINNED.accuracy)).toBeLessThan(1e-9);
    expect(Math.abs(m.auc - PINNED.auc)).toBeLessThan(1e-9);
    expect(Math.abs(r.model.hardHamFpr - PINNED.hardHamFpr)).toBeLessThan(1e-9);
    // The manifest records the same run.
    expect(Math.abs(manifest.metrics.f1 - m.f1)).toBeLessThan(1e-9);
    expect(Math.abs(manifest.metrics.fpr - m.fpr)).toBeLessThan(1e-9);
    expect(Math.abs(manifest.metrics.auc - m.auc)).toBeLessThan(1e-9);
    const json = summaryJson(r);
    expect(json).toMatchObject({ f1: expect.any(Number), fpr: expect.any(Number), accuracy: expect.any(Number), auc: expect.any(Number) });
    expect(r.peers).toEqual([]);
  });
});

import { describe, expect, it } from "vitest";
import { computeMetrics, confusion, rocAuc, rocCurve } from "../../nodes/classifier/metrics.js";

describe("metrics", () => {
  const scores = [0.9, 0.8, 0.6, 0.4, 0.3, 0.1];
  const spam = [true, true, false, true, false, false];

  it("counts the confusion matrix at the threshold (>= is spam)", () => {
    expect(confusion(scores, spam, 0.5)).toEqual({ tp: 2, fp: 1, tn: 2, fn: 1 });
    expect(confusion([0.5], [false], 0.5)).toEqual({ tp: 0, fp: 1, tn: 0, fn: 0 });
  });

  it("computes precision, recall, F1, FPR and accuracy", () => {
    const m = computeMetrics(scores, spam, 0.5);
    expect(m.precision).toBeCloseTo(2 / 3, 12);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
    expect(m.f1).toBeCloseTo(2 / 3, 12);
    expect(m.fpr).toBeCloseTo(1 / 3, 12);
    expect(m.accuracy).toBeCloseTo(4 / 6, 12);
  });

  it("computes ROC AUC by ranks, ties counting one half", () => {
    // Pairs (spam, ham): 9 pairs; misordered: (0.4 vs 0.6) → 8/9.
    expect(rocAuc(scores, spam)).toBeCloseTo(8 / 9, 12);
    expect(rocAuc([0.5, 0.5], [true, false])).toBe(0.5);
    expect(rocAuc([1, 0], [true, true])).toBeNaN();
  });

  it("builds a monotone ROC curve from (0,0) to (1,1)", () => {
    const c = rocCurve(scores, spam);
    expect(c[0]).toMatchObject({ fpr: 0, tpr: 0 });
    expect(c.at(-1)).toMatchObject({ fpr: 1, tpr: 1 });
    for (let i = 1; i < c.length; i++) {
      expect(c[i]!.fpr).toBeGreaterThanOrEqual(c[i - 1]!.fpr);
      expect(c[i]!.tpr).toBeGreaterThanOrEqual(c[i - 1]!.tpr);
    }
  });

  it("returns zeros rather than NaN for empty classes", () => {
    const m = computeMetrics([0.1, 0.2], [false, false], 0.5);
    expect(m.f1).toBe(0);
    expect(m.recall).toBe(0);
    expect(m.fpr).toBe(0);
  });
});

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { simpleParser } from "mailparser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_THRESHOLD, loadClassifier, MAILPARSER_OPTIONS } from "../../nodes/classifier/index.js";
import type { Classifier } from "../../nodes/classifier/index.js";

const DIR = new URL("../fixtures/classifier/", import.meta.url).pathname;
const fixtures = readdirSync(DIR)
  .filter((f) => f.endsWith(".eml"))
  .sort()
  .map((name) => ({ name, spam: name.startsWith("spam"), raw: readFileSync(join(DIR, name)) }));

let classifier: Classifier;
beforeAll(async () => {
  classifier = await loadClassifier();
});
afterAll(() => classifier.dispose());

describe("known mails get the expected verdicts", () => {
  it("has three spam and three ham fixtures", () => {
    expect(fixtures.filter((f) => f.spam)).toHaveLength(3);
    expect(fixtures.filter((f) => !f.spam)).toHaveLength(3);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))("%s", async (_name, f) => {
    const [s] = await classifier.classifyRaw([f.raw]);
    expect(s!.score >= DEFAULT_THRESHOLD).toBe(f.spam);
  });

  it("scores a batch the same as one by one", async () => {
    const batch = await classifier.classifyRaw(fixtures.map((f) => f.raw));
    for (const [i, f] of fixtures.entries()) {
      const [one] = await classifier.classifyRaw([f.raw]);
      expect(batch[i]!.score).toBeCloseTo(one!.score, 6);
    }
  });

  it("classifyParsed (mailparser) agrees with classifyRaw on the verdicts", async () => {
    const parsed = await Promise.all(fixtures.map((f) => simpleParser(f.raw, MAILPARSER_OPTIONS)));
    const viaParsed = await classifier.classifyParsed(parsed);
    const viaRaw = await classifier.classifyRaw(fixtures.map((f) => f.raw));
    viaParsed.forEach((s, i) => {
      expect(s.score >= DEFAULT_THRESHOLD).toBe(fixtures[i]!.spam);
      expect(Math.abs(s.score - viaRaw[i]!.score)).toBeLessThan(0.1);
    });
  });

  it("rejects non-byte input with CLASSIFIER_INPUT_INVALID", async () => {
    await expect(classifier.classifyRaw(["text" as unknown as Buffer])).rejects.toMatchObject({ code: "CLASSIFIER_INPUT_INVALID" });
  });

  it("scores empty and degenerate messages without throwing", async () => {
    const s = await classifier.classifyRaw([Buffer.alloc(0), Buffer.from("\r\n\r\n"), Buffer.from("garbage without headers")]);
    for (const x of s) expect(x.score >= 0 && x.score <= 1).toBe(true);
  });
});

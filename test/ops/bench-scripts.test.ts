import { readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import madge from "madge";
import { describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const benchDir = path.join(root, "test/bench");

// The benchmark scripts run under tsx, outside vitest, where importing
// "vitest" throws ("Vitest failed to access its internal state"). They share
// helpers with the tests, so this keeps the test-only hooks out of their reach.
// The import graph is madge's, as in `npm run circular` (type-only imports
// are skipped: they vanish at run time).
describe("benchmark scripts", () => {
  it("import nothing that loads vitest", async () => {
    const scripts = (await readdir(benchDir)).filter((f) => f.endsWith(".ts")).map((f) => path.join(benchDir, f));
    expect(scripts.length).toBeGreaterThanOrEqual(4);
    const graph = await madge(scripts, {
      baseDir: root, fileExtensions: ["ts"], tsConfig: path.join(root, "tsconfig.json"), includeNpm: true,
      detectiveOptions: { ts: { skipTypeImports: true }, es6: { skipTypeImports: true } },
    });
    const offenders = Object.entries(graph.obj())
      .flatMap(([file, deps]) => deps.filter((d) => /node_modules\/vitest\//.test(d)).map(() => file));
    expect(offenders).toEqual([]);
  }, 60_000);
});

import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const benchDir = path.join(root, "test/bench");

/** Every module a file imports by relative path, transitively, with the bare specifiers each one imports. */
async function importGraph(entry: string): Promise<Map<string, string[]>> {
  const seen = new Map<string, string[]>();
  const visit = async (file: string): Promise<void> => {
    if (seen.has(file)) return;
    const text = await readFile(file, "utf8");
    const specs = [...text.matchAll(/^\s*import\s+(?:type\s+)?(?:[^"';]*?\s+from\s+)?["']([^"']+)["']/gm)]
      .filter((m) => !/^\s*import\s+type\s/.test(m[0]))
      .map((m) => m[1]!);
    seen.set(file, specs.filter((s) => !s.startsWith(".")));
    for (const s of specs.filter((x) => x.startsWith("."))) {
      await visit(path.resolve(path.dirname(file), s.replace(/\.js$/, ".ts")));
    }
  };
  await visit(entry);
  return seen;
}

// The benchmark scripts run under tsx, outside vitest, where importing
// "vitest" throws ("Vitest failed to access its internal state"). They share
// helpers with the tests, so this keeps the test-only hooks out of their reach.
describe("benchmark scripts", () => {
  it("import nothing that loads vitest", async () => {
    const scripts = (await readdir(benchDir)).filter((f) => f.endsWith(".ts"));
    expect(scripts.length).toBeGreaterThanOrEqual(4);
    const offenders: string[] = [];
    for (const s of scripts) {
      for (const [file, bare] of await importGraph(path.join(benchDir, s))) {
        if (bare.some((b) => b === "vitest" || b.startsWith("vitest/"))) offenders.push(`${s} → ${path.relative(root, file)}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});

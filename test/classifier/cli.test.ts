import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { ClassifyExit, runClassifyCommand } from "../../nodes/classifier/index.js";

const FIXTURES = new URL("../fixtures/classifier/", import.meta.url).pathname;
const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".eml")).sort().map((f) => join(FIXTURES, f));
const version = JSON.parse(readFileSync(new URL("../../nodes/classifier/model/manifest.json", import.meta.url), "utf8")).version as string;

async function run(argv: string[], stdin = ""): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runClassifyCommand(argv, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    stdin: Readable.from([Buffer.from(stdin)]),
  });
  return { code, out, err };
}

const empty = mkdtempSync(join(tmpdir(), "fen-cli-test-"));
afterAll(() => rmSync(empty, { recursive: true, force: true }));

describe("fastemailnet classify", () => {
  it("prints path, score, verdict and model version per file", async () => {
    const r = await run(files);
    expect(r.code).toBe(ClassifyExit.Ok);
    const lines = r.out.trim().split("\n");
    expect(lines).toHaveLength(files.length);
    lines.forEach((line, i) => {
      const [path, score, verdict, v] = line.split("\t");
      expect(path).toBe(files[i]);
      expect(Number(score)).toBeGreaterThanOrEqual(0);
      expect(Number(score)).toBeLessThanOrEqual(1);
      expect(verdict).toBe(Number(score) >= 0.5 ? "spam" : "ham");
      expect(v).toBe(version);
    });
  });

  it("--json prints one object per line; --threshold sets the verdict", async () => {
    const r = await run(["--json", "--threshold", "1", ...files]);
    const rows = r.out.trim().split("\n").map((l) => JSON.parse(l));
    expect(rows.map((x) => x.path)).toEqual(files);
    for (const x of rows) expect(x).toMatchObject({ verdict: "ham", model: version });
  });

  it("reads one message from stdin for '-'", async () => {
    const raw = readFileSync(files[0]!, "latin1");
    const fromStdin = await run(["--json", "-"], raw);
    const fromFile = await run(["--json", files[0]!]);
    expect(JSON.parse(fromStdin.out).path).toBe("-");
    expect(JSON.parse(fromStdin.out).score).toBe(JSON.parse(fromFile.out).score);
  });

  it("reports unreadable files and scores the rest (exit 1)", async () => {
    const r = await run([join(empty, "missing.eml"), files[0]!]);
    expect(r.code).toBe(ClassifyExit.SomeUnreadable);
    expect(r.err).toContain("missing.eml");
    expect(r.out.trim().split("\n")).toHaveLength(1);
  });

  it("reports a file that is not a mail (empty, binary, JSON) instead of scoring it, and scores the rest (exit 1)", async () => {
    const notMail = [["empty.eml", ""], ["blob.bin", "\u0000\u0001\u00ff garbage"], ["data.json", '{"a":1}']].map(([name, text]) => {
      const p = join(empty, name!);
      writeFileSync(p, text!);
      return p;
    });
    const r = await run([...notMail, files[0]!]);
    expect(r.code).toBe(ClassifyExit.SomeUnreadable);
    for (const p of notMail) expect(r.err).toContain(`${p}: not an RFC 5322 message`);
    expect(r.out.trim().split("\n")).toHaveLength(1);
  });

  it("scores a mail saved with a UTF-8 byte order mark as the same mail", async () => {
    const p = join(empty, "bom.eml");
    writeFileSync(p, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), readFileSync(files[0]!)]));
    const [withBom, plain] = [await run(["--json", p]), await run(["--json", files[0]!])];
    expect(withBom.code).toBe(ClassifyExit.Ok);
    expect(JSON.parse(withBom.out).score).toBe(JSON.parse(plain.out).score);
  });

  it("rejects bad arguments (exit 2)", async () => {
    expect((await run([])).code).toBe(ClassifyExit.Usage);
    expect((await run(["--bogus", files[0]!])).code).toBe(ClassifyExit.Usage);
    expect((await run(["--threshold", "2", files[0]!])).code).toBe(ClassifyExit.Usage);
    // Number() reads "" as 0 (every mail spam) and "0x1" as 1.
    for (const t of ["", " ", " 0.5", "0x1", "1e-1"]) expect((await run(["--threshold", t, files[0]!])).code).toBe(ClassifyExit.Usage);
    expect((await run(["-", "-"])).code).toBe(ClassifyExit.Usage);
    const help = await run(["--help"]);
    expect(help.code).toBe(ClassifyExit.Ok);
    expect(help.out).toMatch(/^usage: fastemailnet classify/);
  });

  it("exits 3 with the error code when the model cannot be loaded", async () => {
    const r = await run(["--model", empty, files[0]!]);
    expect(r.code).toBe(ClassifyExit.ModelUnavailable);
    expect(r.err).toContain("CLASSIFIER_MODEL_MISSING");
  });

  it("scores large batches (many files per call)", async () => {
    const many = Array.from({ length: 700 }, (_, i) => files[i % files.length]!);
    const r = await run(many);
    expect(r.code).toBe(ClassifyExit.Ok);
    expect(r.out.trim().split("\n")).toHaveLength(700);
  });
});

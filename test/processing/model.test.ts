import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { loadMailClassifier } from "../../nodes/processing/index.js";
import { usePipeline } from "../helpers/suite.js";
import { startGateway, startProcessing, status, submit, until } from "../helpers/system.js";

const root = path.resolve(import.meta.dirname, "../..");
const fixture = (name: string) => {
  // Corpus files start with an mbox "From " separator line, which is not
  // part of the RFC 5322 message.
  const text = readFileSync(path.join(root, "test/fixtures/classifier", name), "latin1");
  return Buffer.from(text.replace(/^From [^\n]*\n/, ""), "latin1");
};
const rawSubmit = (name: string) => ({
  kind: "mail.submit" as const, v: 1 as const, idempotencyKey: `model-${name}`,
  mail: { raw: fixture(name).toString("base64"), envelope: { from: "sender@example.org", to: ["rcpt@example.net"] } },
});

const p = usePipeline({
  // The committed TensorFlow.js model.
  start: async (nc, port) => [await startGateway(nc), await startProcessing(nc, port, {}, await loadMailClassifier(undefined))],
});

it("with the committed model: known spam is quarantined with its verdict, known ham is delivered", async () => {
  const hams = ["ham-easy-1.eml", "ham-easy-2.eml", "ham-hard-1.eml"];
  const spams = ["spam-1.eml", "spam-2.eml", "spam-3.eml"];
  const replies = new Map<string, Awaited<ReturnType<typeof submit>>>();
  for (const f of [...hams, ...spams]) replies.set(f, await submit(p.nc, rawSubmit(f)));
  for (const f of hams) {
    const st = await until(`${f} Sent`, async () => { const s = await status(p.nc, replies.get(f)!.mailId); return s.state === "Sent" && s; });
    const c = st.history.find((e) => e.state === "Validated")?.detail.classification;
    expect(c?.verdict).toBe("ham");
    expect(c?.modelVersion).toMatch(/^[0-9a-f]{16}$/);
  }
  for (const f of spams) {
    const st = await until(`${f} Quarantined`, async () => { const s = await status(p.nc, replies.get(f)!.mailId); return s.state === "Quarantined" && s; });
    expect(st.history.at(-1)?.detail.classification?.verdict).toBe("spam");
  }
  expect(p.sink.messages).toHaveLength(hams.length);
});

it("a processing node with a missing or corrupt model refuses to start with a clear error", () => {
  const run = (modelDir: string) => spawnSync(process.execPath, ["--import", "tsx", "nodes/processing/main.ts"], {
    cwd: root, encoding: "utf8", timeout: 60_000, env: { ...process.env, FEN_MODEL_DIR: modelDir, FEN_NATS_URLS: p.cluster.urls.join(",") },
  });
  const missing = run(path.join(os.tmpdir(), "no-such-model"));
  expect(missing.status).toBe(1);
  expect(missing.stdout + missing.stderr).toContain("CLASSIFIER_MODEL_MISSING");
  expect(missing.stdout).toContain("refusing to start");

  const dir = mkdtempSync(path.join(os.tmpdir(), "fen-model-"));
  for (const f of ["manifest.json", "model.json", "weights.bin"]) copyFileSync(path.join(root, "nodes/classifier/model", f), path.join(dir, f));
  const w = readFileSync(path.join(dir, "weights.bin"));
  w[1000] = w[1000]! ^ 0xff;
  writeFileSync(path.join(dir, "weights.bin"), w);
  const corrupt = run(dir);
  expect(corrupt.status).toBe(1);
  expect(corrupt.stdout + corrupt.stderr).toMatch(/CLASSIFIER_MODEL_(CORRUPT|HASH_MISMATCH)/);
});

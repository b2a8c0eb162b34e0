import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEFAULT_MODEL_DIR, loadClassifier } from "../../nodes/classifier/index.js";
import { MODEL_FILES, modelVersion } from "../../nodes/classifier/model-io.js";

const dirs: string[] = [];
function copyModel(): string {
  const dir = mkdtempSync(join(tmpdir(), "fen-model-test-"));
  cpSync(DEFAULT_MODEL_DIR, dir, { recursive: true });
  dirs.push(dir);
  return dir;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function codeOf(modelDir: string): Promise<string | undefined> {
  try {
    (await loadClassifier({ modelDir })).dispose();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

describe("committed model", () => {
  it("is at most 5 MB and loads offline with its version hash", async () => {
    const size = Object.values(MODEL_FILES).reduce((n, f) => n + readFileSync(join(DEFAULT_MODEL_DIR, f)).length, 0);
    expect(size).toBeLessThanOrEqual(5 * 1024 * 1024);
    const manifest = JSON.parse(readFileSync(join(DEFAULT_MODEL_DIR, MODEL_FILES.manifest), "utf8"));
    const c = await loadClassifier();
    expect(c.version).toMatch(/^[0-9a-f]{16}$/);
    expect(c.version).toBe(manifest.version);
    expect(
      modelVersion(readFileSync(join(DEFAULT_MODEL_DIR, MODEL_FILES.topology)), readFileSync(join(DEFAULT_MODEL_DIR, MODEL_FILES.weights)), manifest.features),
    ).toBe(c.version);
    c.dispose();
    await expect(c.classifyRaw([Buffer.from("x")])).rejects.toMatchObject({ code: "CLASSIFIER_INFERENCE_FAILED" });
  });
});

describe("loadClassifier refuses a bad model with a stable code", () => {
  it("CLASSIFIER_MODEL_MISSING: no directory, or a file missing", async () => {
    expect(await codeOf(join(tmpdir(), "fen-no-such-model-dir"))).toBe("CLASSIFIER_MODEL_MISSING");
    for (const f of Object.values(MODEL_FILES)) {
      const dir = copyModel();
      unlinkSync(join(dir, f));
      expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_MISSING");
    }
  });

  it("CLASSIFIER_MODEL_CORRUPT: invalid JSON, truncated weights, wrong topology", async () => {
    let dir = copyModel();
    writeFileSync(join(dir, MODEL_FILES.topology), "{ not json");
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_CORRUPT");

    dir = copyModel();
    writeFileSync(join(dir, MODEL_FILES.manifest), "[]");
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_CORRUPT");

    dir = copyModel();
    const w = readFileSync(join(dir, MODEL_FILES.weights));
    writeFileSync(join(dir, MODEL_FILES.weights), w.subarray(0, w.length - 100));
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_CORRUPT");

    dir = copyModel();
    const topo = readFileSync(join(dir, MODEL_FILES.topology), "utf8").replace('"sigmoid"', '"linear"');
    writeFileSync(join(dir, MODEL_FILES.topology), topo);
    // Re-sign so that only the topology check can object.
    const manifest = JSON.parse(readFileSync(join(dir, MODEL_FILES.manifest), "utf8"));
    manifest.version = modelVersion(Buffer.from(topo), readFileSync(join(dir, MODEL_FILES.weights)), manifest.features);
    writeFileSync(join(dir, MODEL_FILES.manifest), JSON.stringify(manifest));
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_CORRUPT");
  });

  it("CLASSIFIER_MODEL_CORRUPT: weights that are not finite (a diverged training run), or no bias", async () => {
    /** A copy of the model with its weights changed by `edit` and the manifest re-signed, so only the weight checks can object. */
    const withWeights = (edit: (w: Float32Array) => Float32Array) => {
      const dir = copyModel();
      const raw = readFileSync(join(dir, MODEL_FILES.weights));
      const w = edit(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));
      writeFileSync(join(dir, MODEL_FILES.weights), new Uint8Array(w.buffer));
      const manifest = JSON.parse(readFileSync(join(dir, MODEL_FILES.manifest), "utf8"));
      manifest.version = modelVersion(readFileSync(join(dir, MODEL_FILES.topology)), readFileSync(join(dir, MODEL_FILES.weights)), manifest.features);
      writeFileSync(join(dir, MODEL_FILES.manifest), JSON.stringify(manifest));
      return dir;
    };
    for (const v of [NaN, Infinity, -Infinity]) {
      const dir = withWeights((w) => { w[7] = v; return w; });
      await expect(loadClassifier({ modelDir: dir })).rejects.toMatchObject({ code: "CLASSIFIER_MODEL_CORRUPT", message: expect.stringMatching(/weight 7 is/) });
    }
    // A Dense layer saved without its bias: the kernel alone, the topology saying useBias false.
    const dir = withWeights((w) => w.slice(0, w.length - 1));
    const topo = JSON.parse(readFileSync(join(dir, MODEL_FILES.topology), "utf8"));
    topo.weightsManifest[0].weights = topo.weightsManifest[0].weights.slice(0, 1);
    writeFileSync(join(dir, MODEL_FILES.topology), JSON.stringify(topo).replace('"use_bias":true', '"use_bias":false'));
    const manifest = JSON.parse(readFileSync(join(dir, MODEL_FILES.manifest), "utf8"));
    manifest.version = modelVersion(readFileSync(join(dir, MODEL_FILES.topology)), readFileSync(join(dir, MODEL_FILES.weights)), manifest.features);
    writeFileSync(join(dir, MODEL_FILES.manifest), JSON.stringify(manifest));
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_CORRUPT");
  });

  it("CLASSIFIER_MODEL_HASH_MISMATCH: a weight changed, or the manifest names another version", async () => {
    let dir = copyModel();
    const w = readFileSync(join(dir, MODEL_FILES.weights));
    w[1234] = w[1234]! ^ 0xff;
    writeFileSync(join(dir, MODEL_FILES.weights), w);
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_HASH_MISMATCH");

    dir = copyModel();
    const manifest = JSON.parse(readFileSync(join(dir, MODEL_FILES.manifest), "utf8"));
    manifest.version = "0123456789abcdef";
    writeFileSync(join(dir, MODEL_FILES.manifest), JSON.stringify(manifest));
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_HASH_MISMATCH");
  });

  it("CLASSIFIER_MODEL_INCOMPATIBLE: another feature or format version", async () => {
    let dir = copyModel();
    let manifest = JSON.parse(readFileSync(join(dir, MODEL_FILES.manifest), "utf8"));
    manifest.features.version = 999;
    writeFileSync(join(dir, MODEL_FILES.manifest), JSON.stringify(manifest));
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_INCOMPATIBLE");

    dir = copyModel();
    manifest = JSON.parse(readFileSync(join(dir, MODEL_FILES.manifest), "utf8"));
    manifest.formatVersion = 2;
    writeFileSync(join(dir, MODEL_FILES.manifest), JSON.stringify(manifest));
    expect(await codeOf(dir)).toBe("CLASSIFIER_MODEL_INCOMPATIBLE");
  });
});

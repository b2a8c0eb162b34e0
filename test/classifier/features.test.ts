import { describe, expect, it } from "vitest";
import { DEFAULT_FEATURE_CONFIG, FeatureExtractor, inputDim, NUMERIC_FEATURES } from "../../nodes/classifier/features.js";
import type { SparseFeatures } from "../../nodes/classifier/features.js";
import { parseMime } from "../../nodes/classifier/mime.js";

const MAIL = `Subject: FREE offer, act NOW!!!
Content-Type: multipart/alternative; boundary=x

--x
Content-Type: text/plain

Dear friend, claim your $1000 prize at http://win.example.com/claim today.
--x
Content-Type: text/html

<p>Dear friend, claim your <b>$1000</b> prize <a href="http://win.example.com/claim">here</a></p>
--x--
`;

const asMap = (f: SparseFeatures): Map<number, number> => new Map(Array.from(f.indices, (i, k) => [i, f.values[k]!]));

describe("FeatureExtractor", () => {
  const fx = new FeatureExtractor();

  it("is deterministic and reuses its buffers safely", () => {
    const a = fx.extract(parseMime(Buffer.from(MAIL)));
    fx.extract(parseMime(Buffer.from("Subject: other\n\nsomething else entirely")));
    const b = fx.extract(parseMime(Buffer.from(MAIL)));
    expect(asMap(b)).toEqual(asMap(a));
  });

  it("emits unique in-range indices, the bias feature, and normalised word features", () => {
    const f = fx.extract(parseMime(Buffer.from(MAIL)));
    const dim = inputDim(DEFAULT_FEATURE_CONFIG);
    expect(dim).toBe(2 ** 18 + NUMERIC_FEATURES.length);
    expect(new Set(f.indices).size).toBe(f.indices.length);
    for (const i of f.indices) expect(i >= 0 && i < dim).toBe(true);
    const m = asMap(f);
    expect(m.get(2 ** 18)).toBe(1); // bias
    // Subject and body word features each have unit L2 norm, the link path / query tokens (the mail has an
    // http link) norm urlPathWeight; structure tokens carry structWeight.
    const words = [...m].filter(([i, v]) => i < 2 ** 18 && Math.abs(Math.abs(v) - DEFAULT_FEATURE_CONFIG.structWeight) > 1e-6);
    const norm2 = words.reduce((s, [, v]) => s + v * v, 0);
    expect(norm2).toBeCloseTo(DEFAULT_FEATURE_CONFIG.subjectWeight ** 2 + 1 + (DEFAULT_FEATURE_CONFIG.urlPathWeight ?? 0) ** 2, 5);
  });

  it("ignores transport, list and filter headers (outbound mail has none)", () => {
    const plain = fx.extract(parseMime(Buffer.from(MAIL)));
    const withTransport = fx.extract(
      parseMime(
        Buffer.from(
          "From spammer@x  Mon Jun 24 17:03:24 2002\nReceived: from evil.example ([10.0.0.1]) by mx\nReturn-Path: <a@b>\n" +
            "List-Id: <ilug.linux.ie>\nX-Spam-Status: Yes, hits=12\nPrecedence: bulk\nX-Mailer: Whatever 1.0\n" +
            "From: Someone <s@example.org>\nTo: you@example.net\nDate: Mon, 1 Jul 2002 10:00:00 +0000\n" +
            MAIL,
        ),
      ),
    );
    expect(asMap(withTransport)).toEqual(asMap(plain));
  });

  it("reads the subject, the body and the HTML part", () => {
    const empty = fx.extract(parseMime(Buffer.from("\n\n")));
    const full = fx.extract(parseMime(Buffer.from(MAIL)));
    expect(full.indices.length).toBeGreaterThan(empty.indices.length + 20);
    const noSubject = fx.extract(parseMime(Buffer.from(MAIL.replace(/^Subject:.*\n/, ""))));
    expect(asMap(noSubject)).not.toEqual(asMap(full));
  });

  it("depends on the hash configuration", () => {
    const other = new FeatureExtractor({ ...DEFAULT_FEATURE_CONFIG, hashBits: 12, salt: 7 });
    const f = other.extract(parseMime(Buffer.from(MAIL)));
    for (const i of f.indices) expect(i < 2 ** 12 + NUMERIC_FEATURES.length).toBe(true);
  });
});

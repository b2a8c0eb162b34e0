import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { BODY_REAP_AGE_MIN_MS, ConfigTables, CrossKeyRules, GatewayKeys, ProcessingKeys, loadConfig } from "../../nodes/config/index.js";
import { DUPLICATE_WINDOW_MS } from "../../protocol/index.js";
import type { FenError } from "../../protocol/index.js";

describe("configuration", () => {
  it("applies defaults, normalises units and freezes the result", () => {
    const c = loadConfig(ProcessingKeys, { FEN_SMTP_PORT: "25", FEN_NATS_URLS: "nats://a:4222, nats://b:4222" });
    expect(c.smtpPort).toBe(25);
    expect(c.natsUrls).toEqual(["nats://a:4222", "nats://b:4222"]);
    expect(c.retryBaseMs).toBe(30_000);
    expect(Object.isFrozen(c)).toBe(true);
  });
  it("reports every bad key at once with its env name", () => {
    try {
      loadConfig(GatewayKeys, { FEN_MAX_MESSAGE_BYTES: "lots", FEN_LOG_LEVEL: "chatty" });
      expect.unreachable();
    } catch (err) {
      const e = err as FenError;
      expect(e.code).toBe("CONFIG_INVALID");
      expect(e.fields.map((f) => f.field).sort()).toEqual(["FEN_LOG_LEVEL", "FEN_MAX_MESSAGE_BYTES"]);
    }
  });
  it.each([
    ["FEN_QUARANTINE_THRESHOLD", " "], ["FEN_QUARANTINE_THRESHOLD", "0x1"], ["FEN_HTTP_PORT", " "], ["FEN_HTTP_PORT", "1e3"], ["FEN_SMTP_PORT", "25.5"],
  ])("%s=%j is CONFIG_INVALID, not a number it happens to coerce to (a blank threshold was 0: every mail quarantined)", (env, value) => {
    expect(() => loadConfig(ProcessingKeys, { [env]: value })).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", fields: [expect.objectContaining({ field: env })] }));
  });
  it.each([
    ["FEN_SMTP_PORT", "abc", /^not a decimal integer: "abc"$/], ["FEN_SMTP_PORT", "25.5", /^not a decimal integer: "25\.5"$/],
    ["FEN_QUARANTINE_THRESHOLD", "high", /^not a decimal number: "high"$/], ["FEN_QUARANTINE_THRESHOLD", "0x1", /^not a decimal number: "0x1"$/],
  ])("%s=%j says what it expected and what it got (it said only \"Invalid input\")", (env, value, message) => {
    expect(() => loadConfig(ProcessingKeys, { [env]: value })).toThrow(expect.objectContaining({ fields: [expect.objectContaining({ field: env, message: expect.stringMatching(message) })] }));
  });
  it("takes decimal numbers, and node names with dots (Kubernetes pod names)", () => {
    const c = loadConfig(ProcessingKeys, { FEN_QUARANTINE_THRESHOLD: "0.95", FEN_HTTP_PORT: " 9101 ", FEN_NODE_NAME: "mail.prod-fastemailnet-processing-6f7c9d8b5-x2x7q" });
    expect([c.quarantineThreshold, c.httpPort, c.nodeName]).toEqual([0.95, 9101, "mail.prod-fastemailnet-processing-6f7c9d8b5-x2x7q"]);
  });
  it.each([
    [{ FEN_SMTP_TIMEOUT_MS: "5000", FEN_SMTP_TRANSACTION_TIMEOUT_MS: "2000" }, "FEN_SMTP_TRANSACTION_TIMEOUT_MS", /\(2000\) is shorter than FEN_SMTP_TIMEOUT_MS \(5000\)/],
    [{ FEN_RETRY_BASE_MS: "60000", FEN_RETRY_MAX_MS: "1000" }, "FEN_RETRY_MAX_MS", /\(1000\) is below FEN_RETRY_BASE_MS \(60000\)/],
    // A relay user without a password AUTHed with an empty one; a password without a user was never sent.
    [{ FEN_SMTP_USER: "relay" }, "FEN_SMTP_USER", /^FEN_SMTP_USER is set but FEN_SMTP_PASSWORD is not: set both/],
    [{ FEN_SMTP_USER: "relay", FEN_SMTP_PASSWORD: "" }, "FEN_SMTP_USER", /^FEN_SMTP_USER is set but FEN_SMTP_PASSWORD is not/],
    [{ FEN_SMTP_PASSWORD: "secret" }, "FEN_SMTP_USER", /^FEN_SMTP_PASSWORD is set but FEN_SMTP_USER is not: set both/],
  ])("a rule between keys: %j is CONFIG_INVALID naming %s", (env, field, message) => {
    expect(() => loadConfig(ProcessingKeys, env)).toThrow(expect.objectContaining({
      code: "CONFIG_INVALID", fields: [expect.objectContaining({ field, message: expect.stringMatching(message) })],
    }));
  });
  it("rules between keys wait for every key to be valid on its own (one error per bad key, not a second from the rule)", () => {
    expect(() => loadConfig(ProcessingKeys, { FEN_RETRY_BASE_MS: "soon", FEN_RETRY_MAX_MS: "1" })).toThrow(expect.objectContaining({
      fields: [expect.objectContaining({ field: "FEN_RETRY_BASE_MS" })],
    }));
    expect(loadConfig(ProcessingKeys, { FEN_RETRY_BASE_MS: "1000", FEN_RETRY_MAX_MS: "1000", FEN_SMTP_TIMEOUT_MS: "5000", FEN_SMTP_TRANSACTION_TIMEOUT_MS: "5000" }).retryMaxMs).toBe(1000);
    expect(loadConfig(ProcessingKeys, { FEN_SMTP_USER: "relay", FEN_SMTP_PASSWORD: "secret" })).toMatchObject({ smtpUser: "relay", smtpPassword: "secret" });
  });
  it("the body reaper's age is at least 6 h, three duplicate windows of MAIL_WORK, far above the longest submission; its interval is 0 (off) or at least a minute", () => {
    expect(loadConfig(ProcessingKeys, {})).toMatchObject({ bodyReapAgeMs: 86_400_000, bodyReapIntervalMs: 3_600_000 });
    expect(BODY_REAP_AGE_MIN_MS).toBe(3 * DUPLICATE_WINDOW_MS);
    expect(BODY_REAP_AGE_MIN_MS).toBeGreaterThan(100 * (loadConfig(GatewayKeys, { FEN_SUBMIT_TIMEOUT_MS: "120000" }).submitTimeoutMs));
    expect(() => loadConfig(GatewayKeys, { FEN_SUBMIT_TIMEOUT_MS: "120001" })).toThrow(expect.objectContaining({ code: "CONFIG_INVALID" }));
    expect(loadConfig(ProcessingKeys, { FEN_BODY_REAP_AGE_MS: String(BODY_REAP_AGE_MIN_MS), FEN_BODY_REAP_INTERVAL_MS: "0" }))
      .toMatchObject({ bodyReapAgeMs: BODY_REAP_AGE_MIN_MS, bodyReapIntervalMs: 0 });
    expect(loadConfig(ProcessingKeys, { FEN_BODY_REAP_INTERVAL_MS: "60000" }).bodyReapIntervalMs).toBe(60_000);
    for (const [env, value] of [["FEN_BODY_REAP_AGE_MS", String(BODY_REAP_AGE_MIN_MS - 1)], ["FEN_BODY_REAP_AGE_MS", "0"], ["FEN_BODY_REAP_INTERVAL_MS", "59999"], ["FEN_BODY_REAP_INTERVAL_MS", "-1"]] as const) {
      expect(() => loadConfig(ProcessingKeys, { [env]: value })).toThrow(expect.objectContaining({ code: "CONFIG_INVALID", fields: [expect.objectContaining({ field: env })] }));
    }
    expect(() => loadConfig(ProcessingKeys, { FEN_BODY_REAP_INTERVAL_MS: "1000" })).toThrow(expect.objectContaining({
      fields: [expect.objectContaining({ field: "FEN_BODY_REAP_INTERVAL_MS", message: expect.stringMatching(/0 \(off\) or at least 60000/) })],
    }));
  });
  it("every rule between keys names keys of a table (else it would never run) and is in CONFIG.md", () => {
    const md = readFileSync(new URL("../../nodes/config/CONFIG.md", import.meta.url), "utf8");
    for (const rule of CrossKeyRules) {
      expect(Object.values(ConfigTables).some((t) => rule.keys.every((k) => k in t))).toBe(true);
      expect(md).toContain(rule.doc);
    }
  });
  it("CONFIG.md documents every key of every role, and no other", () => {
    const md = readFileSync(new URL("../../nodes/config/CONFIG.md", import.meta.url), "utf8");
    const documented = new Set([...md.matchAll(/^\| `(FEN_[A-Z_]+)` \|/gm)].map((m) => m[1]));
    const all = new Set(Object.values(ConfigTables).flatMap((t) => Object.values(t).map((k) => k.env)));
    expect(documented).toEqual(all);
  });
});

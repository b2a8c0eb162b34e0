import { expect, it } from "vitest";
import { Codecs, DUPLICATE_WINDOW_MS, contentSha256 } from "../../protocol/index.js";
import type { FenError, SubmitReply, SubmitRequest } from "../../protocol/index.js";
import { canonicalJson } from "../../nodes/gateway/submit.js";
import { usePipeline } from "../helpers/suite.js";
import { bodyObjects, startGateway, startProcessing, status, structured, submit, until } from "../helpers/system.js";

/**
 * Submissions of one mail that race each other (a client retrying after a
 * timeout, two instances of a sender): exactly one is stored and delivered,
 * the others are answered as duplicates, and a key reused for another mail
 * is refused, never answered as a duplicate of it.
 */
const p = usePipeline({ start: async (nc, port) => [await startGateway(nc), await startProcessing(nc, port)] });

const settled = (req: SubmitRequest) => submit(p.nc, req).then((r): SubmitReply | FenError => r, (e: unknown) => e as FenError);

it("two identical submissions of a mail too large to ride inline, at once: one delivery, no body object left", async () => {
  for (let round = 0; round < 3; round++) {
    // No key: the mail id is the content's hash. Each submission composes its own bytes (MIME boundary, Date).
    const req = structured(`race-big-${round}`, { text: "x".repeat(600 * 1024) });
    const replies = await Promise.all([settled(req), settled(req)]);
    const ok = replies.filter((r): r is SubmitReply => "mailId" in r);
    expect(ok).toHaveLength(2);
    expect(ok.map((r) => r.duplicate).sort()).toEqual([false, true]);
    const mailId = ok[0]!.mailId;
    await until(`round ${round} Sent`, async () => (await status(p.nc, mailId)).state === "Sent", 30_000);
    expect(p.sink.messages.filter((m) => m.messageId === ok[0]!.messageId)).toHaveLength(1);
    await until("no body object left", async () => (await bodyObjects(p.nc, mailId)).length === 0);
  }
}, 120_000);

it("one key, two different mails at once: one is stored, the other is refused with IDEMPOTENCY_CONFLICT (or asked to retry)", async () => {
  const codes: string[] = [];
  for (let round = 0; round < 10; round++) {
    const key = `race-key-${round}`;
    const [a, b] = await Promise.all([settled(structured(`a-${round}`, { key })), settled(structured(`b-${round}`, { key }))]);
    const outcomes = [a!, b!].map((r) => ("mailId" in r ? (r.duplicate ? "duplicate" : "stored") : r.code));
    codes.push(...outcomes);
    expect(outcomes).toContain("stored");
    expect(outcomes).not.toContain("duplicate");
    const other = outcomes.find((o) => o !== "stored");
    expect(["IDEMPOTENCY_CONFLICT", "STORE_UNAVAILABLE"]).toContain(other);
  }
  console.log(`racing reused keys, 10 rounds: ${codes.filter((c) => c === "IDEMPOTENCY_CONFLICT").length} IDEMPOTENCY_CONFLICT, ${codes.filter((c) => c === "STORE_UNAVAILABLE").length} STORE_UNAVAILABLE`);
}, 120_000);

it("no caller's key takes the id of another sender's keyless mail (not even \"content:<hash>:<window>\")", async () => {
  const victim = structured("keyless-victim");
  // What the gateway hashes for a keyless structured mail: its canonical form, defaults applied.
  const hash = contentSha256(canonicalJson(Codecs.submitRequest.decode(Codecs.submitRequest.encode(victim)).mail));
  const window = Math.floor(Date.now() / DUPLICATE_WINDOW_MS);
  const squatter = await submit(p.nc, { ...structured("squatter"), idempotencyKey: `content:${hash}:${window}` });
  const r = await submit(p.nc, victim);
  expect(r.duplicate).toBe(false);
  expect(r.mailId).not.toBe(squatter.mailId);
  await until("the keyless mail Sent", async () => (await status(p.nc, r.mailId)).state === "Sent", 30_000);
});

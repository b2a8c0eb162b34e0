import { describe, expect, it } from "vitest";
import { Codecs, ServiceSubjects } from "../../protocol/index.js";
import { Svcm } from "@nats-io/services";
import { callService, requestsSettled, serveEndpoint } from "../../nodes/common/rpc.js";
import { testLog } from "../helpers/system.js";
import { structured } from "../helpers/system.js";
import { fastemailnet } from "../helpers/cli.js";
import { useProvisionedCluster } from "../helpers/suite.js";

/**
 * A request that gets no answer is named by code, so a client can tell
 * "nothing was done" (no node serves the subject) from "it may have been
 * done" (no reply in time): a bare "timeout" once told a publisher its mail
 * had failed when it had been stored.
 */
const env = useProvisionedCluster();

describe("requests without an answer", () => {  const submit = (timeoutMs: number) =>
    callService(env.nc, ServiceSubjects.submit, Codecs.submitRequest, structured("no-answer"), Codecs.submitReply, timeoutMs);

  it("no node serving the subject: NO_RESPONDERS, and the CLI says so (exit 3)", async () => {
    await expect(submit(2000)).rejects.toMatchObject({ code: "NO_RESPONDERS" });
    const r = await fastemailnet(env.cluster.urls, "send", "--from", "a@example.org", "--to", "b@example.net", "--subject", "s", "--text", "t");
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error NO_RESPONDERS: nothing serves mail\.submit right now/m);
  });

  it("a reply that does not decode (a newer node's, a fault): INTERNAL, saying the request may have been done, not BAD_REQUEST", async () => {
    const odd = env.nc.subscribe(ServiceSubjects.submit, { callback: (_e, m) => { m.respond(JSON.stringify({ kind: "mail.submit.reply", v: 9 })); } });
    try {
      await expect(submit(2000)).rejects.toMatchObject({ code: "INTERNAL", message: expect.stringMatching(/does not decode.*may have been carried out/) });
    } finally {
      odd.unsubscribe();
    }
  });

  it("a node that takes the request and does not answer in time: NO_REPLY, saying it may have been done", async () => {
    const silent = env.nc.subscribe(ServiceSubjects.submit);
    try {
      await expect(submit(300)).rejects.toMatchObject({ code: "NO_REPLY", message: expect.stringMatching(/may or may not have been done/) });
    } finally {
      silent.unsubscribe();
    }
  });
});

describe("a request larger than the servers take", () => {
  it("is MESSAGE_TOO_LARGE naming the servers' max_payload, and the CLI says so (exit 3), not \"'payload' max_payload size exceeded\" (exit 1)", async () => {
    const max = env.nc.info!.max_payload;
    // A raw mail whose request (base64, ~4/3) is over max_payload: it never reaches a gateway's own size check.
    const raw = Buffer.concat([Buffer.from("From: a@example.org\r\nSubject: big\r\n\r\n"), Buffer.alloc(Math.ceil(max * 0.8), "a\r\n")]);
    await expect(callService(env.nc, ServiceSubjects.submit, Codecs.submitRequest,
      { kind: "mail.submit", v: 1, mail: { raw: raw.toString("base64"), envelope: { from: "a@example.org", to: ["b@example.net"] } } }, Codecs.submitReply))
      .rejects.toMatchObject({ code: "MESSAGE_TOO_LARGE", message: expect.stringContaining(`max_payload ${max}`) });
    const { writeFile, mkdtemp } = await import("node:fs/promises");
    const file = `${await mkdtemp("/tmp/fen-rpc-")}/big.eml`;
    await writeFile(file, raw);
    const r = await fastemailnet(env.cluster.urls, "send", "--raw", file, "--from", "a@example.org", "--to", "b@example.net");
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error MESSAGE_TOO_LARGE: /m);
  });
});

describe("a stopping service", () => {
  it("answers the requests it took before stopping; requestsSettled waits for them", async () => {
    const service = await new Svcm(env.nc).add({ name: "fen-test-slow", version: "0.0.1" });
    let open = () => undefined as void;
    const gate = new Promise<void>((r) => { open = r; });
    let taken = 0;
    serveEndpoint(service, { name: "slow", subject: "fen.test.slow" }, async (d) => { taken++; await gate; return d; }, testLog);
    const reply = env.nc.request("fen.test.slow", new TextEncoder().encode("hi"), { timeout: 10_000 });
    while (taken === 0) await new Promise((r) => setTimeout(r, 10));
    await service.stop();
    let settled = false;
    const done = requestsSettled(service).then(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(false);
    open();
    await done;
    expect(new TextDecoder().decode((await reply).data)).toBe("hi");
  });
});

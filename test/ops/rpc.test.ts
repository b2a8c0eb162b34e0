import { describe, expect, it } from "vitest";
import { Codecs, ServiceSubjects } from "../../protocol/index.js";
import { callService } from "../../nodes/common/rpc.js";
import { structured } from "../helpers/system.js";
import { fastemailnet } from "../helpers/cli.js";
import { useProvisionedCluster } from "../helpers/suite.js";

/**
 * A request that gets no answer is named by code, so a client can tell
 * "nothing was done" (no node serves the subject) from "it may have been
 * done" (no reply in time): a bare "timeout" once told a publisher its mail
 * had failed when it had been stored.
 */
describe("requests without an answer", () => {
  const env = useProvisionedCluster();
  const submit = (timeoutMs: number) =>
    callService(env.nc, ServiceSubjects.submit, Codecs.submitRequest, structured("no-answer"), Codecs.submitReply, timeoutMs);

  it("no node serving the subject: NO_RESPONDERS, and the CLI says so (exit 3)", async () => {
    await expect(submit(2000)).rejects.toMatchObject({ code: "NO_RESPONDERS" });
    const r = await fastemailnet(env.cluster.urls, "send", "--from", "a@example.org", "--to", "b@example.net", "--subject", "s", "--text", "t");
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^error NO_RESPONDERS: nothing serves mail\.submit right now/m);
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

import { expect, it } from "vitest";
import { runStepdownProbe, summaryLine, violations } from "../probes/stepdown.js";

/**
 * The step-down probe (test/probes/stepdown.ts) at a size CI can afford: a
 * real 3-node cluster, the gateway, two processing nodes and the ledger
 * node as child processes, a real SMTP sink, and a steady flow of
 * submissions while the leaders of MAIL_WORK, its consumer, MAIL_EVENTS,
 * KV_mail_status, KV_ledger, the ledger consumer and the meta group are
 * stepped down in turn every 300 ms until every mail is at the sink. The
 * routine events of a rolling upgrade must break none of the system's
 * promises (`violations`): every submission accepted (a transient failure
 * resubmitted with its key), every mail delivered once, mail.status never
 * failing for good, every event in a verified ledger, no node logging an
 * error, every node ready again and exiting 0.
 */
it("leaders stepping down every 300 ms while 600 mails flow break none of the system's promises", async () => {
  const r = await runStepdownProbe({ mails: 600, publishers: 16, everyMs: 300 });
  console.log(summaryLine(r));
  expect(violations(r)).toEqual([]);
}, 300_000);

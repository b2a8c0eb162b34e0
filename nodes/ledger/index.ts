/** The ledger node: appends MAIL_EVENTS to the signed log, serves proofs, and audits the bucket. */
export { createLedgerNode, LEDGER_VERSION, BLOCK_MAX_ENTRY_BYTES } from "./ledger-node.js";
export type { LedgerNode, LedgerNodeDeps, BlockCommitted } from "./ledger-node.js";
export { ledgerSecrets } from "./keys.js";
export type { LedgerSecrets } from "./keys.js";
export { entryOfEvent } from "./entry-of-event.js";
export { createLedgerStore, sha256Hex } from "./store.js";
export type { LedgerStore } from "./store.js";
export { eventsProbe, headOf, proveMail, proveConsistencyBetween, latestComplete } from "./prove.js";
export { runLedgerCommand } from "./cli.js";

import { FenError } from "../../protocol/index.js";
import { COMMITMENT_KEY_MIN_BYTES, ledgerErrorCode, parseSignerKey } from "../../ledger/index.js";
import type { NoteSigner } from "../../ledger/index.js";
import type { LedgerConfig } from "../config/index.js";

/** The ledger node's secrets, parsed from its configuration. */
export interface LedgerSecrets {
  /** Signs checkpoints. */
  readonly signer: NoteSigner;
  /** Keys the recipient commitments. */
  readonly commitmentKey: Uint8Array;
}

/**
 * Parses FEN_LEDGER_SIGNING_KEY (a `PRIVATE+KEY+…` signed-note key) and
 * FEN_LEDGER_COMMITMENT_KEY (hex, at least 16 bytes), reporting every bad
 * key at once. Called once, by the composition root.
 *
 * @throws FenError `CONFIG_INVALID`.
 */
export function ledgerSecrets(config: Pick<LedgerConfig, "ledgerSigningKey" | "ledgerCommitmentKey">): LedgerSecrets {
  const fields: { field: string; code: "CONFIG_INVALID"; message: string }[] = [];
  let signer: NoteSigner | undefined;
  if (!config.ledgerSigningKey) fields.push({ field: "FEN_LEDGER_SIGNING_KEY", code: "CONFIG_INVALID", message: "required by the ledger node" });
  else {
    try {
      signer = parseSignerKey(config.ledgerSigningKey.trim());
    } catch (err) {
      fields.push({ field: "FEN_LEDGER_SIGNING_KEY", code: "CONFIG_INVALID", message: `not a signed-note signer key (${ledgerErrorCode(err) ?? "error"})` });
    }
  }
  const hex = config.ledgerCommitmentKey?.trim() ?? "";
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex) || hex.length / 2 < COMMITMENT_KEY_MIN_BYTES) {
    fields.push({ field: "FEN_LEDGER_COMMITMENT_KEY", code: "CONFIG_INVALID", message: `must be at least ${COMMITMENT_KEY_MIN_BYTES} bytes of hex` });
  }
  if (fields.length > 0 || !signer) {
    throw new FenError("CONFIG_INVALID", `invalid configuration: ${fields.map((f) => `${f.field}: ${f.message}`).join("; ")}`, { fields });
  }
  return { signer, commitmentKey: new Uint8Array(Buffer.from(hex, "hex")) };
}

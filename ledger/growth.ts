/**
 * Checking that a log only grew: an earlier signed checkpoint, a later one
 * and the RFC 9162 consistency proof between them, all verified against a
 * trusted key. This is what an auditor who kept a checkpoint (or a receipt,
 * which carries one) runs later: if it passes, every entry the earlier
 * checkpoint committed to is still in the log, unchanged and in place.
 *
 * Pure: no I/O. Where the later checkpoint and the proof come from does not
 * matter; nothing but the key is trusted.
 *
 * @module
 */
import { openCheckpoint } from "./checkpoint.js";
import type { Checkpoint } from "./checkpoint.js";
import { LedgerError, LedgerErrorCode } from "./errors.js";
import type { NoteVerifier } from "./note.js";
import { verifyConsistency } from "./verify.js";

/** What {@link verifyGrowth} established. */
export interface VerifiedGrowth {
  readonly earlier: Checkpoint;
  readonly later: Checkpoint;
}

/**
 * Verifies both signed checkpoint notes with `verifier`, that they name the
 * same origin (and `options.origin`, when given), that the later one is not
 * smaller, and that `proof` shows the earlier tree to be a prefix of the
 * later one.
 *
 * @throws {@link LedgerError} `LEDGER_NOTE_MALFORMED`, `LEDGER_SIGNATURE_INVALID`, `LEDGER_NOTE_UNVERIFIED`,
 *   `LEDGER_CHECKPOINT_MALFORMED`, `LEDGER_ORIGIN_MISMATCH` (either note), `LEDGER_RANGE_INVALID` (the later
 *   checkpoint is smaller), `LEDGER_PROOF_MALFORMED`, `LEDGER_PROOF_INVALID`, `LEDGER_ROOT_MISMATCH`.
 */
export function verifyGrowth(
  earlierNote: string | Uint8Array,
  laterNote: string | Uint8Array,
  proof: readonly Uint8Array[],
  verifier: NoteVerifier,
  options: { origin?: string } = {},
): VerifiedGrowth {
  const earlier = openCheckpoint(earlierNote, verifier, options).checkpoint;
  const later = openCheckpoint(laterNote, verifier, { origin: earlier.origin }).checkpoint;
  if (later.size < earlier.size) {
    throw new LedgerError(LedgerErrorCode.RangeInvalid, `the later checkpoint has ${later.size} entries, fewer than the earlier one's ${earlier.size}`);
  }
  verifyConsistency(earlier.size, later.size, proof, earlier.rootHash, later.rootHash);
  return { earlier, later };
}

/**
 * The mail life cycle. A mail walks
 * PendingProcessing → Processing → Validated → DeliveryScheduled → Sent;
 * Deferred (then back to Processing), Bounced, Quarantined and Rejected are
 * the other ways out.
 */
export const MailStates = {
  PendingProcessing: "PendingProcessing",
  Processing: "Processing",
  Validated: "Validated",
  DeliveryScheduled: "DeliveryScheduled",
  Sent: "Sent",
  Deferred: "Deferred",
  Bounced: "Bounced",
  Quarantined: "Quarantined",
  Rejected: "Rejected",
} as const;

/** A life-cycle state. */
export type MailState = (typeof MailStates)[keyof typeof MailStates];

/** Every state, in life-cycle order (used for validation and docs). */
export const MAIL_STATES: readonly MailState[] = Object.values(MailStates);

/**
 * States after which a mail is never sent again. Quarantined is terminal for
 * the processing node; only an operator's release (Quarantined →
 * PendingProcessing, with a new work item) starts a new delivery.
 */
export const TERMINAL_STATES: ReadonlySet<MailState> = new Set<MailState>([
  MailStates.Sent,
  MailStates.Bounced,
  MailStates.Quarantined,
  MailStates.Rejected,
]);

/** True when `state` ends the life cycle. */
export function isTerminal(state: MailState): boolean {
  return TERMINAL_STATES.has(state);
}

/**
 * Allowed transitions (from → to). The processing node refuses any other,
 * so a bug cannot silently skip validation or send from a terminal state.
 */
export const TRANSITIONS: Readonly<Record<MailState, readonly MailState[]>> = {
  PendingProcessing: ["Processing"],
  Processing: ["Validated", "Rejected", "Deferred"],
  Validated: ["DeliveryScheduled", "Quarantined"],
  DeliveryScheduled: ["Sent", "Deferred", "Bounced", "Processing"],
  Deferred: ["Processing"],
  Quarantined: ["PendingProcessing", "Rejected"],
  Sent: [],
  Bounced: [],
  Rejected: [],
};

/** True when `from → to` is an allowed transition. */
export function canTransition(from: MailState, to: MailState): boolean {
  return TRANSITIONS[from].includes(to);
}

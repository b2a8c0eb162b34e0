import { FenError } from "./errors.js";
import type { MailState } from "./lifecycle.js";
import { MAIL_STATES } from "./lifecycle.js";
import type { MailId } from "./ids.js";
import { isMailId } from "./ids.js";

/**
 * Every NATS subject FastEmailNet uses is built here; no other module spells
 * a subject. Service subjects (`mail.*`, `ledger.*`) are what clients may
 * call; stream subjects (`fen.*`) are internal and never granted to
 * publishers.
 */

/** Request/reply service subjects. */
export const ServiceSubjects = {
  submit: "mail.submit",
  status: "mail.status",
  classify: "mail.classify",
  /** The mail queue (MAIL_WORK) as an operator's `mailq`. */
  queue: "mail.queue",
  quarantineList: "mail.quarantine.list",
  quarantineRelease: "mail.quarantine.release",
  quarantineDelete: "mail.quarantine.delete",
  /** The three quarantine subjects, served by one endpoint. */
  quarantineAll: "mail.quarantine.*",
  ledgerHead: "ledger.head",
  ledgerProof: "ledger.proof",
  ledgerConsistency: "ledger.consistency",
} as const;

/**
 * The subject each quarantine request kind must arrive on. The service
 * refuses a request whose kind does not match its subject, so access can be
 * granted per subject (e.g. an operator who may only list).
 */
export function quarantineRequestSubject(kind: "mail.quarantine.list" | "mail.quarantine.release" | "mail.quarantine.delete"): string {
  switch (kind) {
    case "mail.quarantine.list": return ServiceSubjects.quarantineList;
    case "mail.quarantine.release": return ServiceSubjects.quarantineRelease;
    case "mail.quarantine.delete": return ServiceSubjects.quarantineDelete;
  }
}

/** Roots of the stream subject spaces (used in stream specs and permissions). */
export const StreamSubjects = {
  work: "fen.work.>",
  events: "fen.events.>",
  quarantine: "fen.quarantined.>",
} as const;

/**
 * Validates one token of a subject: non-empty, no wildcard, no separator,
 * no white space. Mail ids and states are checked against their own
 * vocabularies before they reach here.
 */
export function subjectToken(value: string, what: string): string {
  if (value.length === 0 || value.length > 128 || /[\s.*>]/.test(value)) {
    throw new FenError("BAD_REQUEST", `${what} is not a valid subject token: ${JSON.stringify(value)}`);
  }
  return value;
}

function mailToken(mailId: string): MailId {
  if (!isMailId(mailId)) throw new FenError("BAD_REQUEST", `not a mail id: ${JSON.stringify(mailId)}`);
  return mailId;
}

/** `fen.work.<mailId>`: the mail's work item on the work-queue stream. */
export function workSubject(mailId: string): string {
  return `fen.work.${mailToken(mailId)}`;
}

/** `fen.events.<mailId>.<state>`: one life-cycle event. */
export function eventSubject(mailId: string, state: MailState): string {
  if (!MAIL_STATES.includes(state)) throw new FenError("BAD_REQUEST", `not a state: ${String(state)}`);
  return `fen.events.${mailToken(mailId)}.${state}`;
}

/** `fen.events.<mailId>.>`: every event of one mail (for a filtered read). */
export function mailEventsFilter(mailId: string): string {
  return `fen.events.${mailToken(mailId)}.>`;
}

/** `fen.events.*.<state>`: every mail's events of one state (e.g. all Sent). */
export function stateEventsFilter(state: MailState): string {
  if (!MAIL_STATES.includes(state)) throw new FenError("BAD_REQUEST", `not a state: ${String(state)}`);
  return `fen.events.*.${state}`;
}

/** `$SRV.PING.<service>`: the micro-service discovery ping of one service. */
export function servicePingSubject(service: string): string {
  return `$SRV.PING.${subjectToken(service, "service name")}`;
}

/** `fen.quarantined.<mailId>`: a quarantined mail kept for an operator. */
export function quarantineSubject(mailId: string): string {
  return `fen.quarantined.${mailToken(mailId)}`;
}

/** Parses the mail id out of a work, event or quarantine subject. */
export function mailIdOfSubject(subject: string): MailId {
  const token = subject.split(".")[2] ?? "";
  return mailToken(token);
}

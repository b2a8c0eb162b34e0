import { Names, ServiceSubjects, StreamSubjects } from "../../protocol/index.js";

/**
 * The NATS users of a FastEmailNet deployment, one per role, and what each
 * may publish and subscribe to. Written once, here: `npm start`, the tests
 * and the Helm chart (through `deploy/chart/fastemailnet/files/auth.conf`, the
 * servers' `authorization` block, rendered from this module by
 * `deploy/chart-gen.ts` and checked by a test) all use these sets.
 *
 * Everything is an allow list; a subject not listed is refused by the
 * server. The JetStream API subjects are granted per stream and consumer
 * (`$JS.API.CONSUMER.MSG.NEXT.MAIL_WORK.processing`, not `$JS.API.>`), so a
 * processing node can pull its work but cannot create, purge or delete
 * anything, and only the ledger node can write the ledger bucket.
 */

/** Roles, in the order their users are rendered. */
export const NatsRoles = ["publisher", "gateway", "processing", "ledger", "provision", "operator"] as const;
export type NatsRole = (typeof NatsRoles)[number];

/** One side (publish or subscribe) of a user's permissions, in nats-server terms. */
export interface SubjectPermission {
  readonly allow: readonly string[];
  readonly deny?: readonly string[];
}

/** A user's permissions with the nats-server field names. */
export interface NatsPermissions {
  readonly publish: SubjectPermission;
  readonly subscribe: SubjectPermission;
  /** May answer requests it received, on their reply subjects only. */
  readonly allow_responses?: boolean;
}

/** What each role is for, for docs and the start banner. */
export const RoleDocs: Readonly<Record<NatsRole, string>> = {
  publisher: "applications that send mail: request mail.submit and mail.status, nothing else",
  gateway: "gateway nodes: serve mail.submit/mail.status, write work items, the first event and mail_bodies; read mail_status and MAIL_WORK",
  processing: "processing nodes: pull MAIL_WORK/processing, write events, mail_status, quarantine; delete orphaned bodies; serve mail.classify, mail.queue and mail.quarantine.*",
  ledger: "the ledger node: pull MAIL_EVENTS/ledger, the only writer of the ledger bucket; serve ledger.*",
  provision: "the provisioning job: creates and checks streams, consumers and buckets ($JS.API.>)",
  operator: "people with the nats CLI: read streams, consumers, buckets and services; request any service; write nothing directly",
};

/** Default user name of a role (`fen-<role>`). */
export const userOf = (role: NatsRole): string => `fen-${role}`;

const INBOX = "_INBOX.>";
const kvStream = (bucket: string) => `KV_${bucket}`;
const objStream = (bucket: string) => `OBJ_${bucket}`;

/** JetStream API subjects (defined by nats-server, composed from our names). */
const jsApi = {
  info: "$JS.API.INFO",
  streamInfo: (stream: string) => `$JS.API.STREAM.INFO.${stream}`,
  /** Direct Get by sequence or batch (any replica answers). */
  directGet: (stream: string) => `$JS.API.DIRECT.GET.${stream}`,
  /** Message get through the stream leader (KV reads: the nodes open their buckets without direct get, the client's default, so a read sees the leader's state). */
  msgGet: (stream: string) => `$JS.API.STREAM.MSG.GET.${stream}`,
  msgDelete: (stream: string) => `$JS.API.STREAM.MSG.DELETE.${stream}`,
  streamPurge: (stream: string) => `$JS.API.STREAM.PURGE.${stream}`,
  consumerInfo: (stream: string, consumer: string) => `$JS.API.CONSUMER.INFO.${stream}.${consumer}`,
  consumerNext: (stream: string, consumer: string) => `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
  ack: (stream: string, consumer: string) => `$JS.ACK.${stream}.${consumer}.>`,
  /** Creating an ephemeral (ordered, push) consumer with a filter subject on one stream. */
  ephemeralCreate: (stream: string) => `$JS.API.CONSUMER.CREATE.${stream}.>`,
};

/** A KV bucket read by key and written by key (create/update are publishes to `$KV.<bucket>.<key>`). */
const kvRead = (bucket: string) => [jsApi.msgGet(kvStream(bucket))];
const kvReadWrite = (bucket: string) => [`$KV.${bucket}.>`, ...kvRead(bucket)];
/** Writing an object (chunks and meta are publishes under `$O.<bucket>.`). */
const objectPut = (bucket: string) => [`$O.${bucket}.>`, jsApi.streamInfo(objStream(bucket)), jsApi.msgGet(objStream(bucket))];
/** Reading (an ordered consumer over the chunks) and deleting (a purge of the chunks) an object. */
const objectDelete = (bucket: string) => [...objectPut(bucket), jsApi.streamPurge(objStream(bucket))];
const objectGetDelete = (bucket: string) => [...objectDelete(bucket), jsApi.ephemeralCreate(objStream(bucket))];
/** Subjects a micro-service named `name` answers on `$SRV` (PING, INFO, STATS, with and without its name/id). */
const microService = (name: string) => ["$SRV.*", `$SRV.*.${name}`, `$SRV.*.${name}.*`];

const serviceRoots = (prefix: string) => Object.values(ServiceSubjects).filter((s) => s.startsWith(prefix) && !s.includes("*"));

/**
 * The permission set of every role: the smallest sets with which the real
 * nodes run every flow (test/ops/permissions.test.ts fails on any
 * permission violation the server logs during those flows).
 */
export function rolePermissions(): Readonly<Record<NatsRole, NatsPermissions>> {
  const ledgerWrites = [`$KV.${Names.ledgerBucket}.>`];
  return {
    publisher: {
      publish: { allow: [ServiceSubjects.submit, ServiceSubjects.status] },
      subscribe: { allow: [INBOX] },
    },
    gateway: {
      publish: {
        allow: [
          jsApi.info, StreamSubjects.work, StreamSubjects.events,
          // The status entry is written by processing nodes only (the claim creates it).
          // A submission that lost a race drops the body object it wrote.
          ...kvRead(Names.statusBucket), ...objectDelete(Names.bodiesBucket),
          // mail.status: the history (batched Direct Get; through the leader when a replica lags) and the
          // mail's ledger index records; a racing submission reads the first one's work item, and so does
          // mail.status for a mail with no event yet (a miss confirmed by the work stream's leader).
          jsApi.directGet(Names.eventsStream), jsApi.msgGet(Names.eventsStream),
          jsApi.directGet(kvStream(Names.ledgerBucket)), jsApi.directGet(Names.workStream), jsApi.msgGet(Names.workStream),
        ],
        deny: ledgerWrites,
      },
      subscribe: { allow: [INBOX, ServiceSubjects.submit, ServiceSubjects.status, ...microService(Names.gatewayService)] },
      allow_responses: true,
    },
    processing: {
      publish: {
        allow: [
          jsApi.info,
          jsApi.consumerInfo(Names.workStream, Names.workConsumer), jsApi.consumerNext(Names.workStream, Names.workConsumer),
          // Acks go to the message's reply subject, which allow_responses covers only once;
          // `working()` during a long delivery and the final ack are several.
          jsApi.ack(Names.workStream, Names.workConsumer),
          // Releasing a quarantined mail queues a new work item.
          StreamSubjects.work, StreamSubjects.events, StreamSubjects.quarantine,
          ...kvReadWrite(Names.statusBucket), ...objectGetDelete(Names.bodiesBucket),
          // The quarantine service lists, and removes a released or deleted mail.
          jsApi.directGet(Names.quarantineStream), jsApi.msgGet(Names.quarantineStream), jsApi.msgDelete(Names.quarantineStream),
          // `mail.queue` reads the work items it lists; a mail left in doubt is checked for an outcome event
          // (a miss confirmed by the events stream's leader).
          jsApi.directGet(Names.workStream), jsApi.directGet(Names.eventsStream), jsApi.msgGet(Names.eventsStream),
          // The body reaper reads a mail's work items through the work stream's leader (it deletes a body none names).
          jsApi.msgGet(Names.workStream),
        ],
        deny: ledgerWrites,
      },
      subscribe: {
        allow: [INBOX, ServiceSubjects.classify, ServiceSubjects.queue, ServiceSubjects.quarantineAll, ...microService(Names.processingService)],
      },
      allow_responses: true,
    },
    ledger: {
      publish: {
        allow: [
          jsApi.info,
          jsApi.consumerInfo(Names.eventsStream, Names.ledgerConsumer), jsApi.consumerNext(Names.eventsStream, Names.ledgerConsumer),
          jsApi.ack(Names.eventsStream, Names.ledgerConsumer),
          ...kvReadWrite(Names.ledgerBucket), jsApi.directGet(kvStream(Names.ledgerBucket)),
          // ledger.proof tells a mail not yet in a block (it has events) from an unknown one (a miss
          // confirmed by the events stream's leader).
          jsApi.directGet(Names.eventsStream), jsApi.msgGet(Names.eventsStream),
        ],
      },
      subscribe: { allow: [INBOX, ...serviceRoots("ledger."), ...microService(Names.ledgerService)] },
      allow_responses: true,
    },
    provision: {
      publish: { allow: ["$JS.API.>"] },
      subscribe: { allow: [INBOX] },
    },
    operator: {
      publish: {
        allow: [
          jsApi.info, "$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.INFO.*",
          "$JS.API.CONSUMER.LIST.*", "$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.INFO.*.*",
          "$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.*",
          // `nats sub --stream` and `nats kv ls` read through ephemeral ordered consumers.
          "$JS.API.CONSUMER.CREATE.*", "$JS.API.CONSUMER.CREATE.*.>", "$JS.API.CONSUMER.MSG.NEXT.*.*", "$JS.API.CONSUMER.DELETE.*.*",
          "$SRV.>", "mail.>", "ledger.>",
        ],
        // The durable consumers belong to the nodes: pulling from them would take their work.
        deny: [
          jsApi.consumerNext(Names.workStream, Names.workConsumer), jsApi.consumerNext(Names.eventsStream, Names.ledgerConsumer),
          ...[[Names.workStream, Names.workConsumer], [Names.eventsStream, Names.ledgerConsumer]].flatMap(([stream, consumer]) => [
            `$JS.API.CONSUMER.DELETE.${stream}.${consumer}`,
            // CREATE with an existing name would update the durable's configuration.
            `$JS.API.CONSUMER.CREATE.${stream}.${consumer}`, `$JS.API.CONSUMER.CREATE.${stream}.${consumer}.>`,
          ]),
        ],
      },
      subscribe: { allow: [INBOX] },
    },
  };
}

/** A password as rendered into the server config: a literal or a `$VAR` the server resolves from its environment. */
export type PasswordRef = { readonly literal: string } | { readonly env: string };

/** One user of the rendered `authorization` block. */
export interface NatsUser {
  readonly role: NatsRole;
  readonly user: string;
  readonly password: PasswordRef;
}

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

function renderPassword(p: PasswordRef): string {
  if ("env" in p) {
    if (!ENV_NAME.test(p.env)) throw new Error(`not an environment variable name: ${JSON.stringify(p.env)}`);
    return `$${p.env}`;
  }
  return JSON.stringify(p.literal);
}

function renderSide(side: SubjectPermission): string {
  const list = (xs: readonly string[]) => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;
  return `{ allow: ${list(side.allow)}${side.deny?.length ? `, deny: ${list(side.deny)}` : ""} }`;
}

/**
 * Renders the nats-server `authorization { users: [...] }` block for `users`
 * with their role's permissions. The text is valid on its own as an
 * included file (`include auth.conf`).
 */
export function renderAuthorization(users: readonly NatsUser[], perms = rolePermissions()): string {
  const lines = users.map((u) => {
    const p = perms[u.role];
    return [
      `    # ${u.role}: ${RoleDocs[u.role]}`,
      `    { user: ${JSON.stringify(u.user)}, password: ${renderPassword(u.password)}, permissions: {`,
      `        publish: ${renderSide(p.publish)}`,
      `        subscribe: ${renderSide(p.subscribe)}`,
      ...(p.allow_responses ? ["        allow_responses: true"] : []),
      "    } }",
    ].join("\n");
  });
  return `# generated from nodes/local/permissions.ts; do not edit\nauthorization {\n  users: [\n${lines.join("\n")}\n  ]\n}\n`;
}

/**
 * Passwords a nats-server can take from its environment. The server parses
 * an environment variable's value as a config token, so `0d…` or `-…` fail
 * to parse and `12` becomes a number: a password must start with a letter
 * and hold only letters, digits, `-` and `_`.
 */
export const SERVER_SAFE_PASSWORD = /^[A-Za-z][A-Za-z0-9_-]{15,}$/;

/** A fresh random password per role (`p` + 24 random bytes, base64url); `random` is injected (node:crypto randomBytes). */
export function generatePasswords(random: (n: number) => Uint8Array): Record<NatsRole, string> {
  return Object.fromEntries(NatsRoles.map((r) => [r, `p${Buffer.from(random(24)).toString("base64url")}`])) as Record<NatsRole, string>;
}

/** Every role's user with a literal password (local clusters and tests). */
export function literalUsers(passwords: Readonly<Record<NatsRole, string>>): NatsUser[] {
  return NatsRoles.map((role) => ({ role, user: userOf(role), password: { literal: passwords[role] } }));
}

/** Environment variable a NATS server reads a role's password from, in the chart's auth.conf. */
export const passwordEnvOf = (role: NatsRole): string => `FASTEMAILNET_PASSWORD_${role.toUpperCase()}`;

/** Every role's user with its password taken from the server's environment ({@link passwordEnvOf}). */
export function envUsers(): NatsUser[] {
  return NatsRoles.map((role) => ({ role, user: userOf(role), password: { env: passwordEnvOf(role) } }));
}

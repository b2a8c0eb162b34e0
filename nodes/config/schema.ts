import { z } from "zod";
import { DUPLICATE_WINDOW_MS } from "../../protocol/index.js";
import { parseDecimal } from "../common/decimal.js";

/**
 * Every configuration key of every node, in one table: the environment
 * variable, its schema (with units normalised: `…Ms`, `…Bytes`), its default
 * and its meaning. `CONFIG.md` and the Helm chart's ConfigMap map onto these
 * keys 1:1 (tests check both).
 */
export interface KeySpec<T extends z.ZodTypeAny = z.ZodTypeAny> {
  readonly env: string;
  readonly schema: T;
  readonly doc: string;
  /** Secret values never go into a ConfigMap or a log line. */
  readonly secret?: boolean;
}

/**
 * A number written in decimal, as an environment variable holds it (see parseDecimal: not `z.coerce.number`), or a
 * default's number. One schema, not a union: a union's failure is only zod's "Invalid input", which told the
 * operator neither what was wrong nor what was expected.
 */
const decimal = (integer: boolean) => z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === "number") return v;
  const n = parseDecimal(v.trim(), integer ? "integer" : "number");
  if (Number.isNaN(n)) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `not a decimal ${integer ? "integer" : "number"}: ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}` });
    return z.NEVER;
  }
  return n;
});
const int = (min: number, max: number) => decimal(true).pipe(z.number().int().min(min).max(max));
const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");
const list = z.string().transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean)).pipe(z.array(z.string().min(1)).min(1));

/**
 * Least FEN_BODY_REAP_AGE_MS: 6 h, three times MAIL_WORK's duplicate window and 180 times the longest
 * FEN_SUBMIT_TIMEOUT_MS. Between storing a body and storing its work item nothing refers to the body: its age
 * is then its only guard, and it is the gateway's clock (the object's mtime) read by a node's, hence hours to spare.
 */
export const BODY_REAP_AGE_MIN_MS = 3 * DUPLICATE_WINDOW_MS;

/** Keys every node reads. */
export const CommonKeys = {
  natsUrls: { env: "FEN_NATS_URLS", schema: list.default("nats://127.0.0.1:4222"), doc: "Comma-separated NATS server URLs." },
  natsUser: { env: "FEN_NATS_USER", schema: z.string().optional(), doc: "NATS user name (role user, see deploy/)." },
  natsPassword: { env: "FEN_NATS_PASSWORD", schema: z.string().optional(), doc: "NATS password.", secret: true },
  natsTlsCa: { env: "FEN_NATS_TLS_CA", schema: z.string().optional(), doc: "PEM file of the CA that signed the NATS servers' certificates; enables TLS." },
  nodeName: {
    env: "FEN_NODE_NAME",
    // Kubernetes pod names (the chart's source) may hold dots.
    schema: z.string().max(253).regex(/^[A-Za-z0-9._-]+$/, "letters, digits, '.', '_' and '-' only").optional(),
    doc: "Name of this node instance in events and logs (e.g. the pod name). @default role-pid",
  },
  logLevel: { env: "FEN_LOG_LEVEL", schema: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"), doc: "pino log level." },
  httpPort: { env: "FEN_HTTP_PORT", schema: int(0, 65535).default(0), doc: "Port of /healthz, /readyz and /metrics (0 = a free port)." },
  httpHost: { env: "FEN_HTTP_HOST", schema: z.string().default("127.0.0.1"), doc: "Address the health/metrics server binds." },
  replicas: { env: "FEN_REPLICAS", schema: int(1, 5).default(3), doc: "Replicas of every stream and bucket (provisioning)." },
} as const satisfies Record<string, KeySpec>;

/** Gateway keys. */
export const GatewayKeys = {
  ...CommonKeys,
  maxMessageBytes: { env: "FEN_MAX_MESSAGE_BYTES", schema: int(1024, 64 * 1024 * 1024).default(10 * 1024 * 1024), doc: "Largest accepted message (RFC 5322 bytes). The request carrying a raw (base64) one takes up to ~1.45 times that plus 64 KiB, which must fit the NATS server's max_payload: the gateway refuses to start otherwise (CONFIG_INVALID; the servers' 16 MiB carry a limit of at most 11525296). A structured mail whose JSON escapes every character (\\uXXXX) can take up to ~2.2 times its size (one over max_payload cannot be sent at all); a request over 2.5 times the limit plus 64 KiB is refused MESSAGE_TOO_LARGE before it is decoded." },
  messageIdDomain: { env: "FEN_MESSAGE_ID_DOMAIN", schema: z.string().regex(/^[A-Za-z0-9.-]+$/).default("fastemailnet.local"), doc: "Right-hand side of generated Message-IDs." },
  submitTimeoutMs: { env: "FEN_SUBMIT_TIMEOUT_MS", schema: int(100, 120_000).default(10_000), doc: "How long the gateway waits for the JetStream ack before answering STORE_UNAVAILABLE. A publish left unanswered for a quarter of it (at least 1 s; a leader that dropped it as it stepped down) is made again with the same Nats-Msg-Id, which stores the work item once." },
} as const satisfies Record<string, KeySpec>;

/** Processing node keys. */
export const ProcessingKeys = {
  ...CommonKeys,
  smtpHost: { env: "FEN_SMTP_HOST", schema: z.string().default("127.0.0.1"), doc: "Relay host." },
  smtpPort: { env: "FEN_SMTP_PORT", schema: int(1, 65535).default(2525), doc: "Relay port." },
  smtpSecure: { env: "FEN_SMTP_SECURE", schema: bool.default("false"), doc: "Implicit TLS (port 465 style). STARTTLS is used whenever the relay offers it." },
  smtpRequireTls: { env: "FEN_SMTP_REQUIRE_TLS", schema: bool.default("false"), doc: "Refuse to send without STARTTLS." },
  smtpTlsRejectUnauthorized: { env: "FEN_SMTP_TLS_REJECT_UNAUTHORIZED", schema: bool.default("true"), doc: "Verify the relay's certificate." },
  smtpUser: { env: "FEN_SMTP_USER", schema: z.string().optional(), doc: "Relay user (AUTH). When set, TLS is required (implicit or STARTTLS): the password never goes in clear." },
  smtpPassword: { env: "FEN_SMTP_PASSWORD", schema: z.string().optional(), doc: "Relay password.", secret: true },
  smtpPoolSize: { env: "FEN_SMTP_POOL_SIZE", schema: int(1, 256).default(32), doc: "Pooled SMTP connections per node (opened as the queue needs them). Each connection carries one mail at a time and waits a few round trips per mail, so a node's delivery rate grows with the pool until the CPU is busy (README, Measured). When a relay that limits sessions per client turns one away (a 421 greeting, or a closed connection) while it serves others, the node keeps to the sessions served for a minute, and logs it; no mail fails for it. Setting the pool to the relay's limit spares the turned-away connections." },
  smtpTimeoutMs: { env: "FEN_SMTP_TIMEOUT_MS", schema: int(1000, 600_000).default(60_000), doc: "Socket timeout towards the relay: connecting, the greeting, and any silence of the socket." },
  smtpTransactionTimeoutMs: { env: "FEN_SMTP_TRANSACTION_TIMEOUT_MS", schema: int(1000, 3_600_000).default(600_000), doc: "Longest one mail's delivery may take, waiting for a free connection included, however busy the relay keeps the socket (a relay sending continuation lines never trips the socket timeout). Then the connection is closed and the attempt Deferred; in doubt (it may have arrived) when the whole message had gone out. The default is RFC 5321's 10 minutes for the reply to the final \".\"." },
  drainTimeoutMs: { env: "FEN_DRAIN_TIMEOUT_MS", schema: int(0, 3_600_000).default(60_000), doc: "On SIGTERM, how long the node waits for its SMTP transactions to finish before it gives them up: their mails are recorded Deferred (in doubt when the whole message had gone out) and retried by another node. Keep it below the time the supervisor allows before killing the process (the chart's terminationGracePeriodSeconds): a killed node records nothing: its work items come back after the work queue's ack wait (10 s), and a mail it had claimed is sent again (flagged in doubt) once its claim is 30 s old (CLAIM_TTL_MS)." },
  concurrency: { env: "FEN_CONCURRENCY", schema: int(1, 4096).default(64), doc: "Work items one node handles at once." },
  maxAttempts: { env: "FEN_MAX_ATTEMPTS", schema: int(1, 100).default(8), doc: "Delivery attempts before a transient failure bounces (an attempt a node gave up as it stopped, at FEN_DRAIN_TIMEOUT_MS, does not count, nor a transaction the relay split for its recipient limit: 452, or 552 read as 452: too many recipients). An attempt whose node died mid-delivery counts: when it was the last one allowed, its mail is sent once more (that node may have died before reaching the relay), unless that attempt was itself a resend after a node died; a mail whose nodes died at two attempts in a row, the second at or past the limit, is Bounced in doubt (RETRIES_EXHAUSTED): at most FEN_MAX_ATTEMPTS + 1 sends." },
  retryBaseMs: { env: "FEN_RETRY_BASE_MS", schema: int(1, 86_400_000).default(30_000), doc: "First retry delay; doubles per attempt, with jitter." },
  retryMaxMs: { env: "FEN_RETRY_MAX_MS", schema: int(1, 86_400_000).default(3_600_000), doc: "Largest retry delay." },
  quarantineThreshold: { env: "FEN_QUARANTINE_THRESHOLD", schema: decimal(false).pipe(z.number().min(0).max(1.01)).default(0.9), doc: "Spam score at or above which a mail is quarantined, 0 to 1.01 (above 1 disables quarantine). The default is the operating point the train-part cross-validation gives 0.21 % false positives (nodes/classifier/README.md): holding legitimate outbound mail costs more than passing a borderline one." },
  maxMessageBytes: { env: "FEN_MAX_MESSAGE_BYTES", schema: int(1024, 64 * 1024 * 1024).default(10 * 1024 * 1024), doc: "Largest message `mail.classify` scores (RFC 5322 bytes); set it as the gateway's, so a mail the gateway refuses is refused here too." },
  bodyReapAgeMs: {
    env: "FEN_BODY_REAP_AGE_MS",
    schema: int(BODY_REAP_AGE_MIN_MS, 30 * 86_400_000).default(86_400_000),
    doc: "Age (the object's mtime, written by the gateway's clock) from which the processing nodes' body reaper deletes a body object of `mail_bodies` that nothing refers to: no work item of its mail in MAIL_WORK and no kept copy in MAIL_QUARANTINE names it, and the mail's state did not change while they were read. Such objects are left by submissions answered STORE_UNAVAILABLE and retried, a gateway stopped between body and work item, or a failed delete. A body its mail still needs is kept at any age. At least 21600000 (6 h): until its work item is stored nothing refers to a body and only its age protects it (a submission takes at most FEN_SUBMIT_TIMEOUT_MS, itself at most 120 s; MAIL_WORK's duplicate window is 2 h), with room for clock skew between nodes.",
  },
  bodyReapIntervalMs: {
    env: "FEN_BODY_REAP_INTERVAL_MS",
    schema: decimal(true).pipe(z.number().int().min(0).max(7 * 86_400_000).refine((v) => v === 0 || v >= 60_000, "0 (off) or at least 60000 (one minute)")).default(3_600_000),
    doc: "How often each processing node runs the body reaper (see FEN_BODY_REAP_AGE_MS); 0 turns it off. The first pass starts at a random point of the first interval, each next one 0.75 to 1.25 intervals after the previous one ended; a node runs one pass at a time, and passes of several nodes at once are harmless. 0, or at least 60000.",
  },
  modelDir: { env: "FEN_MODEL_DIR", schema: z.string().optional(), doc: "Folder of the classifier model. @default the committed model; `none` = pass-through classifier." },
} as const satisfies Record<string, KeySpec>;

/** Ledger node keys. */
export const LedgerKeys = {
  ...CommonKeys,
  ledgerOrigin: { env: "FEN_LEDGER_ORIGIN", schema: z.string().min(1).default("fastemailnet.local/ledger"), doc: "Checkpoint origin line (log identity)." },
  ledgerSigningKey: { env: "FEN_LEDGER_SIGNING_KEY", schema: z.string().optional(), doc: "Signed-note private key `PRIVATE+KEY+…` of the ledger. Required: the ledger node refuses to start without it.", secret: true },
  ledgerCommitmentKey: { env: "FEN_LEDGER_COMMITMENT_KEY", schema: z.string().optional(), doc: "Hex key of the recipient commitments (HMAC-SHA256), at least 16 bytes. Required: the ledger node refuses to start without it.", secret: true },
  ledgerBatchSize: { env: "FEN_LEDGER_BATCH_SIZE", schema: int(1, 4096).default(256), doc: "Events per block at most." },
  ledgerBatchMs: { env: "FEN_LEDGER_BATCH_MS", schema: int(1, 60_000).default(250), doc: "Longest a block stays open." },
} as const satisfies Record<string, KeySpec>;

/**
 * A rule between keys, which no single key's schema can check. `loadConfig`
 * applies it to every table that holds all of `keys`, once each of them is
 * valid on its own; `check` returns what is wrong (reported as `field`), or
 * undefined. CONFIG.md lists these rules.
 */
export interface CrossKeyRule {
  readonly keys: readonly string[];
  readonly field: string;
  readonly doc: string;
  readonly check: (config: Readonly<Record<string, unknown>>) => string | undefined;
  /**
   * The same rule as data, for the Helm chart (deploy/chart-gen.ts renders it into
   * `files/config-rules.json`, which the chart checks): `high` ≥ `low`, two keys of `keys`.
   * A rule without it is not checked by the chart, and test/deploy/chart.test.ts fails.
   */
  readonly atLeast?: { readonly high: string; readonly low: string };
  /**
   * The same rule as data, for the Helm chart: the two keys of `keys` are set together or not at all. A secret
   * key counts as set in the chart when the pod gets it from a Secret (deploy/chart-gen.ts names the value).
   */
  readonly together?: true;
}

export const CrossKeyRules: readonly CrossKeyRule[] = [
  {
    keys: ["smtpTransactionTimeoutMs", "smtpTimeoutMs"],
    field: ProcessingKeys.smtpTransactionTimeoutMs.env,
    atLeast: { high: "smtpTransactionTimeoutMs", low: "smtpTimeoutMs" },
    doc: "`FEN_SMTP_TRANSACTION_TIMEOUT_MS` ≥ `FEN_SMTP_TIMEOUT_MS`: a shorter deadline would cut off connections that are still within their own timeouts.",
    check: (c) => (c.smtpTransactionTimeoutMs as number) < (c.smtpTimeoutMs as number)
      ? `FEN_SMTP_TRANSACTION_TIMEOUT_MS (${String(c.smtpTransactionTimeoutMs)}) is shorter than FEN_SMTP_TIMEOUT_MS (${String(c.smtpTimeoutMs)})`
      : undefined,
  },
  {
    keys: ["retryBaseMs", "retryMaxMs"],
    field: ProcessingKeys.retryMaxMs.env,
    atLeast: { high: "retryMaxMs", low: "retryBaseMs" },
    doc: "`FEN_RETRY_MAX_MS` ≥ `FEN_RETRY_BASE_MS`: the largest retry delay cannot be below the first one.",
    check: (c) => (c.retryMaxMs as number) < (c.retryBaseMs as number)
      ? `FEN_RETRY_MAX_MS (${String(c.retryMaxMs)}) is below FEN_RETRY_BASE_MS (${String(c.retryBaseMs)})`
      : undefined,
  },
  {
    keys: ["smtpUser", "smtpPassword"],
    field: ProcessingKeys.smtpUser.env,
    together: true,
    doc: "`FEN_SMTP_USER` and `FEN_SMTP_PASSWORD` are set together or not at all: a user without a password would AUTH with an empty one, a password without a user is never sent.",
    check: (c) => {
      const [user, password] = [c.smtpUser !== undefined, c.smtpPassword !== undefined];
      if (user === password) return undefined;
      const [set, unset] = user ? ["FEN_SMTP_USER", "FEN_SMTP_PASSWORD"] : ["FEN_SMTP_PASSWORD", "FEN_SMTP_USER"];
      return `${set} is set but ${unset} is not: set both (AUTH at the relay) or neither`;
    },
  },
];

/** Every key table, by node role. */
export const ConfigTables = { gateway: GatewayKeys, processing: ProcessingKeys, ledger: LedgerKeys } as const;

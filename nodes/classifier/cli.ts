/**
 * Core of `fastemailnet classify [--json] [--threshold T] [--model DIR] FILE...`.
 * The main CLI (`nodes/cli/`) dispatches to {@link runClassifyCommand}.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { DEFAULT_THRESHOLD, loadClassifier } from "./classifier.js";
import type { Classifier } from "./classifier.js";
import { classifierErrorCode } from "./errors.js";
import { parseDecimal } from "../common/decimal.js";

/** Streams the command talks to (process.stdout/stderr/stdin in production). */
export interface ClassifyIo {
  readonly stdout: { write(chunk: string): unknown };
  readonly stderr: { write(chunk: string): unknown };
  /** Read only when a file argument is `-`. */
  readonly stdin: AsyncIterable<Buffer | string>;
}

/** Exit codes of {@link runClassifyCommand}. */
export const ClassifyExit = Object.freeze({
  /** Every file was scored. */
  Ok: 0,
  /** At least one file could not be read or is not a mail; the others were scored. */
  SomeUnreadable: 1,
  /** Bad arguments. */
  Usage: 2,
  /** The model could not be loaded (missing, corrupt, hash mismatch, backend). */
  ModelUnavailable: 3,
  /** Inference failed part-way; lines already printed stand. */
  ScoringFailed: 4,
} as const);

/** Usage text of the command. */
export const CLASSIFY_USAGE = `usage: fastemailnet classify [--json] [--threshold T] [--model DIR] FILE...
Scores raw RFC 5322 messages (FILE "-" reads one message from stdin) and prints one
line per file: path, spam score (0..1), verdict (spam if score >= T), model version.
  --json          one JSON object per line instead of tab-separated columns
  --threshold T   verdict threshold, default ${DEFAULT_THRESHOLD} (the model's own; the processing nodes
                  quarantine at FEN_QUARANTINE_THRESHOLD, default 0.9)
  --model DIR     model directory, default the committed model
Exit codes: 0 every file scored, 1 a file unreadable or not a mail (the others scored), 2 usage error,
3 model unavailable (missing, corrupt, hash mismatch), 4 scoring failed part-way (printed lines stand).
`;

/** A message's first line: a header field `Name: value` (or an mbox "From " line). */
const HEADER_FIELD = /^([A-Za-z0-9-]+:|From )/;

/** Files read and scored per chunk (bounds memory on huge argument lists). */
const CHUNK = 512;

interface Parsed {
  json: boolean;
  threshold: number;
  modelDir?: string;
  files: string[];
}

function parseArgs(argv: readonly string[]): Parsed | string {
  const out: Parsed = { json: false, threshold: DEFAULT_THRESHOLD, files: [] };
  let options = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (options && a === "--") options = false;
    else if (options && a === "--json") out.json = true;
    else if (options && (a === "--threshold" || a === "--model")) {
      const v = argv[++i];
      if (v === undefined) return `${a} needs a value`;
      if (a === "--model") out.modelDir = v;
      else {
        const t = parseDecimal(v, "number");
        if (!(t >= 0 && t <= 1)) return `--threshold must be a number in [0, 1], got ${v}`;
        out.threshold = t;
      }
    } else if (options && a.startsWith("-") && a !== "-") return `unknown option ${a}`;
    else out.files.push(a);
  }
  if (out.files.length === 0) return "no FILE given";
  if (out.files.filter((f) => f === "-").length > 1) return `"-" (stdin) may be given once`;
  return out;
}

async function readStdin(stdin: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(typeof c === "string" ? Buffer.from(c) : c);
  return Buffer.concat(chunks);
}

/**
 * Runs `classify` with `argv` (the arguments after the subcommand).
 * Never throws; returns a {@link ClassifyExit} code.
 */
export async function runClassifyCommand(argv: readonly string[], io: ClassifyIo): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) {
    io.stdout.write(CLASSIFY_USAGE);
    return ClassifyExit.Ok;
  }
  const args = parseArgs(argv);
  if (typeof args === "string") {
    io.stderr.write(`classify: ${args}\n${CLASSIFY_USAGE}`);
    return ClassifyExit.Usage;
  }
  let classifier: Classifier;
  try {
    classifier = await loadClassifier(args.modelDir === undefined ? {} : { modelDir: args.modelDir });
  } catch (err) {
    const code = classifierErrorCode(err) ?? "UNKNOWN";
    io.stderr.write(`classify: cannot load the model [${code}]: ${err instanceof Error ? err.message : String(err)}\n`);
    return ClassifyExit.ModelUnavailable;
  }
  let exit: number = ClassifyExit.Ok;
  try {
    for (let start = 0; start < args.files.length; start += CHUNK) {
      const names = args.files.slice(start, start + CHUNK);
      const read = await Promise.all(
        names.map(async (name) => {
          try {
            const bytes = name === "-" ? await readStdin(io.stdin) : await readFile(name);
            // A UTF-8 byte order mark (editors write one) is not part of the message.
            const raw = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes;
            // Anything is scored; a file that does not even start with a header field is not a mail.
            if (!HEADER_FIELD.test(raw.subarray(0, 1000).toString("latin1"))) throw new Error("not an RFC 5322 message (it does not start with a header field)");
            return raw;
          } catch (err) {
            io.stderr.write(`classify: ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
            exit = ClassifyExit.SomeUnreadable;
            return undefined;
          }
        }),
      );
      const ok = names.map((name, i) => ({ name, raw: read[i] })).filter((x): x is { name: string; raw: Buffer } => x.raw !== undefined);
      const scores = await classifier.classifyRaw(ok.map((x) => x.raw));
      const lines = ok.map(({ name }, i) => {
        const score = scores[i]!.score;
        const verdict = score >= args.threshold ? "spam" : "ham";
        const path = name === "-" ? "-" : name;
        return args.json
          ? JSON.stringify({ path, score: Number(score.toFixed(6)), verdict, model: classifier.version })
          : `${path}\t${score.toFixed(6)}\t${verdict}\t${classifier.version}`;
      });
      if (lines.length) io.stdout.write(lines.join("\n") + "\n");
    }
  } catch (err) {
    const code = classifierErrorCode(err) ?? "UNKNOWN";
    io.stderr.write(`classify: scoring failed [${code}]: ${err instanceof Error ? err.message : String(err)}\n`);
    exit = ClassifyExit.ScoringFailed;
  } finally {
    classifier.dispose();
  }
  return exit;
}

/**
 * The bogofilter peer (Debian package `bogofilter`), ported from the shared
 * `bogofilter-eval` script: train a fresh word list on the train part with
 * `-s -B` / `-n -B`, score with `-t -B`, call spam at `score >= 0.5`, time
 * the scoring call only. Used by `npm run eval` and the speed benchmark.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ClassifierError, ClassifierErrorCode } from "./errors.js";
import type { LabelledMail } from "./corpus.js";

/** Threshold the peer script applies to bogofilter's spamicity. */
export const BOGOFILTER_THRESHOLD = 0.5;

/** Result of scoring a list with bogofilter. */
export interface PeerRun {
  /** Spamicity per scored file, in input order. */
  readonly scores: Float64Array;
  /** Wall-clock seconds of the scoring call. */
  readonly seconds: number;
  /** Files scored per second. */
  readonly perSecond: number;
}

/** True when a `bogofilter` binary is on the PATH. */
export function bogofilterAvailable(): boolean {
  const r = spawnSync("bogofilter", ["-V"], { stdio: "ignore" });
  return r.error === undefined && r.status === 0;
}

/**
 * True when bogofilter is there, installing Debian's package on first use
 * (needs root and apt), as `../shared/peers/bogofilter-eval` does; the
 * benchmarks measure the peer in the same run, so a fresh machine must not
 * silently skip it. `log` says what happens; a failed install is reported
 * and the caller skips the peer.
 */
export function ensureBogofilter(log: (line: string) => void): boolean {
  if (bogofilterAvailable()) return true;
  log("installing Debian's bogofilter package for the side-by-side figures (first run only) …");
  const r = spawnSync("bash", ["-c", "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq bogofilter"], { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  if (r.status !== 0) log(`could not install bogofilter (needs root and apt): ${(r.stderr ?? "").trim().slice(-300)}`);
  return bogofilterAvailable();
}

/** A trained bogofilter word list in a private temporary directory. */
export class BogofilterPeer {
  private constructor(private readonly dbDir: string) {}

  /**
   * Trains on `train` (files under `dataDir`) into a new temporary word list.
   * @throws {ClassifierError} `CLASSIFIER_PEER_FAILED` when bogofilter fails.
   */
  static train(dataDir: string, train: readonly LabelledMail[]): BogofilterPeer {
    const dbDir = mkdtempSync(join(tmpdir(), "fen-bogofilter-"));
    const peer = new BogofilterPeer(dbDir);
    try {
      for (const [label, flag] of [["spam", "-s"], ["ham", "-n"]] as const) {
        const files = train.filter((m) => m.label === label).map((m) => join(dataDir, m.path));
        // Registration is cumulative, so chunks keep the argument list short without changing the result.
        for (let i = 0; i < files.length; i += 1000) peer.run([flag, "-B", ...files.slice(i, i + 1000)]);
      }
    } catch (err) {
      peer.close();
      throw err;
    }
    return peer;
  }

  /** Scores `files` (absolute paths) in one bogofilter call, timed. */
  score(files: readonly string[]): PeerRun {
    const start = process.hrtime.bigint();
    const out = this.run(["-t", "-B", ...files]);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const lines = out.split("\n").filter((l) => l.trim());
    if (lines.length !== files.length) {
      throw new ClassifierError(ClassifierErrorCode.PeerFailed, `bogofilter printed ${lines.length} lines for ${files.length} files`);
    }
    const scores = Float64Array.from(lines, (l) => Number(l.trim().split(/\s+/)[1]));
    if (scores.some((s) => !Number.isFinite(s))) throw new ClassifierError(ClassifierErrorCode.PeerFailed, "bogofilter printed a non-numeric score");
    return { scores, seconds, perSecond: files.length / seconds };
  }

  /** Deletes the word list. */
  close(): void {
    rmSync(this.dbDir, { recursive: true, force: true });
  }

  private run(args: string[]): string {
    const r = spawnSync("bogofilter", args, {
      env: { ...process.env, BOGOFILTER_DIR: this.dbDir },
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    });
    if (r.error || r.status !== 0) {
      throw new ClassifierError(ClassifierErrorCode.PeerFailed, `bogofilter ${args[0]} failed (status ${String(r.status)}): ${(r.stderr ?? "").slice(0, 200)}`, { cause: r.error });
    }
    return r.stdout;
  }
}

const KEEP_HEADER = /^(subject|content-[a-z-]+|mime-version)\s*:/i;

/**
 * Writes copies of `mails` whose top-level header keeps only Subject, MIME-Version
 * and Content-* (what the TensorFlow.js model reads) under a new temporary directory;
 * returns it. Lets the peer be compared on the same information.
 */
export function writeContentOnlyCopies(dataDir: string, mails: readonly LabelledMail[]): string {
  const out = mkdtempSync(join(tmpdir(), "fen-content-only-"));
  for (const m of mails) {
    const raw = readFileSync(join(dataDir, m.path));
    const s = raw.toString("latin1");
    const m2 = /\r?\n\r?\n/.exec(s);
    const headEnd = m2 ? m2.index : s.length;
    const lines = s.slice(0, headEnd).split(/\r?\n(?![ \t])/);
    const head = lines.filter((l) => KEEP_HEADER.test(l)).join("\n");
    const target = join(out, m.path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, Buffer.from(head + s.slice(headEnd), "latin1"));
  }
  return out;
}

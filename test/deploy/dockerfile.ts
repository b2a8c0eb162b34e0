import { execFile } from "node:child_process";
import { chmod, cp, mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

/**
 * A rehearsal of a Dockerfile without a Docker engine (none runs on the
 * machines this project is built and tested on): each stage becomes a folder,
 * and its instructions are carried out in order on this host —
 * `WORKDIR`, `COPY [--from=stage]`, `RUN` (bash, in the stage's work dir),
 * `ENV`, `USER`, `ENTRYPOINT`, `CMD`. `FROM` images are not fetched: the
 * host's own Node.js stands in for the base image, so what this shows is
 * that the build steps succeed and that the runtime stage's files alone are
 * enough to run the nodes, not that the base image is right.
 *
 * Contract: only the instructions above plus `ARG`, `EXPOSE` and comments
 * are understood; anything else throws, so a Dockerfile change that this
 * rehearsal cannot follow fails loudly instead of being skipped.
 */
export interface RehearsedStage {
  readonly name: string;
  /** The stage's root folder on the host ("/" of the image). */
  readonly root: string;
  /** Image path of the work dir (e.g. `/app`). */
  workdir: string;
  readonly env: Record<string, string>;
  user: string | undefined;
  entrypoint: string[];
  cmd: string[];
}

const exec = promisify(execFile);

/** Joins logical lines (trailing `\`), drops comments and blank lines. */
export function instructions(text: string): { op: string; rest: string }[] {
  const out: { op: string; rest: string }[] = [];
  let acc = "";
  for (const line of text.split("\n")) {
    if (/^\s*#/.test(line) && acc === "") continue;
    const t = line.replace(/\s+$/, "");
    if (t.endsWith("\\")) { acc += t.slice(0, -1) + " "; continue; }
    acc += t;
    if (acc.trim()) {
      const m = /^\s*(\w+)\s+([\s\S]*)$/.exec(acc);
      if (!m) throw new Error(`Dockerfile line not understood: ${acc}`);
      out.push({ op: m[1]!.toUpperCase(), rest: m[2]!.trim() });
    }
    acc = "";
  }
  return out;
}

const execForm = (rest: string): string[] => {
  const v = JSON.parse(rest) as unknown;
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new Error(`expected the JSON (exec) form: ${rest}`);
  return v as string[];
};

/**
 * Carries out `dockerfile` with `context` as the build context into stage
 * folders under `out`. Returns the stages in order (the last is the image).
 * `onStep` reports progress (RUN steps take a while).
 */
export async function rehearseDockerfile(dockerfile: string, context: string, out: string, onStep: (s: string) => void = () => undefined): Promise<RehearsedStage[]> {
  const stages: RehearsedStage[] = [];
  let cur: RehearsedStage | undefined;
  const host = (st: RehearsedStage, p: string) => path.join(st.root, path.posix.resolve(st.workdir, p));
  for (const { op, rest } of instructions(await readFile(dockerfile, "utf8"))) {
    if (op === "ARG" || op === "EXPOSE") continue;
    if (op === "FROM") {
      const m = /\bAS\s+(\S+)/i.exec(rest);
      const name = m?.[1] ?? String(stages.length);
      cur = { name, root: path.join(out, name), workdir: "/", env: {}, user: undefined, entrypoint: [], cmd: [] };
      await mkdir(cur.root, { recursive: true });
      stages.push(cur);
      continue;
    }
    if (!cur) throw new Error(`${op} before FROM`);
    const st = cur;
    switch (op) {
      case "WORKDIR":
        st.workdir = path.posix.resolve(st.workdir, rest);
        await mkdir(host(st, "."), { recursive: true });
        break;
      case "ENV":
        for (const m of rest.matchAll(/(\w+)=("[^"]*"|\S+)/g)) st.env[m[1]!] = m[2]!.replace(/^"|"$/g, "");
        break;
      case "USER":
        st.user = rest;
        break;
      case "ENTRYPOINT":
        st.entrypoint = execForm(rest);
        break;
      case "CMD":
        st.cmd = execForm(rest);
        break;
      case "COPY": {
        const words = rest.split(/\s+/);
        const from = words[0]?.startsWith("--from=") ? words.shift()!.slice("--from=".length) : undefined;
        if (words.some((w) => w.startsWith("--"))) throw new Error(`COPY flag not understood: ${rest}`);
        const dst = words.pop()!;
        const src = from ? stages.find((s) => s.name === from) : undefined;
        if (from && !src) throw new Error(`COPY --from=${from}: no such stage`);
        for (const s of words) {
          const source = src ? path.join(src.root, path.posix.resolve(src.workdir, s)) : path.join(context, s);
          const target = host(st, dst.endsWith("/") || words.length > 1 ? path.posix.join(dst, path.posix.basename(s)) : dst);
          onStep(`${st.name}: COPY ${from ? `--from=${from} ` : ""}${s} ${dst}`);
          await cp(source, target, { recursive: true, dereference: false });
        }
        break;
      }
      case "RUN": {
        onStep(`${st.name}: RUN ${rest}`);
        await exec("bash", ["-euo", "pipefail", "-c", rest], {
          cwd: host(st, "."), env: { ...process.env, ...st.env }, maxBuffer: 64 << 20,
        });
        break;
      }
      default:
        throw new Error(`Dockerfile instruction ${op} is not understood by the rehearsal`);
    }
  }
  if (stages.length === 0) throw new Error("no FROM in the Dockerfile");
  // The image's files are readable by anyone (as in an image layer); the
  // folders leading to them must be traversable by the image's user.
  await chmod(out, 0o755);
  return stages;
}

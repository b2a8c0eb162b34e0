/**
 * Mailing-list artefacts removed before feature extraction: footers a list
 * server appends in transit (Mailman, Yahoo! Groups, SourceForge sponsor
 * blocks) and `[list]` subject tags. Like List-* headers they are transport
 * artefacts: outbound mail at submit time has none, and in the training
 * corpus they give the (ham) label away. Pure.
 *
 * @module
 */

/** Phrases that identify a list server's footer. */
const LIST_CUE = /mailing list|listinfo|list maintainer|mailman|yahoo! ?groups|egroups|\(un\)subscription|sf\.net email is sponsored|unsubscribe from this group/i;
/** A separator line: a signature dash or a run of rule characters. */
const SEPARATOR = /^(?:-- ?|[ \t]*[_\-=~*]{10,}.*)$/gm;
/** How far from the end a footer may start. */
const TAIL = 2500;

/**
 * Where a trailing list-server footer starts in `text`: the length of the
 * text without it, `text.length` when there is none.
 */
export function listFooterStart(text: string): number {
  if (text.length === 0) return 0;
  const from = Math.max(0, text.length - TAIL);
  const tail = text.slice(from);
  if (!LIST_CUE.test(tail)) return text.length;
  SEPARATOR.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = SEPARATOR.exec(tail)) !== null) {
    if (LIST_CUE.test(tail.slice(m.index))) return from + m.index;
    if (m[0].length === 0) SEPARATOR.lastIndex++;
  }
  // No separator: a bare list URL as the last line (e.g. ".../mailman/listinfo/fork").
  const lastLine = /\n[^\n]*(?:listinfo|mailman)[^\n]*\s*$/i.exec(tail);
  return lastLine ? from + lastLine.index : text.length;
}

const SUBJECT_TAG = /^((?:\s*(?:re|fwd?|aw)\s*:)*)\s*\[[^\]\n]{1,40}\]\s*/i;

/** Removes a leading `[list]` tag from a subject, keeping any `Re:` prefixes. */
export function stripSubjectTag(subject: string): string {
  return subject.replace(SUBJECT_TAG, (_m, prefix: string) => (prefix ? prefix.trim() + " " : ""));
}

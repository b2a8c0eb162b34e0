/**
 * Binary classification metrics, pure: scores and labels in, figures out.
 * Spam is the positive class; a mail is called spam when `score >= threshold`.
 *
 * @module
 */

/** Confusion matrix (spam = positive). */
export interface Confusion {
  /** Spam called spam. */
  readonly tp: number;
  /** Ham called spam (false positives). */
  readonly fp: number;
  /** Ham called ham. */
  readonly tn: number;
  /** Spam called ham (missed spam). */
  readonly fn: number;
}

/** Figures of one classifier on one labelled set. */
export interface Metrics {
  readonly n: number;
  readonly threshold: number;
  readonly accuracy: number;
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  /** False-positive rate: fp / (fp + tn). */
  readonly fpr: number;
  /** Area under the ROC curve (ties count one half); `NaN` without both classes. */
  readonly auc: number;
  readonly confusion: Confusion;
}

/** Counts the confusion matrix at `threshold`. `spam[i]` is the truth of `scores[i]`. */
export function confusion(scores: ArrayLike<number>, spam: ArrayLike<boolean>, threshold: number): Confusion {
  let tp = 0, fp = 0, tn = 0, fn = 0;
  for (let i = 0; i < scores.length; i++) {
    const called = scores[i]! >= threshold;
    if (spam[i]) {
      if (called) tp++;
      else fn++;
    } else if (called) fp++;
    else tn++;
  }
  return { tp, fp, tn, fn };
}

/** ROC AUC by the rank-sum (Mann-Whitney) statistic, ties averaged. */
export function rocAuc(scores: ArrayLike<number>, spam: ArrayLike<boolean>): number {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let pos = 0, neg = 0, rankSum = 0;
  let i = 0;
  while (i < order.length) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (spam[order[k]!]) {
        pos++;
        rankSum += avgRank;
      } else neg++;
    }
    i = j + 1;
  }
  if (pos === 0 || neg === 0) return NaN;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

const ratio = (a: number, b: number): number => (b === 0 ? 0 : a / b);

/** All figures at `threshold`. */
export function computeMetrics(scores: ArrayLike<number>, spam: ArrayLike<boolean>, threshold: number): Metrics {
  const c = confusion(scores, spam, threshold);
  const precision = ratio(c.tp, c.tp + c.fp);
  const recall = ratio(c.tp, c.tp + c.fn);
  return {
    n: scores.length,
    threshold,
    accuracy: ratio(c.tp + c.tn, scores.length),
    precision,
    recall,
    f1: ratio(2 * precision * recall, precision + recall),
    fpr: ratio(c.fp, c.fp + c.tn),
    auc: rocAuc(scores, spam),
    confusion: c,
  };
}

/** One point of a ROC curve. */
export interface RocPoint {
  readonly fpr: number;
  readonly tpr: number;
  readonly threshold: number;
}

/** The ROC curve, from (0,0) to (1,1), one point per distinct score. */
export function rocCurve(scores: ArrayLike<number>, spam: ArrayLike<boolean>): RocPoint[] {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let P = 0, N = 0;
  for (let i = 0; i < scores.length; i++) {
    if (spam[i]) P++;
    else N++;
  }
  const out: RocPoint[] = [{ fpr: 0, tpr: 0, threshold: Infinity }];
  let tp = 0, fp = 0;
  for (let i = 0; i < order.length; i++) {
    if (spam[order[i]!]) tp++;
    else fp++;
    const next = order[i + 1];
    if (next === undefined || scores[next] !== scores[order[i]!]) {
      out.push({ fpr: ratio(fp, N), tpr: ratio(tp, P), threshold: scores[order[i]!]! });
    }
  }
  return out;
}

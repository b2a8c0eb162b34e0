import { describe, expect, it } from "vitest";
import { createProgressBar, renderBar } from "../../nodes/classifier/progress.js";

describe("progress bar", () => {
  it("renders a fixed-width bar", () => {
    expect(renderBar("train", 5, 10, "epoch 1/2", 10)).toBe("train [#####-----]  50% epoch 1/2");
    expect(renderBar("x", 0, 0, "", 4)).toBe("x [----]   0% ");
  });

  it("redraws at most every interval on the injected clock and ends the line", () => {
    const out: string[] = [];
    let t = 0;
    const bar = createProgressBar({ write: (s: string) => out.push(s), isTTY: true }, "t", { now: () => t, minIntervalMs: 100 });
    bar.update(1, 4, "a");
    t = 50;
    bar.update(2, 4, "b");
    t = 150;
    bar.update(3, 4, "c");
    bar.finish("done");
    expect(out).toHaveLength(3);
    expect(out[0]).toMatch(/^\r.* 25% a/);
    expect(out[1]).toMatch(/ 75% c/);
    expect(out[2]!.endsWith("100% done\u001b[K\n")).toBe(true);
  });
});

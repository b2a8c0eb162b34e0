import { defineConfig } from "vitest/config";

// Integration tests start real 3-node nats-server clusters; on a 2-core machine
// running more than two files at once only makes every cluster slower.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // In CI a JSON report too, from which .ci/run prints the plain
    // "N passed, N failed" line the CI reads.
    reporters: process.env["CI"] ? ["default", "json"] : ["default"],
    outputFile: { json: ".ci/vitest-report.json" },
  },
});

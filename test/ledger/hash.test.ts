// RFC 6962 hashing primitives with pinned values.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { EMPTY_ROOT, HASH_SIZE, LEAF_HASH_PREFIX, NODE_HASH_PREFIX, hashChildren, hashLeaf } from "../../ledger/index.js";

const hex = (u: Uint8Array): string => Buffer.from(u).toString("hex");

describe("hash", () => {
  it("uses the RFC 6962 prefixes", () => {
    expect(LEAF_HASH_PREFIX).toBe(0x00);
    expect(NODE_HASH_PREFIX).toBe(0x01);
    expect(HASH_SIZE).toBe(32);
  });

  it("pins leaf, node and empty hashes", () => {
    expect(hex(EMPTY_ROOT)).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(hex(hashLeaf(new Uint8Array(0)))).toBe("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    const l = hashLeaf(new Uint8Array(0));
    const r = hashLeaf(Uint8Array.of(0));
    expect(hex(hashChildren(l, r))).toBe("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125");
    expect(hex(hashChildren(l, r))).toBe(
      createHash("sha256").update(Uint8Array.of(1)).update(l).update(r).digest("hex"),
    );
  });
});

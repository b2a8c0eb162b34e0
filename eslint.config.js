import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", ".tools/", ".data/", "nodes/classifier/model/", "deploy/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "no-console": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
    },
  },
  {
    // Entry points and tools may print to the terminal; library code may not.
    files: ["**/main.ts", "nodes/cli/**", "test/**", "**/bin.js", "**/scripts/**"],
    rules: { "no-console": "off" },
  },
);

// schema.d.ts must be what `npm run gen:api` makes from openapi.json today (regenerate after copying a new
// openapi.json from the bus; see README in this folder).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";

const root = join(__dirname, "..", "..");

it("schema.d.ts is generated from openapi.json", () => {
  const dir = mkdtempSync(join(tmpdir(), "gen-api-"));
  try {
    const out = join(dir, "schema.d.ts");
    execFileSync(
      process.execPath,
      [join(root, "node_modules", "openapi-typescript", "bin", "cli.js"), join(root, "openapi.json"), "-o", out],
      { cwd: root, stdio: "pipe" },
    );
    const fresh = readFileSync(out, "utf8");
    const committed = readFileSync(join(root, "src", "api", "schema.d.ts"), "utf8");
    expect(committed === fresh, "src/api/schema.d.ts is stale: run `npm run gen:api`").toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);

// Fails when a committed generated file differs from what its source produces today:
// typescript/src/schema.d.ts from openapi/openapi.json, and the mentor app's copies of the
// compiled modules from typescript/src.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { APP_MODULES, appCopy } from "./lib.mjs";

const tmp = mkdtempSync(join(tmpdir(), "vivirk-drift-"));
const bin = (name) => join("node_modules", ".bin", name);
const drift = [];
try {
  execFileSync(bin("openapi-typescript"), ["../openapi/openapi.json", "-o", join(tmp, "schema.d.ts")], { stdio: "pipe" });
  if (readFileSync(join(tmp, "schema.d.ts"), "utf8") !== readFileSync("typescript/src/schema.d.ts", "utf8")) {
    drift.push("typescript/src/schema.d.ts differs from openapi/openapi.json");
  }
  execFileSync(bin("tsc"), ["-p", "typescript", "--outDir", join(tmp, "dist")], { stdio: "inherit" });
  for (const name of APP_MODULES) {
    if (appCopy(join(tmp, "dist"), name) !== readFileSync(`mentor-app/${name}`, "utf8")) {
      drift.push(`mentor-app/${name} differs from typescript/src`);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
if (drift.length > 0) {
  for (const d of drift) console.error(`drift: ${d}`);
  console.error("run `npm run generate` in clients/ and commit the result");
  process.exit(1);
}
console.log("no drift: generated types and app modules match their sources");

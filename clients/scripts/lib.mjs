// Shared by copy-lib and check-drift: which compiled modules the mentor app serves.
import { readFileSync } from "node:fs";

export const APP_MODULES = ["auth.js", "outbox.js"];

/** The mentor app's copy of a compiled module: a header, then tsc's output unchanged. */
export function appCopy(distDir, name) {
  const source = name.replace(/\.js$/, ".ts");
  const header = `// Generated from clients/typescript/src/${source} by \`npm run build\`; do not edit.\n`;
  return header + readFileSync(`${distDir}/${name}`, "utf8");
}

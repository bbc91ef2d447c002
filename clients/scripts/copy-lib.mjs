// After tsc: copies the dependency-free modules into the mentor app (served at /app, embedded in
// the server binary) and the generated schema types next to the compiled client.
import { copyFileSync, writeFileSync } from "node:fs";
import { APP_MODULES, appCopy } from "./lib.mjs";

for (const name of APP_MODULES) writeFileSync(`mentor-app/${name}`, appCopy("typescript/dist", name));
copyFileSync("typescript/src/schema.d.ts", "typescript/dist/schema.d.ts");

export * from "./auth.js";
export * from "./outbox.js";
export * from "./client.js";
export type { paths, components, operations } from "./schema.js";

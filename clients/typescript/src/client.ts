// The typed API client: openapi-fetch over the generated schema, with token refresh and an
// offline outbox for writes.

import createClient from "openapi-fetch";
import type { paths } from "./schema.js";
import { authFetch, login, memoryTokens, type Fetch, type TokenStore } from "./auth.js";
import { httpSender, MemoryStorage, Outbox, type OutboxStorage } from "./outbox.js";

export interface VivirkOptions {
  baseUrl: string;
  tokens?: TokenStore;
  outboxStorage?: OutboxStorage;
  /** The underlying fetch (tests wrap it to simulate outages). */
  fetch?: Fetch;
  onLoggedOut?: () => void;
}

export function createVivirk({ baseUrl, tokens = memoryTokens(), outboxStorage, fetch, onLoggedOut }: VivirkOptions) {
  const authed = authFetch({ baseUrl, tokens, fetch, onLoggedOut });
  const api = createClient<paths>({ baseUrl, fetch: authed });
  const outbox = new Outbox({ storage: outboxStorage ?? new MemoryStorage(), send: httpSender(baseUrl, authed) });

  /** Every event visible to the caller after position `after`, following `more` page by page. */
  async function syncAll(after = 0, limit = 500) {
    const events: Record<string, unknown>[] = [];
    for (;;) {
      const { data, error } = await api.GET("/v1/sync", { params: { query: { after, limit } } });
      if (error || !data) throw new Error("sync failed");
      const page = data as { events: Record<string, unknown>[]; next: number; more: boolean };
      events.push(...page.events);
      after = page.next;
      if (!page.more) return { events, next: after };
    }
  }

  return {
    api,
    outbox,
    tokens,
    fetch: authed,
    syncAll,
    login: (username: string, password: string) => login(baseUrl, tokens, username, password, fetch),
  };
}

export type Vivirk = ReturnType<typeof createVivirk>;

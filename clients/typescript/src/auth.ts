// Bearer tokens and a fetch that refreshes an expired access token once and retries.
// No dependencies: the mentor app serves the compiled file as is.

export interface Tokens {
  access_token: string;
  refresh_token: string;
}

/** Where the tokens live: memory in Node, localStorage in the browser. */
export interface TokenStore {
  get(): Tokens | null;
  set(tokens: Tokens | null): void;
}

export type Fetch = (request: Request) => Promise<Response>;

export function memoryTokens(initial: Tokens | null = null): TokenStore {
  let tokens = initial;
  return { get: () => tokens, set: (t) => void (tokens = t) };
}

export function localStorageTokens(key = "vivirk.tokens"): TokenStore {
  return {
    get: () => JSON.parse(localStorage.getItem(key) ?? "null") as Tokens | null,
    set: (t) => (t ? localStorage.setItem(key, JSON.stringify(t)) : localStorage.removeItem(key)),
  };
}

/** The `code` of an RFC 9457 problem response, or null. Does not consume the response. */
export async function problemCode(res: Response): Promise<string | null> {
  if (!(res.headers.get("content-type") ?? "").includes("json")) return null;
  const body = (await res.clone().json().catch(() => null)) as { code?: unknown } | null;
  return typeof body?.code === "string" ? body.code : null;
}

const defaultFetch: Fetch = (r) => globalThis.fetch(r);

function jsonPost(url: string, body: unknown): Request {
  return new Request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

/** Logs in; stores and returns the tokens. Throws an Error whose message is the problem code. */
export async function login(baseUrl: string, tokens: TokenStore, username: string, password: string, fetch = defaultFetch) {
  const res = await fetch(jsonPost(`${baseUrl}/v1/auth/token`, { username, password }));
  if (!res.ok) throw new Error((await problemCode(res)) ?? `http_${res.status}`);
  const t = (await res.json()) as Tokens;
  tokens.set({ access_token: t.access_token, refresh_token: t.refresh_token });
  return t;
}

export interface AuthFetchOptions {
  baseUrl: string;
  tokens: TokenStore;
  fetch?: Fetch;
  /** Called when the refresh token is refused: the user has to log in again. */
  onLoggedOut?: () => void;
}

/**
 * A fetch that adds the bearer token and, on a 401 `token_expired`/`invalid_token`, refreshes
 * once (one refresh at a time, shared by concurrent requests) and retries the request once.
 */
export function authFetch({ baseUrl, tokens, fetch = defaultFetch, onLoggedOut }: AuthFetchOptions): Fetch {
  let refreshing: Promise<boolean> | null = null;
  const refresh = () =>
    (refreshing ??= (async () => {
      const current = tokens.get();
      if (!current) return false;
      const res = await fetch(jsonPost(`${baseUrl}/v1/auth/refresh`, { refresh_token: current.refresh_token }));
      if (res.status === 401 || res.status === 400) {
        tokens.set(null);
        onLoggedOut?.();
        return false;
      }
      if (!res.ok) return false;
      const t = (await res.json()) as Tokens;
      tokens.set({ access_token: t.access_token, refresh_token: t.refresh_token });
      return true;
    })().finally(() => (refreshing = null)));

  const send = (request: Request) => {
    const access = tokens.get()?.access_token;
    if (access) request.headers.set("authorization", `Bearer ${access}`);
    return fetch(request);
  };

  return async (request) => {
    const retry = request.clone();
    const used = tokens.get()?.access_token;
    const res = await send(request);
    if (res.status !== 401 || !used) return res;
    const code = await problemCode(res);
    if (code !== "token_expired" && code !== "invalid_token") return res;
    // Another request may have refreshed meanwhile; refresh only if we still hold the old token.
    const fresh = tokens.get()?.access_token !== used || (await refresh());
    return fresh ? send(retry) : res;
  };
}

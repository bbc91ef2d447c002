// Generated from clients/typescript/src/auth.ts by `npm run build`; do not edit.
// Bearer tokens and a fetch that refreshes an expired access token once and retries.
// No dependencies: the mentor app serves the compiled file as is.
export function memoryTokens(initial = null) {
    let tokens = initial;
    return { get: () => tokens, set: (t) => void (tokens = t) };
}
export function localStorageTokens(key = "vivirk.tokens") {
    return {
        get: () => JSON.parse(localStorage.getItem(key) ?? "null"),
        set: (t) => (t ? localStorage.setItem(key, JSON.stringify(t)) : localStorage.removeItem(key)),
    };
}
/** The `code` of an RFC 9457 problem response, or null. Does not consume the response. */
export async function problemCode(res) {
    if (!(res.headers.get("content-type") ?? "").includes("json"))
        return null;
    const body = (await res.clone().json().catch(() => null));
    return typeof body?.code === "string" ? body.code : null;
}
const defaultFetch = (r) => globalThis.fetch(r);
function jsonPost(url, body) {
    return new Request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}
/** Logs in; stores and returns the tokens. Throws an Error whose message is the problem code. */
export async function login(baseUrl, tokens, username, password, fetch = defaultFetch) {
    const res = await fetch(jsonPost(`${baseUrl}/v1/auth/token`, { username, password }));
    if (!res.ok)
        throw new Error((await problemCode(res)) ?? `http_${res.status}`);
    const t = (await res.json());
    tokens.set({ access_token: t.access_token, refresh_token: t.refresh_token });
    return t;
}
/**
 * A fetch that adds the bearer token and, on a 401 `token_expired`/`invalid_token`, refreshes
 * once (one refresh at a time, shared by concurrent requests) and retries the request once.
 */
export function authFetch({ baseUrl, tokens, fetch = defaultFetch, onLoggedOut }) {
    let refreshing = null;
    const refresh = () => (refreshing ??= (async () => {
        const current = tokens.get();
        if (!current)
            return false;
        const res = await fetch(jsonPost(`${baseUrl}/v1/auth/refresh`, { refresh_token: current.refresh_token }));
        if (res.status === 401 || res.status === 400) {
            tokens.set(null);
            onLoggedOut?.();
            return false;
        }
        if (!res.ok)
            return false;
        const t = (await res.json());
        tokens.set({ access_token: t.access_token, refresh_token: t.refresh_token });
        return true;
    })().finally(() => (refreshing = null)));
    const send = (request) => {
        const access = tokens.get()?.access_token;
        if (access)
            request.headers.set("authorization", `Bearer ${access}`);
        return fetch(request);
    };
    return async (request) => {
        const retry = request.clone();
        const used = tokens.get()?.access_token;
        const res = await send(request);
        if (res.status !== 401 || !used)
            return res;
        const code = await problemCode(res);
        if (code !== "token_expired" && code !== "invalid_token")
            return res;
        // Another request may have refreshed meanwhile; refresh only if we still hold the old token.
        const fresh = tokens.get()?.access_token !== used || (await refresh());
        return fresh ? send(retry) : res;
    };
}

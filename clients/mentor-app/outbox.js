// Generated from clients/typescript/src/outbox.ts by `npm run build`; do not edit.
// The offline outbox: writes are queued with their Idempotency-Key and client event id (both
// generated when queued), persisted, and replayed in order when the connection returns. A replay
// after a lost response appends nothing: the server dedupes by event id and Idempotency-Key.
// No dependencies: the mentor app serves the compiled file as is.
export class MemoryStorage {
    state = null;
    load() {
        return this.state ? JSON.parse(this.state) : null;
    }
    save(state) {
        this.state = JSON.stringify(state);
    }
}
export class LocalStorageStorage {
    key;
    constructor(key = "vivirk.outbox") {
        this.key = key;
    }
    load() {
        return JSON.parse(localStorage.getItem(this.key) ?? "null");
    }
    save(state) {
        localStorage.setItem(this.key, JSON.stringify(state));
    }
}
/** Sends a queued write as a JSON POST with its Idempotency-Key through `fetch`. */
export function httpSender(baseUrl, fetch) {
    return (w) => fetch(new Request(baseUrl + w.path, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": w.key },
        body: JSON.stringify(w.body),
    }));
}
/** Worth retrying later: the server may accept it then. Anything else 4xx is a refusal. */
async function retryable(res) {
    if (res.status === 401 || res.status === 408 || res.status === 429 || res.status >= 500)
        return true;
    if (res.status !== 409)
        return false;
    const body = (await res.clone().json().catch(() => null));
    return body?.code === "conflict" || body?.code === "idempotency_in_progress";
}
export class Outbox {
    opts;
    state;
    flushing = null;
    constructor(opts) {
        this.opts = opts;
        this.state = opts.storage.load() ?? { pending: [], rejected: [] };
    }
    get pending() {
        return this.state.pending;
    }
    get rejected() {
        return this.state.rejected;
    }
    /** Queues a write (persisted at once); call `flush` to send. */
    enqueue(path, body) {
        const uuid = this.opts.uuid ?? (() => crypto.randomUUID());
        const at = (this.opts.now ?? (() => new Date()))().toISOString();
        const write = {
            key: uuid(),
            path,
            body: { ...body, event_id: body.event_id ?? uuid(), occurred_at: body.occurred_at ?? at },
            queued_at: at,
            attempts: 0,
        };
        this.state.pending.push(write);
        this.save();
        return write;
    }
    /** Drops a rejected write from the list (after the user has seen it). */
    dismiss(key) {
        this.state.rejected = this.state.rejected.filter((w) => w.key !== key);
        this.save();
    }
    /** Sends pending writes in order; stops at the first that cannot be sent now. One at a time. */
    flush() {
        return (this.flushing ??= this.run().finally(() => (this.flushing = null)));
    }
    async run() {
        let sent = 0;
        let rejected = 0;
        let stopped = null;
        while (this.state.pending.length > 0) {
            const write = this.state.pending[0];
            write.attempts += 1;
            this.save();
            let res;
            try {
                res = await this.opts.send(write);
            }
            catch {
                stopped = "network"; // no answer: maybe it arrived, maybe not; the replay is safe either way
                break;
            }
            if (!res.ok && (await retryable(res))) {
                stopped = `http_${res.status}`;
                break;
            }
            this.state.pending.shift();
            if (res.ok) {
                sent += 1;
            }
            else {
                const body = (await res.json().catch(() => null));
                this.state.rejected.push({ ...write, status: res.status, code: body?.code ?? null });
                rejected += 1;
            }
            this.save();
        }
        return { sent, rejected, pending: this.state.pending.length, stopped };
    }
    save() {
        this.opts.storage.save(this.state);
        this.opts.onChange?.(this.state);
    }
}

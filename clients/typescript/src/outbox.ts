// The offline outbox: writes are queued with their Idempotency-Key and client event id (both
// generated when queued), persisted, and replayed in order when the connection returns. A replay
// after a lost response appends nothing: the server dedupes by event id and Idempotency-Key.
// No dependencies: the mentor app serves the compiled file as is.

export interface QueuedWrite {
  /** The Idempotency-Key, a UUID. */
  key: string;
  /** The API path, e.g. `/v1/courses/{id}/check-ins`. */
  path: string;
  /** The JSON body, with `event_id` and `occurred_at` filled in when queued. */
  body: Record<string, unknown>;
  queued_at: string;
  attempts: number;
}

/** A write the server refused for good (e.g. 422, 403): kept for the user to see, never resent. */
export interface RejectedWrite extends QueuedWrite {
  status: number;
  code: string | null;
}

export interface OutboxState {
  pending: QueuedWrite[];
  rejected: RejectedWrite[];
}

/** Pluggable persistence: in memory for tests, localStorage in the browser. */
export interface OutboxStorage {
  load(): OutboxState | null;
  save(state: OutboxState): void;
}

export class MemoryStorage implements OutboxStorage {
  private state: string | null = null;
  load() {
    return this.state ? (JSON.parse(this.state) as OutboxState) : null;
  }
  save(state: OutboxState) {
    this.state = JSON.stringify(state);
  }
}

export class LocalStorageStorage implements OutboxStorage {
  constructor(private readonly key = "vivirk.outbox") {}
  load() {
    return JSON.parse(localStorage.getItem(this.key) ?? "null") as OutboxState | null;
  }
  save(state: OutboxState) {
    localStorage.setItem(this.key, JSON.stringify(state));
  }
}

export type Send = (write: QueuedWrite) => Promise<Response>;

/** Sends a queued write as a JSON POST with its Idempotency-Key through `fetch`. */
export function httpSender(baseUrl: string, fetch: (r: Request) => Promise<Response>): Send {
  return (w) =>
    fetch(
      new Request(baseUrl + w.path, {
        method: "POST",
        headers: { "content-type": "application/json", "idempotency-key": w.key },
        body: JSON.stringify(w.body),
      }),
    );
}

/** Worth retrying later: the server may accept it then. Anything else 4xx is a refusal. */
async function retryable(res: Response): Promise<boolean> {
  if (res.status === 401 || res.status === 408 || res.status === 429 || res.status >= 500) return true;
  if (res.status !== 409) return false;
  const body = (await res.clone().json().catch(() => null)) as { code?: string } | null;
  return body?.code === "conflict" || body?.code === "idempotency_in_progress";
}

export interface FlushResult {
  sent: number;
  rejected: number;
  pending: number;
  /** Why the flush stopped early (`network`, or `http_<status>`), if it did. */
  stopped: string | null;
}

export interface OutboxOptions {
  storage: OutboxStorage;
  send: Send;
  onChange?: (state: OutboxState) => void;
  now?: () => Date;
  uuid?: () => string;
}

export class Outbox {
  private state: OutboxState;
  private flushing: Promise<FlushResult> | null = null;

  constructor(private readonly opts: OutboxOptions) {
    this.state = opts.storage.load() ?? { pending: [], rejected: [] };
  }

  get pending(): readonly QueuedWrite[] {
    return this.state.pending;
  }

  get rejected(): readonly RejectedWrite[] {
    return this.state.rejected;
  }

  /** Queues a write (persisted at once); call `flush` to send. */
  enqueue(path: string, body: Record<string, unknown>): QueuedWrite {
    const uuid = this.opts.uuid ?? (() => crypto.randomUUID());
    const at = (this.opts.now ?? (() => new Date()))().toISOString();
    const write: QueuedWrite = {
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
  dismiss(key: string) {
    this.state.rejected = this.state.rejected.filter((w) => w.key !== key);
    this.save();
  }

  /** Sends pending writes in order; stops at the first that cannot be sent now. One at a time. */
  flush(): Promise<FlushResult> {
    return (this.flushing ??= this.run().finally(() => (this.flushing = null)));
  }

  private async run(): Promise<FlushResult> {
    let sent = 0;
    let rejected = 0;
    let stopped: string | null = null;
    while (this.state.pending.length > 0) {
      const write = this.state.pending[0];
      write.attempts += 1;
      this.save();
      let res: Response;
      try {
        res = await this.opts.send(write);
      } catch {
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
      } else {
        const body = (await res.json().catch(() => null)) as { code?: string } | null;
        this.state.rejected.push({ ...write, status: res.status, code: body?.code ?? null });
        rejected += 1;
      }
      this.save();
    }
    return { sent, rejected, pending: this.state.pending.length, stopped };
  }

  private save() {
    this.opts.storage.save(this.state);
    this.opts.onChange?.(this.state);
  }
}

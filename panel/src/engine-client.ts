// The panel's only way to the engine. It runs in UXP (Premiere) and in browsers, so it keeps to what both have:
// fetch with a string body, res.text() (UXP has no TextDecoder, so no streamed reading), AbortController for
// timeouts. Types come from the engine's api/ schemas, imported as types only, so this file adds nothing to a
// bundle by itself.
import type { z } from 'zod';
import type {
  FolderListing,
  Health,
  Job,
  JobRequestInput,
  MediaInfoSchema,
  Problem,
} from '../../engine/src/api/schemas';

export type MediaInfo = z.infer<typeof MediaInfoSchema>;

/**
 * The part of fetch this client uses. UXP's type package redeclares fetch as returning `any`, which would silently
 * untype every call, so the client declares the shape it relies on and works against that.
 */
export interface FetchResponseLike {
  readonly status: number;
  readonly ok: boolean;
  readonly headers: { get(name: string): string | null };
  text(): Promise<string>;
}
export interface FetchInitLike {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}
export type FetchLike = (url: string, init: FetchInitLike) => Promise<FetchResponseLike>;

export type EngineErrorCode = 'unreachable' | 'timeout' | 'not-reshoot' | 'http';

/** Every failure the client reports: a problem document from the engine, or what went wrong on the way there. */
export class EngineError extends Error {
  override name = 'EngineError';
  constructor(
    readonly code: EngineErrorCode,
    /** HTTP status; 0 when no response came back. */
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    /** The request field at fault, dotted (e.g. "source.out"), when the engine named one. */
    readonly field?: string,
    readonly issues?: { field: string; message: string }[],
  ) {
    super(`${title}: ${detail}`);
  }

  static fromProblem(p: Problem): EngineError {
    return new EngineError('http', p.status, p.title, p.detail, p.field, p.issues);
  }
}

export interface EngineClientOptions {
  /** e.g. http://127.0.0.1:7865 */
  baseUrl: string;
  token: string | null;
  /** Default: the global fetch. */
  fetch?: FetchLike;
  /** Per request, default 15 s. */
  timeoutMs?: number;
}

export const START_COMMAND = 'npx reshoot serve';
/** Registers the engine to start at every login of this user (systemd user unit, LaunchAgent, scheduled task). */
export const SERVICE_COMMAND = 'npx reshoot service install';

export class EngineClient {
  readonly baseUrl: string;
  readonly token: string | null;
  private readonly fetchFn: FetchLike;
  private readonly timeoutMs: number;

  constructor(opts: EngineClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.token = opts.token;
    // Bound to globalThis: browsers throw "Illegal invocation" when fetch is called as a method of another object.
    this.fetchFn = opts.fetch ?? ((url, init) => (globalThis as unknown as { fetch: FetchLike }).fetch(url, init));
    this.timeoutMs = opts.timeoutMs ?? 15_000;
  }

  health(): Promise<Health> {
    return this.request<Health>('GET', '/v1/health', undefined, 5_000).then((h) => {
      if (!h || (h as { ok?: unknown }).ok !== true || typeof h.version !== 'string') {
        throw new EngineError(
          'not-reshoot',
          200,
          'Not a Reshoot engine',
          `something else answers at ${this.baseUrl}; stop it or start the engine on another port (${START_COMMAND} --port N)`,
        );
      }
      return h;
    });
  }

  probe(path: string): Promise<MediaInfo> {
    return this.request('GET', `/v1/media/probe?path=${encodeURIComponent(path)}`, undefined, 30_000);
  }

  submit(request: JobRequestInput): Promise<Job> {
    return this.request('POST', '/v1/jobs', request, 30_000);
  }

  job(id: string): Promise<Job> {
    return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}`);
  }

  /** A folder inside the user's folders (the roots when `path` is absent): the web UI's file picker. */
  files(path?: string): Promise<FolderListing> {
    return this.request<FolderListing>('GET', path ? `/v1/files?path=${encodeURIComponent(path)}` : '/v1/files');
  }

  async jobs(): Promise<Job[]> {
    return (await this.request<{ jobs: Job[] }>('GET', '/v1/jobs')).jobs;
  }

  cancel(id: string): Promise<Job> {
    return this.request('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  /** For <video src>: the one place besides events and stills where the engine takes the token in the URL. */
  resultUrl(id: string): string {
    return this.withToken(`/v1/jobs/${encodeURIComponent(id)}/result`);
  }

  /**
   * Whether the job's result file is still there: true or false from the engine, undefined when it does not answer.
   * A <video> that fails says nothing about why.
   */
  async resultExists(id: string): Promise<boolean | undefined> {
    try {
      const res = await this.fetchFn(`${this.baseUrl}/v1/jobs/${encodeURIComponent(id)}/result`, {
        method: 'HEAD',
        headers: this.token ? { Authorization: `Bearer ${this.token}` } : {},
      });
      return res.ok;
    } catch {
      return undefined;
    }
  }

  /**
   * The newest live preview of a running job, base64 PNG as the event stream sends it: for hosts that poll (UXP).
   * Undefined before the first preview and once the job ended.
   */
  async latestPreview(id: string): Promise<string | undefined> {
    // request() asks for JSON and reads 204's empty body as undefined.
    const preview = await this.request<{ png: string } | undefined>(
      'GET',
      `/v1/jobs/${encodeURIComponent(id)}/preview`,
    );
    return preview?.png;
  }

  /** The result as a file to save (Content-Disposition: attachment), under its own name. */
  downloadUrl(id: string): string {
    return this.withToken(`/v1/jobs/${encodeURIComponent(id)}/result?download=1`);
  }

  /** Frame `frame` of the automatic mask a finished job wrote, as PNG. */
  matteUrl(id: string, frame: number): string {
    return this.withToken(`/v1/jobs/${encodeURIComponent(id)}/matte?frame=${frame}`);
  }

  eventsUrl(id: string): string {
    return this.withToken(`/v1/jobs/${encodeURIComponent(id)}/events`);
  }

  /** For <img src>: a PNG of the frame shown at t seconds. */
  stillUrl(path: string, t: number, maxWidth?: number): string {
    const q = `path=${encodeURIComponent(path)}&t=${encodeURIComponent(roundTime(t))}${maxWidth ? `&maxWidth=${Math.round(maxWidth)}` : ''}`;
    return this.withToken(`/v1/media/still?${q}`);
  }

  /**
   * Polls a job until it ends (UXP has no EventSource, and no TextDecoder to read an SSE stream by hand).
   * Network hiccups are reported and retried; the returned function stops polling.
   */
  watch(
    id: string,
    onJob: (job: Job) => void,
    opts: { intervalMs?: number; onError?: (e: EngineError) => void } = {},
  ): () => void {
    const interval = opts.intervalMs ?? 500;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    const tick = async () => {
      if (stopped) return;
      try {
        const job = await this.job(id);
        failures = 0;
        if (stopped) return;
        onJob(job);
        if (isTerminal(job.state)) return;
      } catch (e) {
        if (stopped) return;
        failures++;
        const err = toEngineError(e, this.baseUrl);
        opts.onError?.(err);
        // A job the engine no longer knows will not come back.
        if (err.status === 404) return;
      }
      // tick catches its own failures (they go to onError), so nothing waits on the promise.
      timer = setTimeout(() => void tick(), failures ? Math.min(5_000, interval * 2 ** failures) : interval);
    };
    void tick();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }

  private withToken(route: string): string {
    const sep = route.includes('?') ? '&' : '?';
    return `${this.baseUrl}${route}${this.token ? `${sep}token=${encodeURIComponent(this.token)}` : ''}`;
  }

  async request<T>(method: 'GET' | 'POST', route: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const controller = typeof AbortController === 'function' ? new AbortController() : undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller?.abort();
    }, timeoutMs);
    let res: FetchResponseLike;
    let text: string;
    try {
      res = await this.fetchFn(this.baseUrl + route, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller?.signal,
      });
      text = await res.text();
    } catch (e) {
      if (timedOut) {
        throw new EngineError(
          'timeout',
          0,
          'Engine did not answer',
          `${method} ${route.split('?')[0]} got no answer within ${Math.round(timeoutMs / 1000)} s; the engine may be overloaded or stuck; check its terminal`,
        );
      }
      throw toEngineError(e, this.baseUrl);
    } finally {
      clearTimeout(timer);
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (res.ok) {
      if (json === undefined && text) {
        throw new EngineError(
          'not-reshoot',
          res.status,
          'Unexpected answer',
          `${this.baseUrl} answered ${method} ${route.split('?')[0]} with something that is not JSON; is another program using this port?`,
        );
      }
      return json as T;
    }
    if (isProblem(json)) throw EngineError.fromProblem({ ...json, status: res.status });
    throw new EngineError(
      'http',
      res.status,
      `HTTP ${res.status}`,
      text ? text.slice(0, 300) : `the engine answered ${method} ${route.split('?')[0]} with status ${res.status}`,
    );
  }
}

export function isTerminal(state: Job['state']): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'canceled';
}

export function toEngineError(e: unknown, baseUrl: string): EngineError {
  if (e instanceof EngineError) return e;
  // fetch reports a refused connection as a bare TypeError ("Failed to fetch" / "fetch failed"), with nothing more specific.
  return new EngineError(
    'unreachable',
    0,
    'Engine not running',
    `nothing answers at ${baseUrl}. Start it in a terminal: ${START_COMMAND}, or have it start at every login: ${SERVICE_COMMAND}`,
  );
}

function isProblem(v: unknown): v is Problem {
  if (!v || typeof v !== 'object') return false;
  const p = v as Record<string, unknown>;
  return typeof p.title === 'string' && typeof p.detail === 'string';
}

// Microseconds: far inside any frame, and short in a URL.
function roundTime(t: number): string {
  return String(Math.max(0, Math.round(t * 1e6) / 1e6));
}

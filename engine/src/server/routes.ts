// The one list of /v1 routes. The app registers its handlers from it, the OpenAPI document is generated from it,
// and the security tests walk it, so a route cannot exist without auth, docs and tests knowing about it.

export type HttpMethod = 'GET' | 'POST';

export interface RouteSpec {
  readonly method: HttpMethod;
  /** Express path syntax (`:id`). */
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  /**
   * Also accept the token as `?token=`: EventSource, <video> and <img> cannot set an Authorization header. Tokens in
   * URLs leak into history and logs, so only the routes such elements load get this.
   */
  readonly queryToken: boolean;
  /** Takes a JSON body (Content-Type application/json required). */
  readonly jsonBody: boolean;
}

export const ROUTES = [
  {
    method: 'GET',
    path: '/v1/health',
    operationId: 'getHealth',
    summary: 'Engine version, model, execution provider and queue length',
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/models',
    operationId: 'listModels',
    summary: 'Models the engine knows',
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/workers',
    operationId: 'listWorkers',
    summary: 'Render nodes taking jobs from the queue (empty when jobs run in this engine)',
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'POST',
    path: '/v1/jobs',
    operationId: 'submitJob',
    summary: 'Queue an edit of a clip range',
    queryToken: false,
    jsonBody: true,
  },
  {
    method: 'GET',
    path: '/v1/jobs',
    operationId: 'listJobs',
    summary: 'All jobs, newest first',
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/jobs/:id',
    operationId: 'getJob',
    summary: 'One job',
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/jobs/:id/events',
    operationId: 'jobEvents',
    summary: 'Server-Sent Events of one job until it ends',
    queryToken: true,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/jobs/:id/preview',
    operationId: 'getJobPreview',
    summary: 'The newest live preview of a running job, as PNG (for clients that poll instead of reading events)',
    queryToken: true,
    jsonBody: false,
  },
  {
    method: 'POST',
    path: '/v1/jobs/:id/cancel',
    operationId: 'cancelJob',
    summary: 'Cancel a queued or running job',
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/jobs/:id/result',
    operationId: 'getJobResult',
    summary: 'The finished video file (Range requests supported; ?download=1 to save it as a file)',
    queryToken: true,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/jobs/:id/matte',
    operationId: 'getJobMatte',
    summary: 'One frame of the automatic mask a finished job wrote (result.mattePath), as PNG',
    queryToken: true,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/media/probe',
    operationId: 'probeMedia',
    summary: 'Container, streams, frame rate and frame count of a media file',
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/media/still',
    operationId: 'mediaStill',
    summary: 'One frame of a media file as PNG',
    queryToken: true,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/files',
    operationId: 'listFiles',
    summary:
      "Folders and video files inside the user's folders (home or RESHOOT_BROWSE_ROOTS), for the web UI's picker",
    queryToken: false,
    jsonBody: false,
  },
  {
    method: 'GET',
    path: '/v1/openapi.json',
    operationId: 'getOpenApi',
    summary: 'This API as an OpenAPI 3.1 document',
    queryToken: false,
    jsonBody: false,
  },
] as const satisfies readonly RouteSpec[];

export type RouteId = (typeof ROUTES)[number]['operationId'];

/** Every request whose path starts like this is API: token, Origin and content-type rules apply. Case-folded so `/V1/...` cannot slip past. */
export function isApiPath(path: string): boolean {
  const p = path.toLowerCase();
  return p === '/v1' || p.startsWith('/v1/');
}

/** The routes whose path template matches a concrete path (any method), with the same rules express applies (one segment per `:param`, trailing slash optional). */
export function routesForPath(path: string): RouteSpec[] {
  const segments = trimSlash(path).split('/');
  return ROUTES.filter((r) => {
    const template = r.path.split('/');
    return (
      template.length === segments.length &&
      template.every((t, i) => (t.startsWith(':') ? segments[i].length > 0 : t === segments[i]))
    );
  });
}

function trimSlash(p: string): string {
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/** `/v1/jobs/:id` → `/v1/jobs/{id}` */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

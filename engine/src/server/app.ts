// The engine's HTTP surface. No editing logic lives here: requests are checked (Host, Origin, token, content type),
// parsed with the api/ schemas, handed to the JobService, and answered with JSON or problem documents.
import * as path from 'node:path';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { z } from 'zod';
import { JobRequest, validationProblem } from '../api/schemas';
import { ProblemError, type JobService } from '../jobs/service';
import { browseRoots, listFolder } from './files';
import { buildOpenApi } from './openapi';
import { problem, problemFor, sendProblem } from './problems';
import { ROUTES, isApiPath, routesForPath, type RouteId, type RouteSpec } from './routes';
import { hostAllowed, makeLogRedactor, makeSecretRedactor, originAllowed, requestPort, TokenChecker } from './security';
import { jobNotFound, streamJobEvents } from './sse';

export { ROUTES } from './routes';

export interface AppOptions {
  token: string;
  /** The port the server listens on; the port a request actually arrived on wins, so 0 (ephemeral) works. */
  port: number;
  version: string;
  /** Origins allowed besides the engine's own (http://127.0.0.1:PORT, http://localhost:PORT, http://[::1]:PORT). "null" only if you must. */
  allowedOrigins?: string[];
  /** Extra accepted Host header values (`name:port`), for a deliberately non-loopback engine. */
  allowedHosts?: string[];
  /** Served at `/` (the web UI), behind the Host check but without a token. */
  staticDir?: string;
  log?: (line: string) => void;
  /** SSE heartbeat period (default 15 s). */
  heartbeatMs?: number;
  /** What GET /v1/files may show (default: RESHOOT_BROWSE_ROOTS, or the user's home). */
  browseRoots?: string[];
}

const BODY_LIMIT = '64kb';

// validationProblem prefixes each message with its field, so these messages start with the verb.
const PathParam = z
  .string({
    error: (iss) =>
      iss.input === undefined ? 'is required: give the absolute path of a media file' : 'give the path once, as text',
  })
  .min(1, 'is empty: give the absolute path of a media file')
  .max(4096, 'is longer than 4096 characters');
const TokenParam = z.string().optional();
const numberParam = () =>
  z
    .string({ error: 'give the number once' })
    .regex(/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/, 'must be a number')
    .transform(Number);
const ProbeQuery = z.object({ path: PathParam }).strict();
const FilesQuery = z.object({ path: PathParam.optional() }).strict();
const StillQuery = z
  .object({
    path: PathParam,
    t: numberParam()
      .pipe(z.number().finite('must be a finite number of seconds').min(0, 'must be 0 or more seconds'))
      .default(0),
    maxWidth: numberParam()
      .pipe(
        z
          .int('must be a whole number of pixels')
          .min(16, 'must be at least 16 pixels')
          .max(8192, 'must be at most 8192 pixels'),
      )
      .optional(),
    token: TokenParam,
  })
  .strict();

const MatteQuery = z
  .object({
    frame: numberParam().pipe(z.int('must be a whole frame number').min(0, 'must be 0 or more')),
    token: TokenParam,
  })
  .strict();

const RESULT_TYPES: Record<string, string> = { '.mp4': 'video/mp4', '.m4v': 'video/mp4', '.mov': 'video/quicktime' };

export function createApp(service: JobService, opts: AppOptions): express.Express {
  const app = express();
  const log = opts.log ?? (() => {});
  const redactBody = makeSecretRedactor(opts.token);
  const roots = opts.browseRoots ?? browseRoots();
  const redactLog = makeLogRedactor(opts.token);
  const logLine = (line: string) => log(redactLog(line));
  const tokens = new TokenChecker(opts.token);
  const allowedOrigins = opts.allowedOrigins ?? [];
  const allowedHosts = opts.allowedHosts ?? [];
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  const fail = (res: Response, p: Parameters<typeof sendProblem>[1], headers?: Record<string, string>) =>
    sendProblem(res, p, redactBody, headers);

  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  // Exact paths: `/V1/jobs` is not a route (and isApiPath still guards it).
  app.set('case sensitive routing', true);

  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('close', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      logLine(
        `${req.method} ${req.originalUrl} ${res.statusCode} ${ms.toFixed(1)}ms${res.writableFinished ? '' : ' (closed early)'}`,
      );
    });
    // The web UI URL carries the token; no page of ours may hand it on in a Referer, or be framed by another site.
    res.set({ 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer', 'X-Frame-Options': 'DENY' });
    next();
  });

  app.use((req, res, next) => {
    const port = requestPort(req, opts.port);
    if (hostAllowed(req.headers.host, port, allowedHosts)) return next();
    logLine(`refused Host ${JSON.stringify(req.headers.host ?? '')} on ${req.method} ${req.originalUrl}`);
    fail(
      res,
      problem(
        403,
        'host-not-allowed',
        'Host not allowed',
        `requests must use http://127.0.0.1:${port} or http://localhost:${port}; this engine refuses other host names so that web pages cannot reach it through DNS rebinding`,
      ),
    );
  });

  if (opts.staticDir) {
    const files = express.static(path.resolve(opts.staticDir), { dotfiles: 'ignore', index: ['index.html'] });
    app.use((req, res, next) => (isApiPath(req.path) ? next() : files(req, res, next)));
  }

  // Origin, preflight, token, content type: for every /v1 request, matched route or not, before any handler.
  app.use((req, res, next) => {
    if (!isApiPath(req.path)) return next();
    const port = requestPort(req, opts.port);
    res.vary('Origin');
    res.set('Cache-Control', 'no-store');
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!originAllowed(origin, port, allowedOrigins)) {
        logLine(`refused Origin ${JSON.stringify(origin)} on ${req.method} ${req.originalUrl}`);
        return fail(
          res,
          problem(
            403,
            'origin-not-allowed',
            'Origin not allowed',
            `requests from the web page at ${JSON.stringify(origin)} are refused; only the engine's own pages (http://127.0.0.1:${port}), the Premiere panel and configured origins may call the API`,
          ),
        );
      }
      res.set({
        'Access-Control-Allow-Origin': origin,
        'Access-Control-Expose-Headers': 'Location, Content-Range, Accept-Ranges, Content-Length, WWW-Authenticate',
      });
    }
    if (req.method === 'OPTIONS') {
      // The same answer for every path: a preflight needs no token, so a per-path answer would tell anyone which
      // routes (and job ids) exist. The request itself is then judged by its route and token.
      const methods = API_METHODS;
      res.set({
        'Access-Control-Allow-Methods': methods.join(', '),
        'Access-Control-Allow-Headers': 'Authorization, Content-Type, Range, Last-Event-ID',
        'Access-Control-Max-Age': '600',
        Allow: [...methods, 'OPTIONS'].join(', '),
      });
      return res.status(204).end();
    }
    const auth = tokens.check(req);
    if (!auth.ok)
      return fail(res, problem(401, 'unauthorized', 'Token required', auth.detail), {
        'WWW-Authenticate': 'Bearer realm="reshoot"',
      });
    // A body that is not JSON would be a CORS "simple request" a foreign page can send without preflight; refuse it.
    const declaresJson = req.is('application/json') === 'application/json';
    const route = routesForPath(req.path).find((r) => r.method === req.method);
    if ((hasBody(req) || route?.jsonBody) && !declaresJson) {
      return fail(
        res,
        problem(
          415,
          'unsupported-media-type',
          'Unsupported media type',
          `send the body as JSON with "Content-Type: application/json" (got ${JSON.stringify(req.headers['content-type'] ?? 'none')})`,
        ),
      );
    }
    next();
  });

  const jsonBody = express.json({ limit: BODY_LIMIT, type: 'application/json' });
  // A burst of submissions is read in one poll phase of the event loop. Validating each there (zod, then the queue
  // bound) back to back would keep a health request that arrived with them waiting for all of them; one per
  // event-loop turn lets it through between two.
  let submissionTurn = Promise.resolve();
  const handlers: Record<RouteId, RequestHandler> = {
    getHealth: (_req, res) => {
      res.json(service.health());
    },
    listModels: (_req, res) => {
      res.json({ models: service.models() });
    },
    listWorkers: async (_req, res) => {
      res.json({ workers: await service.workers() });
    },
    submitJob: async (req, res) => {
      const turn = submissionTurn.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
      submissionTurn = turn;
      await turn;
      const parsed = JobRequest.safeParse(req.body);
      if (!parsed.success) throw new ProblemError(validationProblem(parsed.error));
      const job = await service.submit(parsed.data);
      res
        .status(202)
        .location(`/v1/jobs/${encodeURIComponent(job.id)}`)
        .json(job);
    },
    listJobs: (_req, res) => {
      res.json({ jobs: service.list() });
    },
    getJob: (req, res) => {
      const id = String(req.params.id);
      const job = service.get(id);
      if (!job) throw jobNotFound(id);
      res.json(job);
    },
    jobEvents: (req, res) => streamJobEvents(app, service, heartbeatMs, req, res),
    getJobPreview: (req, res) => {
      const png = service.latestPreview(String(req.params.id));
      // no-store: the same URL shows a newer picture at every step.
      res.set('Cache-Control', 'no-store');
      if (!png) res.status(204).end();
      // As JSON, base64 as the event stream sends it: UXP can read text but has no way to turn bytes into an image.
      else if (req.accepts(['image/png', 'application/json']) === 'application/json')
        res.json({ png: png.toString('base64') });
      else res.type('image/png').send(png);
    },
    cancelJob: (req, res) => {
      res.json(service.cancel(String(req.params.id)));
    },
    getJobResult: async (req, res) => {
      const file = path.resolve(service.resultFile(String(req.params.id)));
      const type = RESULT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
      // ?download=1: save rather than play. A browser page cannot reach the file on disk, so this is how the web UI
      // hands it over; the file is still the job's own result, never a path from the request.
      if (req.query.download === '1') res.attachment(path.basename(file));
      await new Promise<void>((resolve, reject) => {
        // dotfiles 'allow': results often live under ~/.local/share, which send would otherwise answer with 404.
        res.sendFile(
          file,
          { dotfiles: 'allow', headers: { 'Content-Type': type, 'Cache-Control': 'no-cache' } },
          (err?: Error) => {
            if (!err) return resolve();
            if (res.headersSent) return resolve();
            const status = (err as { status?: number }).status;
            if (status === 404)
              return reject(
                new ProblemError(
                  problem(
                    410,
                    'result-gone',
                    'Result removed',
                    `${file} no longer exists; it was moved or deleted after the job finished`,
                  ),
                ),
              );
            reject(err);
          },
        );
      });
    },
    listFiles: (req, res) => {
      const q = parseQuery(FilesQuery, req);
      res.json(listFolder(q.path, roots));
    },
    // The viewer's matte overlay: only the PNGs the job itself wrote, named by frame, so the route reads no path a
    // client chooses.
    getJobMatte: async (req, res) => {
      const id = String(req.params.id);
      const q = parseQuery(MatteQuery, req);
      const job = service.get(id);
      if (!job) throw jobNotFound(id);
      const pattern = job.result?.mattePath;
      if (job.state !== 'succeeded' || !pattern)
        throw new ProblemError(
          problem(
            404,
            'no-matte',
            'No matte',
            `job ${id} wrote no automatic mask (it used another mask, or has not succeeded)`,
          ),
        );
      if (q.frame >= job.result!.frames)
        throw new ProblemError(
          problem(
            404,
            'no-matte',
            'No such frame',
            `the result of job ${id} has ${job.result!.frames} frames, from 0`,
            'frame',
          ),
        );
      const file = path.resolve(
        pattern.replace(/%0?(\d*)d/, (_m, w: string) => String(q.frame).padStart(Number(w) || 0, '0')),
      );
      await new Promise<void>((resolve, reject) => {
        res.sendFile(
          file,
          { dotfiles: 'allow', headers: { 'Content-Type': 'image/png', 'Cache-Control': 'no-cache' } },
          (err?: Error) => {
            if (!err || res.headersSent) return resolve();
            if ((err as { status?: number }).status === 404)
              return reject(
                new ProblemError(
                  problem(
                    410,
                    'matte-gone',
                    'Matte removed',
                    `${file} no longer exists; it was moved or deleted after the job finished`,
                  ),
                ),
              );
            reject(err);
          },
        );
      });
    },
    probeMedia: async (req, res) => {
      const q = parseQuery(ProbeQuery, req);
      res.json(await service.probe(q.path));
    },
    mediaStill: async (req, res) => {
      const q = parseQuery(StillQuery, req);
      const png = await service.still(q.path, q.t, q.maxWidth);
      res.type('image/png').send(png);
    },
    getOpenApi: (_req, res) => {
      res.json(openapi);
    },
  };
  const openapi = buildOpenApi(opts.version);

  for (const r of ROUTES as readonly RouteSpec[]) {
    const chain: RequestHandler[] = r.jsonBody
      ? [jsonBody, handlers[r.operationId as RouteId]]
      : [handlers[r.operationId as RouteId]];
    if (r.method === 'GET') app.get(r.path, ...chain);
    else app.post(r.path, ...chain);
  }

  app.use((req, res) => {
    if (!isApiPath(req.path))
      return fail(
        res,
        problem(
          404,
          'not-found',
          'Not found',
          `nothing at ${req.path}; the API lives under /v1 (see /v1/openapi.json)`,
        ),
      );
    const methods = allowedMethods(req.path);
    if (methods.length > 0) {
      return fail(
        res,
        problem(
          405,
          'method-not-allowed',
          'Method not allowed',
          `${req.path} answers ${methods.join(' and ')}, not ${req.method}`,
        ),
        { Allow: methods.join(', ') },
      );
    }
    fail(
      res,
      problem(
        404,
        'not-found',
        'No such API route',
        `there is no route ${req.method} ${req.path}; the routes are listed in GET /v1/openapi.json`,
      ),
    );
  });

  app.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      logLine(`error after the response started on ${req.method} ${req.originalUrl}: ${describe(err)}`);
      return next(err);
    }
    const p = problemFor(err);
    if (p) return fail(res, p);
    logLine(`internal error on ${req.method} ${req.originalUrl}: ${describe(err)}`);
    fail(
      res,
      problem(
        500,
        'internal-error',
        'Internal error',
        'the engine failed unexpectedly while handling this request; the engine log has the details. Please report it with that log',
      ),
    );
  });

  return app;
}

function parseQuery<T extends z.ZodType>(schema: T, req: Request): z.output<T> {
  const parsed = schema.safeParse(req.query);
  if (!parsed.success) throw new ProblemError(validationProblem(parsed.error, 'query'));
  return parsed.data;
}

const API_METHODS = [...new Set(ROUTES.map((r) => r.method))];

function allowedMethods(p: string): string[] {
  return [...new Set(routesForPath(p).map((r) => r.method))];
}

// Content-Length: 0 is what fetch sends for a bodiless POST; only real bytes count as a body.
function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
}

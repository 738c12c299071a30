// GET /v1/openapi.json: components generated from the api/ zod schemas, paths from ROUTES plus the hand-written
// table below. The table is keyed by operationId, so the compiler refuses a route without documentation.
import { z } from 'zod';
import {
  FolderListing,
  Health,
  Job,
  JobRequest,
  MediaInfoSchema,
  ModelEntry,
  Problem,
  WorkerStatus,
  type JobEvent,
} from '../api/schemas';
import { ROUTES, openApiPath, type RouteId } from './routes';

type Json = Record<string, unknown>;

// JobEvent is a TypeScript type in the contract; this mirrors it for the document and the check below keeps them equal.
const JobEventDoc = z.discriminatedUnion('type', [
  z.object({ type: z.literal('job'), job: Job }).describe('First event: the job as it is when the stream opens'),
  z.object({ type: z.literal('progress'), job: Job }),
  z.object({ type: z.literal('preview'), jobId: z.string(), png: z.string().describe('base64 PNG') }),
  z.object({ type: z.literal('done'), job: Job }).describe('Last event: the finished job; the stream ends after it'),
]);
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const jobEventMatchesContract: Same<Exclude<z.infer<typeof JobEventDoc>, { type: 'job' }>, JobEvent> = true;
void jobEventMatchesContract;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json, description: string) => ({ description, content: { 'application/json': { schema } } });
const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ref('Problem') } },
});
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' }, description: 'Job id' };
const pathParam = {
  name: 'path',
  in: 'query',
  required: true,
  schema: { type: 'string', minLength: 1, maxLength: 4096 },
  description: "Absolute path of a media file on the engine's machine",
};

const DOCS: Record<RouteId, Json> = {
  getHealth: { responses: { 200: json(ref('Health'), 'The engine is up') } },
  listModels: {
    responses: {
      200: json(
        { type: 'object', properties: { models: { type: 'array', items: ref('ModelEntry') } }, required: ['models'] },
        'Known models',
      ),
    },
  },
  listWorkers: {
    responses: {
      200: json(
        {
          type: 'object',
          properties: { workers: { type: 'array', items: ref('WorkerStatus') } },
          required: ['workers'],
        },
        'Render nodes that announced themselves within the last heartbeats',
      ),
    },
  },
  submitJob: {
    requestBody: { required: true, content: { 'application/json': { schema: ref('JobRequest') } } },
    responses: {
      202: {
        ...json(ref('Job'), 'Queued'),
        headers: { Location: { schema: { type: 'string' }, description: '/v1/jobs/{id}' } },
      },
      400: problemResponse(
        'The request does not match JobRequest, or the body is not valid JSON; `field` names the culprit',
      ),
      409: problemResponse('Another job is writing the same output file, or it exists and overwrite is false'),
      413: problemResponse('Body larger than 64 kB'),
      415: problemResponse('Content-Type is not application/json'),
      422: problemResponse('The media, range, mask or output does not work (file missing, range past the end, …)'),
      429: problemResponse('Queue full'),
    },
  },
  listJobs: {
    responses: {
      200: json(
        { type: 'object', properties: { jobs: { type: 'array', items: ref('Job') } }, required: ['jobs'] },
        'All jobs, newest first',
      ),
    },
  },
  getJob: {
    parameters: [idParam],
    responses: { 200: json(ref('Job'), 'The job'), 404: problemResponse('No such job') },
  },
  jobEvents: {
    parameters: [idParam],
    description:
      'Events `job` (snapshot), `progress`, `preview` and `done`; each `data` is a JobEvent as JSON. The stream ends after `done`; a comment arrives every 15 s. A reconnect (Last-Event-ID) to a finished job gets 204, which stops EventSource.',
    responses: {
      200: { description: 'Event stream', content: { 'text/event-stream': { schema: ref('JobEvent') } } },
      204: { description: 'The job finished before this reconnect' },
      404: problemResponse('No such job'),
    },
  },
  getJobPreview: {
    parameters: [idParam],
    responses: {
      200: {
        description:
          'The newest preview; with Accept: application/json, `{ png }` in base64 as the event stream sends it',
        content: {
          'image/png': { schema: { type: 'string', format: 'binary' } },
          'application/json': {
            schema: { type: 'object', properties: { png: { type: 'string' } }, required: ['png'] },
          },
        },
      },
      204: { description: 'No preview yet, or the job ended' },
      404: problemResponse('No such job'),
    },
  },
  cancelJob: {
    parameters: [idParam],
    responses: {
      200: json(ref('Job'), 'Canceled (a running job stops at its next step and then reports `done`)'),
      404: problemResponse('No such job'),
      409: problemResponse('The job already finished'),
    },
  },
  getJobResult: {
    parameters: [idParam, { name: 'Range', in: 'header', required: false, schema: { type: 'string' } }],
    responses: {
      200: {
        description: 'The video',
        content: {
          'video/mp4': { schema: { type: 'string', format: 'binary' } },
          'video/quicktime': { schema: { type: 'string', format: 'binary' } },
        },
      },
      206: { description: 'Part of the video' },
      404: problemResponse('No such job'),
      409: problemResponse('The job has not succeeded'),
      410: problemResponse('The result file was removed'),
    },
  },
  listFiles: {
    parameters: [
      {
        name: 'path',
        in: 'query',
        required: false,
        description: 'An absolute folder inside a root; absent: the roots',
        schema: { type: 'string' },
      },
    ],
    responses: {
      200: json(
        { type: 'object' },
        'The folder: its folders and video files (hidden ones left out), its parent, the roots',
      ),
      400: problemResponse('Bad query'),
      403: problemResponse('The folder is outside the roots, or leads outside them through a link'),
      404: problemResponse('No such folder'),
      422: problemResponse('A relative path, or a file'),
    },
  },
  probeMedia: {
    parameters: [pathParam],
    responses: {
      200: json(ref('MediaInfo'), 'What the file holds'),
      400: problemResponse('Bad query'),
      422: problemResponse('The file is missing or not a video'),
    },
  },
  getJobMatte: {
    parameters: [
      idParam,
      {
        name: 'frame',
        in: 'query',
        required: true,
        schema: { type: 'integer', minimum: 0 },
        description: 'Frame of the result, from 0',
      },
    ],
    responses: {
      200: { description: 'The matte', content: { 'image/png': { schema: { type: 'string', format: 'binary' } } } },
      400: problemResponse('Bad query'),
      404: problemResponse('No such job, or it wrote no matte, or no such frame'),
      410: problemResponse('The matte was moved or deleted after the job finished'),
    },
  },
  mediaStill: {
    parameters: [
      pathParam,
      {
        name: 't',
        in: 'query',
        required: false,
        schema: { type: 'number', minimum: 0, default: 0 },
        description: 'Seconds from the start of the file',
      },
      { name: 'maxWidth', in: 'query', required: false, schema: { type: 'integer', minimum: 16, maximum: 8192 } },
    ],
    responses: {
      200: { description: 'The frame', content: { 'image/png': { schema: { type: 'string', format: 'binary' } } } },
      400: problemResponse('Bad query'),
      422: problemResponse('The file is missing or not a video'),
    },
  },
  getOpenApi: { responses: { 200: json({ type: 'object' }, 'This document') } },
};

function components(): Json {
  const strip = (schemas: Record<string, Json>) =>
    Object.fromEntries(Object.entries(schemas).map(([k, { $schema: _s, $id: _i, ...rest }]) => [k, rest]));
  const uri = (id: string) => `#/components/schemas/${id}`;
  // Requests are documented as clients write them (defaults optional), responses as the engine fills them in.
  const input = z.registry<{ id: string }>();
  input.add(JobRequest, { id: 'JobRequest' });
  const output = z.registry<{ id: string }>();
  output
    .add(Job, { id: 'Job' })
    .add(Health, { id: 'Health' })
    .add(ModelEntry, { id: 'ModelEntry' })
    .add(WorkerStatus, { id: 'WorkerStatus' })
    .add(MediaInfoSchema, { id: 'MediaInfo' })
    .add(FolderListing, { id: 'FolderListing' })
    .add(Problem, { id: 'Problem' })
    .add(JobEventDoc, { id: 'JobEvent' });
  const inSchemas = z.toJSONSchema(input, { io: 'input', uri, unrepresentable: 'any' }).schemas as Record<string, Json>;
  const outSchemas = z.toJSONSchema(output, { io: 'output', uri, unrepresentable: 'any' }).schemas as Record<
    string,
    Json
  >;
  return { ...strip(outSchemas), ...strip(inSchemas) };
}

export function buildOpenApi(version: string): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const r of ROUTES) {
    const tokenInQuery = r.queryToken ? [{ bearer: [] }, { tokenQuery: [] }] : [{ bearer: [] }];
    const op = DOCS[r.operationId];
    const responses = {
      ...(op.responses as Json),
      401: problemResponse('Missing or wrong token'),
      403: problemResponse('Host header not loopback, or Origin not allowed'),
    };
    (paths[openApiPath(r.path)] ??= {})[r.method.toLowerCase()] = {
      operationId: r.operationId,
      summary: r.summary,
      security: tokenInQuery,
      ...op,
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Reshoot engine',
      version,
      description:
        "Local engine of the Reshoot Premiere Pro panel. Bound to 127.0.0.1; every call needs the bearer token from the engine's token file. Errors are RFC 9457 problem documents.",
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: components(),
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'The token from <config folder>/token' },
        tokenQuery: {
          type: 'apiKey',
          in: 'query',
          name: 'token',
          description:
            'Only for job events, job result, job matte and media still, which browser elements load without headers',
        },
      },
    },
  };
}

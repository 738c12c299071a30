// Every error the server answers is an RFC 9457 problem document with a sentence that says what to do.
import type { Response } from 'express';
import { z } from 'zod';
import { validationProblem, type Problem } from '../api/schemas';
import { ProblemError } from '../jobs/service';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export function problem(status: number, slug: string, title: string, detail: string, field?: string): Problem {
  return { type: `https://reshoot.dev/problems/${slug}`, title, status, detail, ...(field ? { field } : {}) };
}

export function sendProblem(
  res: Response,
  p: Problem,
  redact: (s: string) => string,
  headers: Record<string, string> = {},
): void {
  res
    .status(p.status)
    .set(headers)
    .set('Cache-Control', 'no-store')
    .type(PROBLEM_CONTENT_TYPE)
    .send(redact(JSON.stringify(p)));
}

/** jest and worker bundles can load a module twice; recognise a ProblemError by shape as well as by class. */
export function asProblemError(err: unknown): ProblemError | undefined {
  if (err instanceof ProblemError) return err;
  if (err instanceof Error && err.name === 'ProblemError' && typeof (err as { problem?: unknown }).problem === 'object')
    return err as ProblemError;
  return undefined;
}

interface HttpishError {
  type?: string;
  status?: number;
  statusCode?: number;
  expose?: boolean;
  message?: string;
  limit?: number;
}

/**
 * Maps anything a handler or middleware threw to the problem to answer, or undefined for a genuine server fault
 * (the caller logs it and answers a generic 500, so no stack or internal path leaks).
 */
export function problemFor(err: unknown): Problem | undefined {
  const pe = asProblemError(err);
  if (pe) return pe.problem;
  if (err instanceof z.ZodError) return validationProblem(err);
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as HttpishError;
  switch (e.type) {
    case 'entity.too.large':
      return problem(
        413,
        'body-too-large',
        'Request body too large',
        `the request body is larger than ${formatBytes(e.limit ?? 65536)}; a job request is a few hundred bytes of JSON, so send file paths rather than file contents`,
      );
    case 'entity.parse.failed':
      return problem(
        400,
        'malformed-json',
        'Malformed JSON',
        `body is not valid JSON: ${withoutBodyExcerpt(e.message ?? 'parse error')}; send one JSON object with double-quoted names and plain numbers (no NaN, Infinity or trailing commas)`,
      );
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return problem(
        415,
        'unsupported-media-type',
        'Unsupported encoding',
        `${e.message ?? 'unsupported encoding'}; send UTF-8 JSON without Content-Encoding`,
      );
    case 'request.aborted':
      return problem(
        400,
        'request-aborted',
        'Request aborted',
        'the client closed the connection before the body arrived',
      );
  }
  const status = e.status ?? e.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500 && e.expose !== false) {
    return problem(status, 'bad-request', 'Bad request', e.message ?? 'the request could not be understood');
  }
  return undefined;
}

// V8 quotes the start of the offending text in JSON.parse messages; whatever the client sent stays out of our answer.
function withoutBodyExcerpt(message: string): string {
  return message.replace(/,\s*(?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/s, ' in the body');
}

function formatBytes(n: number): string {
  return n >= 1024 ? `${Math.round(n / 1024)} kB` : `${n} bytes`;
}

// Whatever went wrong, the UI shows a title, a sentence saying what to do, and (when known) the field at fault.
import type { z } from 'zod';
import { validationProblem } from '../../../engine/src/api/schemas';
import { EngineError } from '../engine-client';

export interface Problemish {
  title: string;
  detail: string;
  field?: string;
  /** Every field at fault, when validation found several. */
  issues?: { field: string; message: string }[];
}

/** A problem found on this side (the host, the form), in the same shape as the engine's problem documents. */
export class FieldError extends Error {
  override name = 'FieldError';
  constructor(
    readonly title: string,
    readonly detail: string,
    readonly field?: string,
    readonly issues?: { field: string; message: string }[],
  ) {
    super(`${title}: ${detail}`);
  }

  static fromZod(error: z.ZodError, what?: string): FieldError {
    const p = validationProblem(error, what);
    return new FieldError(p.title, p.detail, p.field, p.issues);
  }
}

export function describeError(e: unknown): Problemish {
  if (e instanceof EngineError || e instanceof FieldError)
    return { title: e.title, detail: e.detail, field: e.field, issues: e.issues };
  if (e instanceof Error) return { title: 'Something went wrong', detail: e.message };
  return { title: 'Something went wrong', detail: String(e) };
}

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

/**
 * The API's titles name the HTTP problem ("Invalid request"); the panel says what the editor has to look at. The
 * detail and the fields at fault stay as they came: they already speak of In, Out and the settings by name.
 */
const TITLES: Record<string, string> = {
  'Invalid request': 'Check the highlighted settings',
  'Invalid range': 'Check In and Out',
  'Bad range': 'Check In and Out',
};

export function describeError(e: unknown): Problemish {
  if (e instanceof EngineError || e instanceof FieldError)
    return { title: TITLES[e.title] ?? e.title, detail: e.detail, field: e.field, issues: e.issues };
  if (e instanceof Error) return { title: 'Something went wrong', detail: e.message };
  return { title: 'Something went wrong', detail: String(e) };
}

// One error type for everything media: the server turns `code` into a problem document and shows `message`
// to an editor, so each message names the file and says what to do about it.

export type MediaErrorCode =
  | 'not-found'
  | 'not-a-file'
  | 'not-media'
  | 'not-local'
  | 'no-video'
  | 'still-image'
  | 'unsupported-codec'
  | 'bad-range'
  | 'ffmpeg-missing'
  | 'ffmpeg-failed'
  | 'bad-mask'
  | 'output-exists'
  | 'output-not-writable'
  | 'output-not-allowed'
  | 'path-too-long'
  | 'disk-full';

export class MediaError extends Error {
  readonly code: MediaErrorCode;
  /** The media file the error is about, when there is one. */
  readonly file?: string;

  constructor(code: MediaErrorCode, message: string, options: { file?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MediaError';
    this.code = code;
    this.file = options.file;
  }
}

export function isMediaError(e: unknown, code?: MediaErrorCode): e is MediaError {
  return e instanceof MediaError && (code === undefined || e.code === code);
}

// The export presets the panel ships in its plugin folder (presets/, packed into the .ccx by
// scripts/package-panel.ts) for clips that have to be rendered through Premiere. exportSequence needs a preset in
// practice (the documentation describes only the call with neither file nor preset; Adobe's sample always passes
// an .epr), and the file's extension comes from EncoderManager.getExportFileExtension, not from a guess.

export interface ExportPreset {
  label: string;
  file: string;
}

export const PRESETS_FOLDER = 'presets';

/**
 * Tried in this order. ProRes 422 HQ first: the render is an intermediate that the engine decodes and re-encodes,
 * and a visually lossless 10-bit intermediate adds no compression artefacts for the diffusion edit to reproduce.
 * H.264 (high bitrate) is the fallback where ProRes export is unavailable. Both match the sequence's frame size
 * and rate (the subsequence has the sequence's settings).
 */
export const EXPORT_PRESETS: readonly ExportPreset[] = [
  { label: 'ProRes 422 HQ', file: 'Reshoot ProRes 422 HQ.epr' },
  { label: 'H.264 high quality', file: 'Reshoot H.264 High Quality.epr' },
];

/** An extension as getExportFileExtension gives it ("mov", ".mp4"), or null when it is not a plain extension. */
export function cleanExtension(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  const extension = raw.trim().replace(/^\./, '');
  return /^[A-Za-z0-9]{1,8}$/.test(extension) ? extension.toLowerCase() : null;
}

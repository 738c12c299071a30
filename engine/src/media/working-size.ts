// Diffusion models are trained at one resolution and degrade away from it in both directions, so clips are
// brought to the model's native size whichever way that goes; the result is scaled back to the source size
// on encode.

/**
 * Size at which a width×height frame is processed: the short side becomes `native`, the aspect ratio is kept,
 * and each side is rounded to a multiple of `multiple` (the VAE's downsampling factor), never below it.
 */
export function workingSize(
  width: number,
  height: number,
  native = 512,
  multiple = 8,
): { width: number; height: number } {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
    ['native', native],
    ['multiple', multiple],
  ] as const) {
    if (!Number.isFinite(v) || v <= 0) throw new RangeError(`workingSize: ${name} must be a positive number, got ${v}`);
  }
  if (!Number.isInteger(multiple)) throw new RangeError(`workingSize: multiple must be an integer, got ${multiple}`);
  const scale = native / Math.min(width, height);
  const round = (v: number) => Math.max(multiple, Math.round((v * scale) / multiple) * multiple);
  return { width: round(width), height: round(height) };
}

// Fault injection for the reliability suites, like the compute worker's RESHOOT_FAULT=worker-exit-at-progress:N:
//   encode-disk-full   ffmpeg writes the result to /dev/full, so the kernel's own ENOSPC comes back through the real
//                      error path (for machines where a small tmpfs cannot be mounted)
//   slow-decode:MS     each decoded chunk is held MS before it is handed on (a window to kill or cancel in decoding)
//   slow-encode:MS     each encoded chunk, and the final rename, wait MS first (a window to kill or cancel in writing)
// Read on every call, so only an engine started with the variable is affected. Unset in normal use.

export interface MediaFaults {
  diskFull: boolean;
  slowDecodeMs: number;
  slowEncodeMs: number;
}

export function mediaFaults(): MediaFaults {
  const spec = process.env.RESHOOT_FAULT ?? '';
  const ms = (name: string) => Number(new RegExp(`(?:^|,)${name}:(\\d+)(?:,|$)`).exec(spec)?.[1] ?? 0);
  return {
    diskFull: /(?:^|,)encode-disk-full(?:,|$)/.test(spec),
    slowDecodeMs: ms('slow-decode'),
    slowEncodeMs: ms('slow-encode'),
  };
}

export function pause(ms: number): Promise<void> {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}

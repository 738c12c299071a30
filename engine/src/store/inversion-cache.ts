// Inverted trajectories on disk, so re-editing the same range with a new prompt skips the inversion and, with the
// direct-inversion source steps stored beside it, the source branch too. Keyed by what determines the trajectory:
// the file's identity, the frames, the working size, the model and the inversion parameters. Bounded in bytes; least
// recently used entries go first.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { removeQuietly, renameIntoPlaceSync } from '../config/atomic-rename';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../config/private-dir';
import type { InvertedTrajectory } from '../editing/types';

export interface TrajectoryKey {
  file: string;
  /** The name the file goes by where several machines share the cache (a render farm's engine path); default: its path here. */
  name?: string;
  startFrame: number;
  frameCount: number;
  width: number;
  height: number;
  modelDir: string;
  sourcePrompt: string;
  steps: number;
  strength: number;
}

// Version 2 adds the direct-inversion source steps after the levels; version-1 entries read as damaged, i.e. misses.
const MAGIC = 'RSHTRAJ2';

export class InversionCache {
  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    // An engine killed mid-put leaves its temp file; sweep at start rather than at the next put, which may never come.
    this.entries();
  }

  /** Identity of the source file: path plus size and modification time, so a re-rendered file misses. */
  static keyOf(k: TrajectoryKey): string {
    const st = fs.statSync(k.file);
    const { name, ...rest } = k;
    const identity = { ...rest, file: name ?? path.resolve(k.file), size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
    return crypto.createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 40);
  }

  private fileOf(key: string): string {
    return path.join(this.dir, `${key}.traj`);
  }

  get(key: string): InvertedTrajectory | undefined {
    const file = this.fileOf(key);
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch {
      return undefined;
    }
    try {
      if (buf.subarray(0, 8).toString('latin1') !== MAGIC) throw new Error('bad magic');
      const headerLen = buf.readUInt32LE(8);
      const header = JSON.parse(buf.subarray(12, 12 + headerLen).toString('utf8')) as Omit<
        InvertedTrajectory,
        'latents' | 'sourceSteps'
      > & {
        levels: number;
        sourceSteps: { guidance: number | null; levels: number } | null;
      };
      const per = header.n * header.channels * header.height * header.width;
      let offset = 12 + headerLen;
      offset += (4 - (offset % 4)) % 4;
      const stepLevels = header.sourceSteps?.levels ?? 0;
      if (stepLevels && stepLevels !== header.levels - 1) throw new Error('source steps do not match the levels');
      if (buf.length !== offset + (header.levels + stepLevels) * per * 4) throw new Error('truncated');
      // Copy out of the file buffer: each level must own an ArrayBuffer to be transferable to the worker.
      const level = (i: number) =>
        new Float32Array(
          buf.buffer.slice(buf.byteOffset + offset + i * per * 4, buf.byteOffset + offset + (i + 1) * per * 4),
        );
      const latents = Array.from({ length: header.levels }, (_, k) => level(k));
      const sourceSteps = header.sourceSteps && {
        guidance: header.sourceSteps.guidance,
        levels: Array.from({ length: stepLevels }, (_, k) => level(header.levels + k)),
      };
      const { levels: _levels, sourceSteps: _steps, ...rest } = header;
      const now = new Date();
      try {
        fs.utimesSync(file, now, now);
      } catch {
        // Only the eviction order suffers.
      }
      return sourceSteps ? { ...rest, latents, sourceSteps } : { ...rest, latents };
    } catch {
      // A damaged entry (e.g. the engine died while an older version wrote it) is a miss, not an error; so is one
      // that cannot be removed yet (Windows: still held open), which the next put overwrites.
      removeQuietly(file);
      return undefined;
    }
  }

  /**
   * Stores a trajectory, or quietly does not: the cache only saves time, so a full drive or a vanished folder must not
   * fail the job that produced it. Returns whether the entry was stored.
   */
  put(key: string, t: InvertedTrajectory): boolean {
    try {
      this.write(key, t);
      return true;
    } catch {
      return false;
    }
  }

  private write(key: string, t: InvertedTrajectory): void {
    const { latents, sourceSteps, ...rest } = t;
    const steps = sourceSteps && { guidance: sourceSteps.guidance, levels: sourceSteps.levels.length };
    const header = Buffer.from(JSON.stringify({ ...rest, levels: latents.length, sourceSteps: steps ?? null }), 'utf8');
    let offset = 12 + header.length;
    const pad = (4 - (offset % 4)) % 4;
    offset += pad;
    const prefix = Buffer.alloc(offset);
    prefix.write(MAGIC, 0, 'latin1');
    prefix.writeUInt32LE(header.length, 8);
    header.copy(prefix, 12);
    const file = this.fileOf(key);
    const tmp = `${file}.partial-${process.pid}`;
    try {
      const fd = fs.openSync(tmp, 'w', PRIVATE_FILE_MODE);
      try {
        fs.writeSync(fd, prefix);
        for (const level of [...latents, ...(sourceSteps?.levels ?? [])])
          fs.writeSync(fd, new Uint8Array(level.buffer, level.byteOffset, level.byteLength));
      } finally {
        fs.closeSync(fd);
      }
      renameIntoPlaceSync(tmp, file);
    } catch (err) {
      removeQuietly(tmp);
      throw err;
    }
    // Stored: what eviction cannot remove now (Windows: held open) is tried again at the next put.
    try {
      this.evict();
    } catch {
      // Over budget until the next put, not a lost entry.
    }
  }

  /** Bytes in use, after removing stale temp files. */
  sizeBytes(): number {
    return this.entries().reduce((s, e) => s + e.size, 0);
  }

  private entries(): { file: string; size: number; mtimeMs: number }[] {
    const out = [];
    for (const name of fs.readdirSync(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.includes('.partial-')) {
        // A temp file still held open (Windows) is swept next time; it must not stop the engine starting.
        removeQuietly(file);
        continue;
      }
      if (!name.endsWith('.traj')) continue;
      let st: fs.Stats;
      try {
        st = fs.statSync(file);
      } catch {
        continue; // removed meanwhile (another engine evicting)
      }
      out.push({ file, size: st.size, mtimeMs: st.mtimeMs });
    }
    return out;
  }

  private evict(): void {
    const entries = this.entries().sort((a, b) => b.mtimeMs - a.mtimeMs);
    let total = 0;
    for (const e of entries) {
      total += e.size;
      if (total > this.maxBytes) removeQuietly(e.file);
    }
  }
}

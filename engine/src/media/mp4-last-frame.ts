// Gives the last video frame of an MP4/MOV its duration. Frames written with their own timestamps (variable frame
// rate) carry no duration ffmpeg could infer for the last one: ffmpeg 4 writes that sample zero-length (and the
// edit list then ends at its start, so decoders drop it), 5.1 one tick long. The sample table is patched in place:
// the last stts delta, the media, track and movie durations and the edit list's length; no box changes size, so
// nothing moves in the file.

import { open } from 'node:fs/promises';

interface Box {
  type: string;
  /** Offset of the box's content (after its header), and of its end. */
  start: number;
  end: number;
}

function boxes(buf: Buffer, from: number, to: number): Box[] {
  const out: Box[] = [];
  let at = from;
  while (at + 8 <= to) {
    let size = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    let header = 8;
    if (size === 1) {
      size = Number(buf.readBigUInt64BE(at + 8));
      header = 16;
    } else if (size === 0) {
      size = to - at;
    }
    if (size < header || at + size > to) break;
    out.push({ type, start: at + header, end: at + size });
    at += size;
  }
  return out;
}

function child(buf: Buffer, parent: Box, type: string): Box | undefined {
  return boxes(buf, parent.start, parent.end).find((b) => b.type === type);
}

/** Duration field of a full box whose version-0 layout puts it at `v0` bytes after the flags, `v1` in version 1. */
function durationField(buf: Buffer, box: Box, v0: number, v1: number): { get(): number; set(v: number): void } {
  const version = buf.readUInt8(box.start);
  const at = box.start + 4 + (version === 1 ? v1 : v0);
  return version === 1
    ? { get: () => Number(buf.readBigUInt64BE(at)), set: (v) => buf.writeBigUInt64BE(BigInt(v), at) }
    : { get: () => buf.readUInt32BE(at), set: (v) => buf.writeUInt32BE(v, at) };
}

/** The top-level moov box's position in the file, read through box headers only (the media data is not read). */
async function findMoov(file: string): Promise<{ offset: number; size: number } | undefined> {
  const fh = await open(file, 'r');
  try {
    const { size: total } = await fh.stat();
    const head = Buffer.alloc(16);
    let at = 0;
    while (at + 8 <= total) {
      await fh.read(head, 0, 16, at);
      let size = head.readUInt32BE(0);
      if (size === 1) size = Number(head.readBigUInt64BE(8));
      else if (size === 0) size = total - at;
      if (size < 8) return undefined;
      if (head.toString('latin1', 4, 8) === 'moov') return { offset: at, size };
      at += size;
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

/**
 * Sets the duration of the last video sample to `seconds` when it is shorter than half of that (zero or one tick).
 * Returns whether the file was changed.
 */
export async function setLastFrameDuration(file: string, seconds: number): Promise<boolean> {
  const moovAt = await findMoov(file);
  if (!moovAt) return false;
  const fh = await open(file, 'r+');
  try {
    const buf = Buffer.alloc(moovAt.size);
    await fh.read(buf, 0, moovAt.size, moovAt.offset);
    const moov = boxes(buf, 0, buf.length)[0];
    const mvhd = moov && child(buf, moov, 'mvhd');
    if (!moov || !mvhd) return false;
    const movieScale = buf.readUInt32BE(mvhd.start + 4 + (buf.readUInt8(mvhd.start) === 1 ? 16 : 8));
    for (const trak of boxes(buf, moov.start, moov.end).filter((b) => b.type === 'trak')) {
      const mdia = child(buf, trak, 'mdia');
      const hdlr = mdia && child(buf, mdia, 'hdlr');
      if (!mdia || !hdlr || buf.toString('latin1', hdlr.start + 8, hdlr.start + 12) !== 'vide') continue;
      const mdhd = child(buf, mdia, 'mdhd');
      const stbl = [child(buf, mdia, 'minf')].map((m) => m && child(buf, m, 'stbl'))[0];
      const stts = stbl && child(buf, stbl, 'stts');
      const tkhd = child(buf, trak, 'tkhd');
      if (!mdhd || !stts || !tkhd) return false;
      const mediaScale = buf.readUInt32BE(mdhd.start + 4 + (buf.readUInt8(mdhd.start) === 1 ? 16 : 8));
      const entries = buf.readUInt32BE(stts.start + 4);
      if (entries === 0) return false;
      const last = stts.start + 8 + 8 * (entries - 1);
      const wanted = Math.round(seconds * mediaScale);
      const delta = buf.readUInt32BE(last + 4);
      if (buf.readUInt32BE(last) !== 1 || delta * 2 >= wanted) return false;
      const added = wanted - delta;
      buf.writeUInt32BE(wanted, last + 4);
      const media = durationField(buf, mdhd, 12, 20);
      media.set(media.get() + added);
      const addedMovie = Math.round((added * movieScale) / mediaScale);
      const track = durationField(buf, tkhd, 16, 24);
      track.set(track.get() + addedMovie);
      const movie = durationField(buf, mvhd, 12, 20);
      movie.set(Math.max(movie.get(), track.get()));
      const edts = child(buf, trak, 'edts');
      const elst = edts && child(buf, edts, 'elst');
      if (elst) {
        const v1 = buf.readUInt8(elst.start) === 1;
        const count = buf.readUInt32BE(elst.start + 4);
        const entry = elst.start + 8 + (v1 ? 20 : 12) * (count - 1);
        const mediaTime = v1 ? Number(buf.readBigInt64BE(entry + 8)) : buf.readInt32BE(entry + 4);
        if (count > 0 && mediaTime >= 0) {
          if (v1) buf.writeBigUInt64BE(buf.readBigUInt64BE(entry) + BigInt(addedMovie), entry);
          else buf.writeUInt32BE(buf.readUInt32BE(entry) + addedMovie, entry);
        }
      }
      await fh.write(buf, 0, buf.length, moovAt.offset);
      return true;
    }
    return false;
  } finally {
    await fh.close();
  }
}

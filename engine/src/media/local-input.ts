// Media inputs are local files, read as they are. ffmpeg and ffprobe open whatever a file tells them to: a DASH or
// HLS manifest saved as clip.mp4 makes them fetch its segments over HTTP (a beacon, and GET requests to services on
// the editor's network, whose answers would become the edit's source), an ffconcat list reads other files. So files
// that are manifests or lists of other resources are refused before ffprobe sees them, and every input is opened
// with the file protocol only. The refusal is the guard that holds: the bundled ffprobe's DASH demuxer still fetched
// its segments over HTTP with `-protocol_whitelist file` (test/reliability/local-media.test.ts).

import { open } from 'node:fs/promises';
import { MediaError } from './errors';

/** Input options for ffmpeg and ffprobe: the file protocol only (no http, tcp, udp, rtp, crypto, data, concat, …). */
export const LOCAL_INPUT = ['-protocol_whitelist', 'file'] as const;

/** Text formats that name other resources, by what their first bytes say. */
const MANIFESTS: { name: string; test: RegExp }[] = [
  { name: 'a DASH manifest (MPD)', test: /^(<\?xml[^>]*\?>\s*)?(<!--[\s\S]*?-->\s*)*<MPD[\s>]/i },
  { name: 'an HLS playlist (M3U8)', test: /^#EXTM3U/ },
  { name: 'an ffconcat list', test: /^ffconcat\s+version/i },
  { name: 'an SDP session description', test: /^v=0\r?\no=/ },
  { name: 'a SMIL or ISM manifest', test: /^(<\?xml[^>]*\?>\s*)?<(smil|SmoothStreamingMedia)[\s>]/i },
  {
    name: 'a playlist (M3U/PLS/ASX/XSPF)',
    test: /^(\[playlist\]|<asx[\s>]|(<\?xml[^>]*\?>\s*)?<playlist[\s>]|#EXTINF)/i,
  },
];

/** Throws 'not-local' when `file` is a manifest or list that points at other resources rather than media itself. */
export async function refuseManifest(file: string): Promise<void> {
  const fh = await open(file, 'r');
  let head: string;
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    head = buf
      .toString('utf8', 0, bytesRead)
      .replace(/^\uFEFF/, '')
      .trimStart();
  } finally {
    await fh.close();
  }
  const found = MANIFESTS.find((m) => m.test.test(head));
  if (found) {
    throw new MediaError(
      'not-local',
      `${file} is ${found.name}, not a media file: it points at other resources (possibly on the network), which Reshoot does not open. Download or export the clip itself and select that file.`,
      { file },
    );
  }
}

// Media inputs are local files, read as they are. ffmpeg and ffprobe open whatever a file tells them to: a DASH or
// HLS manifest saved as clip.mp4 makes them fetch its segments over HTTP (a beacon, and GET requests to services on
// the editor's network, whose answers would become the edit's source), an ffconcat list reads other files. So files
// that are manifests or lists of other resources are refused before ffprobe sees them, and every input is opened
// with the file protocol only. The refusal is the guard that holds: the bundled ffprobe's DASH demuxer still fetched
// its segments over HTTP with `-protocol_whitelist file` (test/reliability/local-media.test.ts). A second guard
// stands behind it: ffmpeg and ffprobe open inputs with an allow-list of demuxers, the containers and image formats
// editors export, so a manifest the first-bytes check misses (a DASH manifest behind a long XML comment, say) is
// refused by ffmpeg before its demuxer reads a byte of it.

import { open } from 'node:fs/promises';
import { MediaError } from './errors';

/**
 * Demuxers of video containers and image formats (ffmpeg's names; a name matches a demuxer that lists it, so `mov`
 * covers mov,mp4,m4a,3gp,3g2,mj2 and `matroska` covers matroska,webm). Audio formats are here so that an audio file
 * gets "no video stream", the sentence that helps. Not here: everything that reads other resources (dash, hls,
 * concat, sdp, rtsp, smoothstreaming; image2 over a URL is still image2, which the protocol list stops), devices and
 * lavfi.
 */
const DEMUXERS = [
  'mov matroska avi mxf mpegts mpegtsraw mpeg mpegvideo m4v h264 hevc mjpeg flv asf ogg dv gxf nut ivf r3d',
  'yuv4mpegpipe gif apng image2 png_pipe jpeg_pipe tiff_pipe dpx_pipe exr_pipe bmp_pipe webp_pipe j2k_pipe',
  'psd_pipe sgi_pipe qoi_pipe pam_pipe pgm_pipe ppm_pipe jpegxl_pipe',
  'wav w64 mp3 aac flac aiff caf',
].flatMap((line) => line.split(' '));

/** Demuxers that read other resources: what a refusal of one of them means is "not local", not "not media". */
const REFERENCING = new Set('dash hls applehttp concat ffconcat sdp rtsp rtp smoothstreaming mpd'.split(' '));

/**
 * Input options for ffmpeg and ffprobe: the file protocol only (no http, tcp, udp, rtp, crypto, data, concat, …),
 * and the demuxers above.
 */
export const LOCAL_INPUT = ['-protocol_whitelist', 'file', '-format_whitelist', DEMUXERS.join(',')] as const;

/** The error for an input ffmpeg refused because its demuxer is not on the allow-list, if that is what stderr says. */
export function refusedDemuxer(stderr: string, file: string): MediaError | undefined {
  const demuxer = /\[([\w-]+) @ [^\]]*\] Format not on whitelist/.exec(stderr)?.[1];
  if (!demuxer) return undefined;
  if (REFERENCING.has(demuxer)) {
    return new MediaError(
      'not-local',
      `${file} is read by ffmpeg as ${demuxer}, a format that points at other resources (possibly on the network), which Reshoot does not open. Download or export the clip itself and select that file.`,
      { file },
    );
  }
  return new MediaError(
    'not-media',
    `${file} is in a format Reshoot does not open (ffmpeg reads it with its ${demuxer} demuxer). Export it as MP4, MOV, MXF, MKV or WebM video, or as PNG, TIFF, JPEG, DPX or EXR images, and select that.`,
    { file },
  );
}

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

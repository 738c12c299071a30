// Media files cannot reach the network (issue "Hardening", finding 1): DASH, HLS, ffconcat and SDP files, named as
// clips or by their own extensions, pointing at an HTTP server on loopback. Each is refused at probe, still, mask and
// job planning with a sentence that says what it is, before ffprobe or ffmpeg opens it, and the server receives no
// request. (ffmpeg's -protocol_whitelist alone is not enough: the bundled ffprobe's DASH demuxer fetched its segments
// over HTTP with `-protocol_whitelist file` set.)
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { JobRequest } from '../../engine/src/api/schemas';
import { planJob } from '../../engine/src/jobs/runner';
import { extractStill, probeMedia } from '../../engine/src/media';
import { MediaError } from '../../engine/src/media/errors';
import { loadMask } from '../../engine/src/media/mask-input';
import { generateOracle } from '../../engine/src/models/generate/oracle';
import { PipelineWorker } from '../../engine/src/worker/pipeline-worker';

let root: string;
let server: http.Server;
let base: string;
const requests: string[] = [];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'local-media-'));
  server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(root, { recursive: true, force: true });
});

const manifests = (): { kind: RegExp; names: string[]; text: string }[] => [
  {
    kind: /DASH manifest/,
    names: ['dash.mp4', 'dash.mov', 'dash.mpd'],
    text:
      `<?xml version="1.0" encoding="utf-8"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" ` +
      `minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"><Period><AdaptationSet mimeType="video/mp4">` +
      `<Representation id="1" bandwidth="100000" codecs="avc1.64001e" width="64" height="48"><BaseURL>${base}/dash-segment.mp4</BaseURL>` +
      `<SegmentBase indexRange="0-100"/></Representation></AdaptationSet></Period></MPD>\n`,
  },
  {
    kind: /HLS playlist/,
    names: ['hls.mp4', 'hls.m3u8'],
    text: `#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n${base}/hls-segment.ts\n#EXT-X-ENDLIST\n`,
  },
  {
    kind: /ffconcat list/,
    names: ['concat.mp4', 'list.ffconcat'],
    text: `ffconcat version 1.0\nfile '${base}/concat-part.mp4'\n`,
  },
  {
    kind: /SDP session/,
    names: ['session.mp4', 'session.sdp'],
    text: `v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n`,
  },
];

async function refusal(p: Promise<unknown>): Promise<MediaError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MediaError);
  return err as MediaError;
}

it('refuses manifests at probe, still, mask and job planning, and nothing is fetched', async () => {
  const modelDir = path.join(root, 'oracle');
  generateOracle(modelDir);
  const worker = await PipelineWorker.start(modelDir, { threads: 1 });
  const model = worker.info;
  let cases = 0;
  for (const m of manifests()) {
    for (const name of m.names) {
      const file = path.join(root, name);
      fs.writeFileSync(file, m.text);
      const probe = await refusal(probeMedia(file));
      expect(probe.code).toBe('not-local');
      expect(probe.message).toMatch(m.kind);
      expect(probe.message).toMatch(/Download or export the clip itself/);
      expect((await refusal(extractStill(file, 0))).code).toBe('not-local');
      const target = { frames: 2, width: 64, height: 48, startFrame: 0, fps: { num: 24, den: 1 } };
      expect((await refusal(loadMask({ kind: 'file', path: file }, target))).code).toBe('not-local');
      const req = JobRequest.parse({
        source: { path: file, in: 0, out: 1 },
        prompt: 'a blue car on a gray road',
        output: { path: path.join(root, `${name}.out.mp4`) },
      });
      expect((await refusal(planJob(req, model, req.output!.path!))).code).toBe('not-local');
      cases++;
    }
  }
  await worker.terminate();
  expect(cases).toBe(9);
  expect(requests).toEqual([]);
}, 120000);

it('refuses, by the demuxer allow-list, a manifest whose first bytes do not give it away, and nothing is fetched', async () => {
  // An XML comment longer than the first-bytes check reads: ffmpeg's DASH probe still finds <MPD further in (and
  // without the allow-list the bundled ffprobe connects to the manifest's server with -protocol_whitelist file).
  const padding = `<!-- ${'x'.repeat(6000)} -->\n`;
  const dash = manifests()[0].text.replace('<MPD', `${padding}<MPD`);
  const before = requests.length;
  const target = { frames: 2, width: 64, height: 48, startFrame: 0, fps: { num: 24, den: 1 } };
  for (const name of ['hidden-dash.mp4', 'hidden-dash.mpd']) {
    const file = path.join(root, name);
    fs.writeFileSync(file, dash);
    const probe = await refusal(probeMedia(file));
    expect(probe.code).toBe('not-local');
    expect(probe.message).toMatch(/read by ffmpeg as dash, a format that points at other resources/);
    expect(probe.message).toMatch(/Download or export the clip itself/);
    expect((await refusal(extractStill(file, 0))).code).toBe('not-local');
    expect((await refusal(loadMask({ kind: 'file', path: file }, target))).code).toBe('not-local');
  }
  expect(requests.slice(before)).toEqual([]);
});

it('names the demuxer of a local format it does not open, and what to export instead', async () => {
  // A subtitle file is local and harmless, but no clip: ffmpeg recognises it (srt), the allow-list refuses it.
  const file = path.join(root, 'captions.mp4');
  fs.writeFileSync(file, '1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nWorld\n');
  const err = await refusal(probeMedia(file));
  expect(err.code).toBe('not-media');
  expect(err.message).toMatch(
    /captions\.mp4 is in a format Reshoot does not open \(ffmpeg reads it with its srt demuxer\)/,
  );
  expect(err.message).toMatch(/Export it as MP4, MOV, MXF/);
});

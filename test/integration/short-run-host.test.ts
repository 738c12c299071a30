// Short runs (ffprobe and the like) go through a small helper process, because fork() from the engine costs time in
// proportion to its resident memory (media/short-run-host.ts). Real processes throughout.
import { execFileSync } from 'node:child_process';
import { run } from '../../engine/src/media/process';
import { shortRunHostPid } from '../../engine/src/media/short-run-host';

const posix = process.platform !== 'win32';
const d = posix ? describe : describe.skip;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

d('short runs through the helper process', () => {
  afterEach(() => {
    delete process.env.RESHOOT_PROBE_TIMEOUT_MS;
  });

  it('runs the command in a child of the helper, with its exit status, stdout and stderr', async () => {
    const r = await run('/bin/sh', ['-c', 'echo $PPID; printf "oops" >&2; exit 3']);
    const host = shortRunHostPid();
    expect(host).toBeDefined();
    expect(host).not.toBe(process.pid);
    expect(r.code).toBe(3);
    expect(r.stdout.toString().trim()).toBe(String(host));
    expect(r.stderr).toBe('oops');
  });

  it('binary output arrives intact', async () => {
    const r = await run('/bin/sh', ['-c', 'printf "\\000\\001\\377\\376"']);
    expect([...r.stdout]).toEqual([0, 1, 255, 254]);
  });

  it('a command that cannot start fails with the engine’s sentence', async () => {
    await expect(run('/nonexistent/ffprobe', ['-version'])).rejects.toThrow(
      /^Could not start \/nonexistent\/ffprobe \(spawn \/nonexistent\/ffprobe ENOENT\)\. Install ffmpeg/,
    );
  });

  it('a run past its timeout is killed inside the helper, and says so', async () => {
    process.env.RESHOOT_PROBE_TIMEOUT_MS = '300';
    // A duration no other process on the machine uses, to find it in `ps` afterwards.
    const marker = `sleep 31.${process.pid}`;
    await expect(run('/bin/sleep', [marker.split(' ')[1]], 'clip.mp4')).rejects.toThrow(
      /^clip\.mp4 could not be read: sleep got no answer within 0\.3 s/,
    );
    const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes(marker));
    expect(left).toEqual([]);
  });

  it('when the helper dies, runs go on (directly, then through a new helper)', async () => {
    await run('/bin/true', []);
    const first = shortRunHostPid()!;
    process.kill(first, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(first)).toBe(false);
    const r = await run('/bin/sh', ['-c', 'echo ok']);
    expect(r.stdout.toString().trim()).toBe('ok');
    const second = shortRunHostPid();
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
  });
});

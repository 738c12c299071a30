// The render farm's two pieces of pure configuration: the queue URL (with its password kept out of every message)
// and the path mappings between the editor's machine and a render node.
import { queueConnection } from '../../engine/src/farm/connection';
import { bullJobId, engineJobId } from '../../engine/src/farm/protocol';
import { parseMapping, resultForEngine, toEngine, toLocal } from '../../engine/src/farm/path-map';

describe('queue URL', () => {
  it('reads host, port, database and TLS, and shows the URL without credentials', () => {
    const c = queueConnection('rediss://render:s3cret@queue.studio.lan:6380/2', {});
    expect(c.options).toMatchObject({
      host: 'queue.studio.lan',
      port: 6380,
      db: 2,
      username: 'render',
      password: 's3cret',
      tls: { servername: 'queue.studio.lan' },
      maxRetriesPerRequest: null,
    });
    expect(c.display).toBe('rediss://queue.studio.lan:6380/2');
    expect(queueConnection('redis://127.0.0.1', {}).options).toMatchObject({ host: '127.0.0.1', port: 6379 });
    expect(queueConnection('redis://127.0.0.1', {}).options).not.toHaveProperty('tls');
  });

  it('takes the password from the environment variable named, over the URL', () => {
    expect(queueConnection('redis://:inurl@h:1', { REDIS_PASSWORD: 'fromenv' }).options.password).toBe('fromenv');
    expect(queueConnection('redis://h:1', { FARM_PW: 'other' }, 'FARM_PW').options.password).toBe('other');
    expect(queueConnection('redis://h:1', {}).options).not.toHaveProperty('password');
  });

  it('refuses what is not a Redis URL with a sentence that says what to write, never echoing a password', () => {
    expect(() => queueConnection('http://h:1', {})).toThrow(/must start with redis:\/\/ or rediss:\/\//);
    expect(() => queueConnection('redis://h:1/queue', {})).toThrow(/database number/);
    let message = '';
    try {
      queueConnection('redis://user:hunter2@ bad host', {});
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/not a URL; write it as redis:\/\/HOST:PORT/);
    expect(message).not.toContain('hunter2');
  });
});

describe('path mapping', () => {
  const mac = '/Volumes/Projects';
  it('maps the editor’s shared folder to the node’s, and the result back, across separators', () => {
    const linux = [parseMapping(`${mac}=/mnt/projects`)];
    expect(toLocal('/Volumes/Projects/show/ep1/shot.mov', linux)).toBe('/mnt/projects/show/ep1/shot.mov');
    expect(toEngine('/mnt/projects/show/ep1/shot.reshoot.mp4', linux)).toBe(
      '/Volumes/Projects/show/ep1/shot.reshoot.mp4',
    );
    const windows = [parseMapping(`${mac}=P:\\`)];
    expect(toLocal('/Volumes/Projects/show/shot.mov', windows)).toBe('P:\\show\\shot.mov');
    expect(toEngine('p:\\show\\shot.mp4', windows)).toBe('/Volumes/Projects/show/shot.mp4');
  });

  it('matches whole folder names, the longest mapping first', () => {
    const maps = [parseMapping('/Volumes/Projects=/mnt/a'), parseMapping('/Volumes/Projects/vfx=/mnt/vfx')];
    expect(toLocal('/Volumes/Projects/vfx/x.mov', maps)).toBe('/mnt/vfx/x.mov');
    expect(toLocal('/Volumes/Projects2/x.mov', maps)).toBeUndefined();
    expect(toLocal('/Users/ed/Desktop/x.mov', maps)).toBeUndefined();
  });

  it('folds the case of a drive written without its backslash, both ways', () => {
    const bare = [parseMapping('P:=/mnt/projects')];
    expect(toLocal('p:\\show\\shot.mov', bare)).toBe('/mnt/projects/show/shot.mov');
    expect(toLocal('P:/show/shot.mov', bare)).toBe('/mnt/projects/show/shot.mov');
    expect(toLocal('P:', bare)).toBe('/mnt/projects');
    expect(toEngine('/mnt/projects/show/out.mp4', bare)).toBe('P:\\show\\out.mp4');
    const toDrive = [parseMapping(`${mac}=p:`)];
    expect(toLocal('/Volumes/Projects/show/shot.mov', toDrive)).toBe('p:\\show\\shot.mov');
    expect(toLocal('/Volumes/Projects', toDrive)).toBe('p:\\');
    expect(toEngine('P:\\show\\out.mp4', toDrive)).toBe('/Volumes/Projects/show/out.mp4');
  });

  it('maps UNC paths without case, and never a POSIX path of the same names', () => {
    // A Windows editor's share, rendered on a Linux node.
    const unc = [parseMapping('\\\\NAS\\Projects=/mnt/projects')];
    expect(toLocal('\\\\nas\\projects\\show\\shot.mov', unc)).toBe('/mnt/projects/show/shot.mov');
    expect(toEngine('/mnt/projects/show/out.mp4', unc)).toBe('\\\\NAS\\Projects\\show\\out.mp4');
    expect(toLocal('/NAS/Projects/show/shot.mov', unc)).toBeUndefined();
    expect(toLocal('\\\\nas\\other\\shot.mov', unc)).toBeUndefined();
    // A Windows node as a service: the share by its UNC name, not a drive letter.
    const service = [parseMapping(`${mac}=\\\\nas\\projects`)];
    expect(toLocal('/Volumes/Projects/show/shot.mov', service)).toBe('\\\\nas\\projects\\show\\shot.mov');
    expect(toEngine('\\\\NAS\\projects\\show\\out.mp4', service)).toBe('/Volumes/Projects/show/out.mp4');
  });

  it('reports the matte by the engine’s path, or not at all, never by the node’s', () => {
    const result = {
      path: 'p:\\show\\out.mp4',
      mattePath: 'p:\\show\\out.matte\\%06d.png',
      frames: 12,
      fps: { num: 24, den: 1 },
      width: 128,
      height: 72,
      durationSec: 0.5,
      codec: 'h264' as const,
      workingSize: { width: 128, height: 72 },
      unetEvaluations: 1,
      inversionCacheHit: false,
      seconds: 1,
    };
    const engine = '/Volumes/Projects/show/out.mp4';
    expect(resultForEngine(result, engine, [parseMapping(`${mac}=P:`)])).toMatchObject({
      path: engine,
      mattePath: '/Volumes/Projects/show/out.matte/%06d.png',
    });
    expect(resultForEngine(result, engine, [parseMapping(`${mac}=Q:`)])).not.toHaveProperty('mattePath');
  });

  it('leaves paths alone without mappings (the same mount everywhere)', () => {
    expect(toLocal('/srv/media/x.mov', [])).toBe('/srv/media/x.mov');
  });

  it('refuses a mapping without both sides', () => {
    expect(() => parseMapping('/Volumes/Projects')).toThrow(/must be FROM=TO/);
    expect(() => parseMapping('=/mnt/x')).toThrow(/must be FROM=TO/);
  });
});

describe('queue job ids', () => {
  it('gives BullMQ no all-digit id, and keeps the others as they were', () => {
    expect(bullJobId('753385957550')).not.toMatch(/^\d+$/);
    expect(engineJobId(bullJobId('753385957550'))).toBe('753385957550');
    expect(bullJobId('3fa85f64c2d1')).toBe('3fa85f64c2d1');
    expect(engineJobId('3fa85f64c2d1')).toBe('3fa85f64c2d1');
  });
});

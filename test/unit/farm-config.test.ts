// The render farm's two pieces of pure configuration: the queue URL (with its password kept out of every message)
// and the path mappings between the editor's machine and a render node.
import { queueConnection } from '../../engine/src/farm/connection';
import { parseMapping, toEngine, toLocal } from '../../engine/src/farm/path-map';

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

  it('leaves paths alone without mappings (the same mount everywhere)', () => {
    expect(toLocal('/srv/media/x.mov', [])).toBe('/srv/media/x.mov');
  });

  it('refuses a mapping without both sides', () => {
    expect(() => parseMapping('/Volumes/Projects')).toThrow(/must be FROM=TO/);
    expect(() => parseMapping('=/mnt/x')).toThrow(/must be FROM=TO/);
  });
});

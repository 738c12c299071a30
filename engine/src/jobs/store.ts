// Jobs persisted one JSON file each, written atomically (temp file, then rename), so a kill at any moment leaves
// either the old or the new state of a job on disk, never half of one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Job } from '../api/schemas';
import { removeQuietly, renameIntoPlaceSync } from '../config/atomic-rename';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../config/private-dir';

export class JobStore {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  }

  save(job: Job): void {
    const file = path.join(this.dir, `${job.id}.json`);
    const tmp = `${file}.partial-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(job, null, 1), { mode: PRIVATE_FILE_MODE });
    try {
      renameIntoPlaceSync(tmp, file);
    } catch (err) {
      removeQuietly(tmp);
      throw err;
    }
  }

  /** Forgets a job's record (never its result file); a record that cannot be removed is simply loaded again later. */
  remove(id: string): void {
    try {
      fs.rmSync(path.join(this.dir, `${id}.json`), { force: true });
    } catch {
      // The next start prunes it again.
    }
  }

  /** Every readable job, oldest first; unreadable files are reported, not fatal. */
  loadAll(onBadFile: (file: string, reason: string) => void = () => undefined): Job[] {
    const jobs: Job[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.includes('.partial-')) {
        // A leftover still held open (Windows) is swept at the next start; it must not stop this one.
        removeQuietly(file);
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        const parsed = Job.safeParse(JSON.parse(fs.readFileSync(file, 'utf8')));
        if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? 'invalid');
        jobs.push(parsed.data);
      } catch (err) {
        onBadFile(file, (err as Error).message);
      }
    }
    return jobs.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }
}

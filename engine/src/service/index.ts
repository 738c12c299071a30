// `reshoot service`'s platforms. Each one registers the engine to start at this user's login, without admin rights.
import { darwin } from './darwin';
import { linux } from './linux';
import type { ServicePlatform } from './types';
import { win32 } from './win32';

export function servicePlatform(platform: NodeJS.Platform): ServicePlatform {
  switch (platform) {
    case 'darwin':
      return darwin;
    case 'win32':
      return win32;
    case 'linux':
      return linux;
    default:
      throw new Error(
        `reshoot service supports Linux (systemd), macOS (launchd) and Windows (Task Scheduler), not ${platform}`,
      );
  }
}

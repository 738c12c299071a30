// The engine can read and write any file its user can, so everything that reaches it from a browser is suspect:
// a web page may point its requests at 127.0.0.1 (cross-origin requests) or at a name that it re-resolves to
// 127.0.0.1 (DNS rebinding). The Host check stops the second, the Origin check and the bearer token the first.
import * as crypto from 'node:crypto';
import type { Request } from 'express';
import { routesForPath } from './routes';

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

/** The port the request actually arrived on: with `port: 0` the app is built before the OS picks one. */
export function requestPort(req: Request, fallback: number): number {
  return req.socket.localPort ?? fallback;
}

/** The Host header must name the engine by a loopback name and its port; a rebinding attacker's page can only send its own name. */
export function hostAllowed(host: string | undefined, port: number, extraHosts: readonly string[]): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  for (const name of LOOPBACK_NAMES) {
    if (h === `${name}:${port}`) return true;
    // Browsers leave the default port out of Host.
    if (port === 80 && h === name) return true;
  }
  return extraHosts.some((e) => e.toLowerCase() === h);
}

export function ownOrigins(port: number): string[] {
  return LOOPBACK_NAMES.map((n) => `http://${n}:${port}`);
}

/**
 * A browser sends Origin on every cross-origin request and on same-origin non-GET ones; non-browser clients (the CLI,
 * curl, UXP's fetch as far as is known) send none and are judged by the token alone. `null` is what sandboxed iframes,
 * file:// pages and data: URLs send, so any site can produce it: it is refused unless configured explicitly.
 */
export function originAllowed(origin: string, port: number, allowed: readonly string[]): boolean {
  const o = normalizeOrigin(origin);
  if (o === 'null') return allowed.includes('null');
  return ownOrigins(port).includes(o) || allowed.some((a) => normalizeOrigin(a) === o);
}

function normalizeOrigin(o: string): string {
  return o.trim().toLowerCase().replace(/\/+$/, '');
}

export type AuthResult = { ok: true } | { ok: false; detail: string };

export class TokenChecker {
  private readonly expected: Buffer;

  constructor(token: string) {
    if (token.length < 16) throw new Error('the API token must be at least 16 characters');
    this.expected = digest(token);
  }

  /** Both sides are hashed first so timingSafeEqual always compares equal lengths and the token's length does not leak either. */
  matches(candidate: string): boolean {
    return crypto.timingSafeEqual(digest(candidate), this.expected);
  }

  check(req: Request): AuthResult {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
      if (!m) return { ok: false, detail: 'the Authorization header must be "Bearer <token>"' };
      return this.matches(m[1])
        ? { ok: true }
        : {
            ok: false,
            detail:
              "the token is wrong; read it again from the engine's token file (it changes only when that file is deleted)",
          };
    }
    const query = req.query.token;
    if (query !== undefined) {
      const allowsQuery =
        req.method === 'GET' || req.method === 'HEAD'
          ? routesForPath(req.path).some((r) => r.method === 'GET' && r.queryToken)
          : false;
      if (!allowsQuery)
        return {
          ok: false,
          detail:
            'this route takes the token only in the Authorization header ("Authorization: Bearer <token>"); ?token= is accepted only where a browser element cannot set headers (job events, job result, job matte, media still)',
        };
      if (typeof query !== 'string') return { ok: false, detail: 'give the token once: ?token=<token>' };
      return this.matches(query)
        ? { ok: true }
        : {
            ok: false,
            detail:
              "the token is wrong; read it again from the engine's token file (it changes only when that file is deleted)",
          };
    }
    return {
      ok: false,
      detail:
        'this request carries no token: send "Authorization: Bearer <token>" with the token from the engine\'s token file (in its per-user config folder)',
    };
  }
}

function digest(s: string): Buffer {
  return crypto.createHash('sha256').update(s, 'utf8').digest();
}

/** For response bodies: the literal token, wherever a client managed to echo it into a message. */
export function makeSecretRedactor(token: string): (s: string) => string {
  return (s) => s.split(token).join('[redacted]');
}

/** For log lines: also every `token=` query value, right or wrong (a wrong one is often a near miss of the right one). */
export function makeLogRedactor(token: string): (s: string) => string {
  const secret = makeSecretRedactor(token);
  return (s) => secret(s.replace(/([?&;]token=)[^&#\s"]*/gi, '$1[redacted]'));
}

// Where the engine keeps its API token, as one rule that the engine (Node) and the Premiere panel (UXP, which sees
// no environment variables) both compute from the platform and the user's home folder alone, so they cannot
// disagree. On Windows the folder is under Local AppData, not %APPDATA%: Folder Redirection moves Roaming AppData to
// a network share on managed machines (and the panel cannot read %APPDATA% to follow it), while Local AppData is
// never redirected; a token for an engine on 127.0.0.1 belongs to this machine anyway.

export const TOKEN_FILE_NAME = 'token';

/** The token's folder for a platform as Node names it ('win32', 'darwin', 'linux'…; UXP may say 'win10'). */
export function tokenFolder(platform: string, home: string): string {
  if (/^win/i.test(platform)) return `${home.replace(/[\\/]+$/, '')}\\AppData\\Local\\reshoot`;
  const base = home.replace(/\/+$/, '');
  if (platform === 'darwin') return `${base}/Library/Application Support/reshoot`;
  return `${base}/.config/reshoot`;
}

export function tokenFile(platform: string, home: string): string {
  return `${tokenFolder(platform, home)}${/^win/i.test(platform) ? '\\' : '/'}${TOKEN_FILE_NAME}`;
}

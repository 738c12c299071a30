// Which export preset renders a clip through Premiere: the one the editor chose, else one bundled in the plugin
// folder. The .epr files cannot be made or checked without Premiere (presets/README.md), so the panel does what
// Adobe's own sample panel does: the editor picks a preset saved from Premiere's Export mode, once, and the panel
// remembers it. Premiere itself says whether it can read the file (getExportFileExtension) and which extension the
// render gets.

import type { premierepro, Sequence } from '@adobe/premierepro';
import type { ExportPresetChoice } from './host';
import { cleanExtension, EXPORT_PRESETS, PRESETS_FOLDER } from './export-presets';
import { messageOf } from './premiere-edit';
import { joinPath } from './premiere-paths';

/** What the panel keeps between sessions: `localStorage` in UXP. */
export interface SettingsStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface PresetFileSystem {
  getPluginFolder?: () => Promise<{ nativePath: string }>;
  /** UXP's file dialog; null when the editor closes it. */
  getFileForOpening?: (options?: {
    types?: string[];
    allowMultiple?: boolean;
  }) => Promise<{ nativePath: string } | null | undefined>;
}

interface Candidate {
  path: string;
  origin: 'chosen' | 'bundled';
  /** As the error names it. */
  name: string;
}

export const CHOSEN_PRESET_KEY = 'reshoot.exportPreset';

const HOW_TO_MAKE_ONE =
  'In Premiere\'s Export mode, set QuickTime with Apple ProRes 422 HQ (or H.264), frame size and rate "Match Source", save it as a preset and export it from the Preset Manager as an .epr file, then click "Choose render preset…" on the clip in the Reshoot panel.';

export class ExportPresets {
  constructor(
    private readonly ppro: premierepro,
    private readonly files: () => PresetFileSystem | undefined,
    private readonly exists: (path: string) => Promise<boolean>,
    private readonly settings: SettingsStore,
    private readonly folderOverride?: string,
  ) {}

  /** The preset a render would use now, without asking Premiere to read it (that needs a sequence). */
  async current(): Promise<ExportPresetChoice> {
    const { candidates } = await this.candidates();
    let problem: string | undefined;
    for (const c of candidates) {
      if (await this.exists(c.path)) return { path: c.path, origin: c.origin, ...(problem ? { problem } : {}) };
      if (c.origin === 'chosen') problem = `the preset you chose, ${c.path}, is no longer there`;
    }
    return { path: null, origin: 'none', ...(problem ? { problem } : {}) };
  }

  /**
   * Opens the file dialog for an .epr and remembers it. With a sequence open, Premiere reads it first, so a file it
   * cannot use is refused now rather than at the next render. Null when the editor closes the dialog.
   */
  async choose(sequence: Sequence | null): Promise<ExportPresetChoice | null> {
    const files = this.files();
    const pick = files?.getFileForOpening;
    if (typeof pick !== 'function')
      throw new Error(
        'This version of Premiere does not let a panel open a file dialog, so a render preset cannot be chosen. Update Premiere Pro.',
      );
    const file = await pick.call(files, { types: ['epr'], allowMultiple: false });
    if (!file) return null;
    const path = file.nativePath;
    if (!/\.epr$/i.test(path)) throw new Error(`${path} is not an export preset (.epr). ${HOW_TO_MAKE_ONE}`);
    if (sequence) {
      const checked = await this.extensionFor(sequence, path);
      if (typeof checked !== 'string')
        throw new Error(`Premiere cannot render with ${path} (${checked.problem}). ${HOW_TO_MAKE_ONE}`);
    }
    this.settings.setItem(CHOSEN_PRESET_KEY, path);
    return { path, origin: 'chosen' };
  }

  /** The preset to render with (the chosen one first) and the extension Premiere writes with it. */
  async forRender(sequence: Sequence): Promise<{ path: string; extension: string }> {
    const { candidates, folder, problems } = await this.candidates();
    for (const candidate of candidates) {
      if (!(await this.exists(candidate.path))) {
        problems.push(`${candidate.name} is missing`);
        continue;
      }
      const checked = await this.extensionFor(sequence, candidate.path);
      if (typeof checked === 'string') return { path: candidate.path, extension: checked };
      problems.push(`${candidate.name}: ${checked.problem}`);
    }
    if (folder) problems.push(`bundled presets are looked for in ${folder}`);
    throw new Error(
      `Reshoot has no export preset it can render this clip with (${problems.join('; ')}). ${HOW_TO_MAKE_ONE}`,
    );
  }

  /** The chosen preset, then the bundled ones in order; where the plugin folder is unknown, why. */
  private async candidates(): Promise<{
    candidates: Candidate[];
    folder: string | null;
    problems: string[];
  }> {
    const chosen = this.settings.getItem(CHOSEN_PRESET_KEY);
    const candidates: Candidate[] = chosen
      ? [{ path: chosen, origin: 'chosen', name: `the preset you chose (${chosen})` }]
      : [];
    try {
      const folder = await this.folder();
      for (const preset of EXPORT_PRESETS)
        candidates.push({ path: joinPath(folder, preset.file), origin: 'bundled', name: preset.file });
      return { candidates, folder, problems: [] };
    } catch (err) {
      return { candidates, folder: null, problems: [messageOf(err)] };
    }
  }

  private async extensionFor(sequence: Sequence, path: string): Promise<string | { problem: string }> {
    try {
      const extension = cleanExtension(await this.ppro.EncoderManager.getExportFileExtension(sequence, path));
      return extension ?? { problem: 'Premiere gave no file extension for it' };
    } catch (err) {
      return { problem: `Premiere could not read it: ${messageOf(err)}` };
    }
  }

  private async folder(): Promise<string> {
    if (this.folderOverride) return this.folderOverride;
    const files = this.files();
    const getPluginFolder = files?.getPluginFolder;
    if (typeof getPluginFolder !== 'function')
      throw new Error('this version of Premiere does not tell a panel where its plugin folder is');
    return joinPath((await getPluginFolder.call(files)).nativePath, PRESETS_FOLDER);
  }
}

/** localStorage where the host has one (UXP does); otherwise the choice lasts as long as the panel. */
export function panelSettings(): SettingsStore {
  try {
    const storage = (globalThis as { localStorage?: Partial<SettingsStore> }).localStorage;
    if (typeof storage?.getItem === 'function' && typeof storage.setItem === 'function')
      return storage as SettingsStore;
  } catch {
    // Refused (a privacy setting): fall back to memory.
  }
  return memoryStore();
}

export function memoryStore(): SettingsStore {
  const values = new Map<string, string>();
  return { getItem: (k) => values.get(k) ?? null, setItem: (k, v) => void values.set(k, v) };
}

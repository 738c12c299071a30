// Local corrections to @adobe/cc-ext-uxp-types 7.3.1 where its declarations disagree with Adobe's documentation
// (premiere-uxp.md §2, toolchain.md §7). This file is a global script on purpose: with no top-level import or
// export, each `declare module 'uxp'` block merges into the package's own declaration instead of replacing it.

declare module 'uxp' {
  namespace storage {
    /**
     * Documented as `require('uxp').storage.localFileSystem` (and used that way in Adobe's samples, under a
     * ts-expect-error), but the package declares only the FileSystemProvider class, not the instance.
     */
    const localFileSystem: FileSystemProvider;
  }

  /** One panel's lifecycle hooks. From manifest v5 on, each receives the panel's root node and has 300 ms. */
  interface PanelEntrypointHooks {
    create?(this: unknown, rootNode: HTMLElement): void | Promise<void>;
    show?(this: unknown, rootNode: HTMLElement, data?: unknown): void | Promise<void>;
    /** Not reliable in Premiere Pro yet (premiere-uxp.md §3). */
    hide?(this: unknown, rootNode: HTMLElement, data?: unknown): void | Promise<void>;
    /** Not reliable in Premiere Pro yet (premiere-uxp.md §3). */
    destroy?(this: unknown, rootNode: HTMLElement): void | Promise<void>;
    invokeMenu?(this: unknown, menuId: string): void | Promise<void>;
    menuItems?: Array<string | PanelMenuItem>;
  }

  interface PanelMenuItem {
    id: string;
    label?: string;
    enabled?: boolean;
    checked?: boolean;
    submenu?: Array<string | PanelMenuItem>;
  }

  interface CommandEntrypointHooks {
    run(this: unknown, ...args: unknown[]): void | Promise<void>;
    cancel?(this: unknown): void;
  }

  /**
   * What `entrypoints.setup` takes per the documentation: maps keyed by the manifest's entrypoint ids, every
   * part optional. The package types `panels` and `commands` as arrays and makes every hook required.
   */
  interface EntrypointsSetup {
    plugin?: { create?(this: unknown): void; destroy?(this: unknown): void | Promise<void> } | (() => void);
    panels?: Record<string, PanelEntrypointHooks | ((rootNode: HTMLElement) => void)>;
    commands?: Record<string, CommandEntrypointHooks | ((...args: unknown[]) => void)>;
  }

  // Merges into the package's `class EntryPoints`; an interface's overloads are tried before the class's own.
  interface EntryPoints {
    setup(entrypoints: EntrypointsSetup): void;
  }
}

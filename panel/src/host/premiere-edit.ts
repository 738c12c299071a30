// The one way the Premiere adapter changes a project: a lock, a transaction and actions created and added inside
// it, with no await anywhere (Premiere 26.3 refuses actions made outside project.lockedAccess(), and an action
// outliving its lock). Each transaction is one undo step named by its label.

import type { Action, CompoundAction, Project } from '@adobe/premierepro';

export interface Outcome {
  ok: boolean;
  /** Why Premiere refused, when it did. */
  reason: string;
}

export function transact(project: Project, label: string, build: (ca: CompoundAction) => void): Outcome {
  let ok = false;
  let reason = 'Premiere rejected the change';
  try {
    project.lockedAccess(() => {
      ok = project.executeTransaction((ca) => {
        build(ca);
      }, label);
    });
  } catch (err) {
    ok = false;
    reason = messageOf(err);
  }
  return { ok, reason };
}

/** CompoundAction.addAction, which answers false when Premiere refuses the action, as an error that says what. */
export function add(ca: CompoundAction, action: Action, what: string): void {
  // Only ever called from transact() callbacks: the lint rule that checks addAction checks every add() call instead.
  // eslint-disable-next-line no-restricted-syntax
  if (!ca.addAction(action)) throw new Error(`Premiere refused to ${what}`);
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

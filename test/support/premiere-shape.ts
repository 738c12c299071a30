// What a fake `premierepro` class is checked against: Adobe's declared members with their parameter lists (so a fake
// method must accept everything Adobe's signature allows, and check it at run time like the host does) and whether
// they are asynchronous (a Promise where Adobe declares one, never a Promise where Adobe's method is synchronous).
// What a method returns is checked by the returned fake's own class. Adobe declares TickTime, RectF, PointF and Guid
// with call and construct signatures, which no instance can match; the mapped type drops call signatures and
// leaves constructible members unchecked.

type Sync = null | undefined | void | { toString(): string; then?: never };

export type Shape<T> = {
  [K in keyof T]: T[K] extends abstract new (...args: never) => unknown
    ? unknown
    : T[K] extends (...args: infer A) => infer R
      ? (...args: A) => R extends Promise<unknown> ? Promise<unknown> : Sync
      : unknown;
};

// Which token of the target prompt stands where in the source prompt, for the attention methods that carry the
// source's cross-attention maps over to the target (prompt-to-prompt's word swap and refine): a word diff of the two
// prompts as CLIP splits them. Words both prompts share keep their tokens' maps; a word swapped for another ("red" →
// "blue") takes the maps of the word it replaces; words only the target has are new and get none. Positions are those
// of the encoded sequence the text encoder sees (BOS at 0, the words, EOS, padding), so they index the maps' T axis.
import type { ClipTokenizer } from '../models/tokenizer';

export interface TokenSpan {
  word: string;
  /** Token positions [start, end) in the encoded sequence. */
  start: number;
  end: number;
}

export interface PromptAlignment {
  /** For every target position (0 … maxLength − 1), the source position whose map it takes, or −1 for a new word. */
  sourceOf: Int32Array;
  /** Word pairs the target swapped in, in order ("red" → "blue"). */
  swapped: [string, string][];
  /** Words only the target has (refine). */
  added: string[];
}

/** Token spans of a prompt's words, in the encoded sequence (BOS at 0); words past the length limit are left out. */
export function tokenSpans(tok: ClipTokenizer, text: string): TokenSpan[] {
  const room = tok.maxLength - 2;
  const spans: TokenSpan[] = [];
  let at = 1;
  for (const { word, ids } of tok.words(text)) {
    if (at - 1 + ids.length > room) break;
    spans.push({ word, start: at, end: at + ids.length });
    at += ids.length;
  }
  return spans;
}

/** Aligns the target prompt's tokens to the source's by a word diff (longest common subsequence of the words). */
export function alignPrompts(tok: ClipTokenizer, source: string, target: string): PromptAlignment {
  const src = tokenSpans(tok, source);
  const tgt = tokenSpans(tok, target);
  const sourceOf = new Int32Array(tok.maxLength).fill(-1);
  const swapped: [string, string][] = [];
  const added: string[] = [];
  // LCS table over words.
  const n = src.length;
  const m = tgt.length;
  const lcs = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i][j] = src[i].word === tgt[j].word ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const take = (s: TokenSpan, t: TokenSpan) => {
    // Same word: token for token. A swapped word of another length: proportionally, so each target token reads the
    // source token at the same relative place.
    const ls = s.end - s.start;
    const lt = t.end - t.start;
    for (let k = 0; k < lt; k++) sourceOf[t.start + k] = s.start + Math.min(ls - 1, Math.floor((k * ls) / lt));
  };
  let i = 0;
  let j = 0;
  // Runs of unmatched words between matches: pair them off in order as swaps; the target's extra ones are added.
  let pendingSrc: TokenSpan[] = [];
  let pendingTgt: TokenSpan[] = [];
  const flush = () => {
    pendingTgt.forEach((t, k) => {
      const s = pendingSrc[k];
      if (s) {
        take(s, t);
        swapped.push([s.word, t.word]);
      } else added.push(t.word);
    });
    pendingSrc = [];
    pendingTgt = [];
  };
  while (i < n || j < m) {
    if (i < n && j < m && src[i].word === tgt[j].word) {
      flush();
      take(src[i], tgt[j]);
      i++;
      j++;
    } else if (j < m && (i >= n || lcs[i][j + 1] >= lcs[i + 1][j])) pendingTgt.push(tgt[j++]);
    else pendingSrc.push(src[i++]);
  }
  flush();
  // BOS to BOS; EOS and padding to the source's EOS and padding, in order.
  sourceOf[0] = 0;
  const srcEnd = src.at(-1)?.end ?? 1;
  const tgtEnd = tgt.at(-1)?.end ?? 1;
  for (let p = tgtEnd; p < tok.maxLength; p++) sourceOf[p] = Math.min(tok.maxLength - 1, srcEnd + (p - tgtEnd));
  return { sourceOf, swapped, added };
}

/**
 * Token positions of the words the edit changes: in the source, the words the target swapped out or dropped; in the
 * target, the words it swapped in or added. Words both prompts share are in neither.
 */
export function editedTokens(
  tok: ClipTokenizer,
  source: string,
  target: string,
): { source: number[]; target: number[] } {
  const src = tokenSpans(tok, source);
  const tgt = tokenSpans(tok, target);
  const { sourceOf } = alignPrompts(tok, source, target);
  const wordAt = (spans: TokenSpan[], p: number) => spans.find((s) => p >= s.start && p < s.end)?.word;
  const kept = new Set<number>();
  const changed: number[] = [];
  for (const t of tgt)
    for (let p = t.start; p < t.end; p++) {
      const s = sourceOf[p];
      if (s >= 0 && wordAt(src, s) === t.word) kept.add(s);
      else changed.push(p);
    }
  const removed = src.flatMap((s) =>
    Array.from({ length: s.end - s.start }, (_, k) => s.start + k).filter((p) => !kept.has(p)),
  );
  return { source: removed, target: changed };
}

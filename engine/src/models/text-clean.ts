// The text clean-up openai/CLIP's simple_tokenizer.py applies before BPE:
//   whitespace_clean(html.unescape(html.unescape(ftfy.fix_text(text))).strip()).lower()
// CLIP (and Stable Diffusion's text encoder, which is CLIP's) was trained on ids produced that way, so a prompt typed
// with curly quotes, full-width letters or pasted mojibake must reach the BPE as the same text Python would give.
// Hugging Face's slow CLIPTokenizer runs ftfy but skips html.unescape, and its fast one runs neither (NFC only); the
// two differ only on such text, and the training-time pipeline is the one that matters to the model.
//
// ftfy.fix_text is reproduced for its default TextFixerConfig (ftfy 6), with these parts deliberately left out:
// - fix_encoding only undoes UTF-8 read as Latin-1 / Windows-1252 (by far the most common case); the other single-byte
//   encodings ftfy tries (windows-1250/1251/1253/1254/1257, iso-8859-2, macroman, cp437) are not tried;
// - its "badness" heuristic (a large table of mojibake character classes) is replaced by the narrower test in
//   `isStrong` below, which errs towards leaving text alone;
// - restore_byte_a0 (a space that stood for byte A0 inside a sequence), replace_lossy_sequences (sequences with a lost
//   byte become U+FFFD) and the CESU-8 / Java "utf-8-variants" decoding are not implemented;
// - the HTML entity table is HTML 4's 252 names plus `apos` (HTML5 values), not HTML5's ~2200; see NAMED_ENTITIES;
// - max_decode_length (lines over a million characters are fixed in pieces) is ignored.

// Python's str.isspace() / `\s` on str. JavaScript's `\s` differs: it has U+FEFF, and lacks U+001C-U+001F and U+0085.
const PY_WS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WS_RUN = new RegExp(`[${PY_WS}]+`, 'g');
const PY_STRIP = new RegExp(`^[${PY_WS}]+|[${PY_WS}]+$`, 'g');

// Windows-1252 bytes 80-9F as ftfy's "sloppy" codec reads them: the five bytes Windows leaves undefined stay C1.
const CP1252_HIGH = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';
const CP1252_BYTE = new Map<number, number>();
for (let i = 0; i < 32; i++) {
  const cp = CP1252_HIGH.charCodeAt(i);
  if (cp > 0xff) CP1252_BYTE.set(cp, 0x80 + i);
}

/** Python's str.strip() with no argument. */
export function pyStrip(text: string): string {
  return text.replace(PY_STRIP, '');
}

/** CLIP's whitespace_clean: re.sub(r'\s+', ' ', text).strip() with Python's notion of whitespace. */
export function whitespaceClean(text: string): string {
  return pyStrip(text.replace(PY_WS_RUN, ' '));
}

/** The whole pre-BPE pipeline of CLIP's tokenizer: fix_text, two html.unescape, strip, whitespace_clean, lower. */
export function clipCleanText(text: string): string {
  return whitespaceClean(pyStrip(pyHtmlUnescape(pyHtmlUnescape(ftfyFixText(text))))).toLowerCase();
}

// ---------------------------------------------------------------------------------------------------------------
// HTML entities

// HTML 4's entities with HTML5's values (lang/rang moved to U+27E8/9), apos, and the upper-case spellings HTML5 lists.
// Not covered: the other ~1900 HTML5-only names (&starf;, &check;, &NotEqual;, ...), which stay as typed; numeric
// references (&#...; / &#x...;) are all handled.
const NAMED_ENTITIES: Record<string, number> = {
  QUOT: 0x22, quot: 0x22, AMP: 0x26, amp: 0x26, apos: 0x27, LT: 0x3c, lt: 0x3c, GT: 0x3e, gt: 0x3e, nbsp: 0xa0,
  iexcl: 0xa1, cent: 0xa2, pound: 0xa3, curren: 0xa4, yen: 0xa5, brvbar: 0xa6, sect: 0xa7, uml: 0xa8, COPY: 0xa9,
  copy: 0xa9, ordf: 0xaa, laquo: 0xab, not: 0xac, shy: 0xad, REG: 0xae, reg: 0xae, macr: 0xaf, deg: 0xb0,
  plusmn: 0xb1, sup2: 0xb2, sup3: 0xb3, acute: 0xb4, micro: 0xb5, para: 0xb6, middot: 0xb7, cedil: 0xb8, sup1: 0xb9,
  ordm: 0xba, raquo: 0xbb, frac14: 0xbc, frac12: 0xbd, frac34: 0xbe, iquest: 0xbf, Agrave: 0xc0, Aacute: 0xc1,
  Acirc: 0xc2, Atilde: 0xc3, Auml: 0xc4, Aring: 0xc5, AElig: 0xc6, Ccedil: 0xc7, Egrave: 0xc8, Eacute: 0xc9,
  Ecirc: 0xca, Euml: 0xcb, Igrave: 0xcc, Iacute: 0xcd, Icirc: 0xce, Iuml: 0xcf, ETH: 0xd0, Ntilde: 0xd1, Ograve: 0xd2,
  Oacute: 0xd3, Ocirc: 0xd4, Otilde: 0xd5, Ouml: 0xd6, times: 0xd7, Oslash: 0xd8, Ugrave: 0xd9, Uacute: 0xda,
  Ucirc: 0xdb, Uuml: 0xdc, Yacute: 0xdd, THORN: 0xde, szlig: 0xdf, agrave: 0xe0, aacute: 0xe1, acirc: 0xe2,
  atilde: 0xe3, auml: 0xe4, aring: 0xe5, aelig: 0xe6, ccedil: 0xe7, egrave: 0xe8, eacute: 0xe9, ecirc: 0xea,
  euml: 0xeb, igrave: 0xec, iacute: 0xed, icirc: 0xee, iuml: 0xef, eth: 0xf0, ntilde: 0xf1, ograve: 0xf2,
  oacute: 0xf3, ocirc: 0xf4, otilde: 0xf5, ouml: 0xf6, divide: 0xf7, oslash: 0xf8, ugrave: 0xf9, uacute: 0xfa,
  ucirc: 0xfb, uuml: 0xfc, yacute: 0xfd, thorn: 0xfe, yuml: 0xff, OElig: 0x152, oelig: 0x153, Scaron: 0x160,
  scaron: 0x161, Yuml: 0x178, fnof: 0x192, circ: 0x2c6, tilde: 0x2dc, Alpha: 0x391, Beta: 0x392, Gamma: 0x393,
  Delta: 0x394, Epsilon: 0x395, Zeta: 0x396, Eta: 0x397, Theta: 0x398, Iota: 0x399, Kappa: 0x39a, Lambda: 0x39b,
  Mu: 0x39c, Nu: 0x39d, Xi: 0x39e, Omicron: 0x39f, Pi: 0x3a0, Rho: 0x3a1, Sigma: 0x3a3, Tau: 0x3a4, Upsilon: 0x3a5,
  Phi: 0x3a6, Chi: 0x3a7, Psi: 0x3a8, Omega: 0x3a9, alpha: 0x3b1, beta: 0x3b2, gamma: 0x3b3, delta: 0x3b4,
  epsilon: 0x3b5, zeta: 0x3b6, eta: 0x3b7, theta: 0x3b8, iota: 0x3b9, kappa: 0x3ba, lambda: 0x3bb, mu: 0x3bc,
  nu: 0x3bd, xi: 0x3be, omicron: 0x3bf, pi: 0x3c0, rho: 0x3c1, sigmaf: 0x3c2, sigma: 0x3c3, tau: 0x3c4,
  upsilon: 0x3c5, phi: 0x3c6, chi: 0x3c7, psi: 0x3c8, omega: 0x3c9, thetasym: 0x3d1, upsih: 0x3d2, piv: 0x3d6,
  ensp: 0x2002, emsp: 0x2003, thinsp: 0x2009, zwnj: 0x200c, zwj: 0x200d, lrm: 0x200e, rlm: 0x200f, ndash: 0x2013,
  mdash: 0x2014, lsquo: 0x2018, rsquo: 0x2019, sbquo: 0x201a, ldquo: 0x201c, rdquo: 0x201d, bdquo: 0x201e,
  dagger: 0x2020, Dagger: 0x2021, bull: 0x2022, hellip: 0x2026, permil: 0x2030, prime: 0x2032, Prime: 0x2033,
  lsaquo: 0x2039, rsaquo: 0x203a, oline: 0x203e, frasl: 0x2044, euro: 0x20ac, image: 0x2111, weierp: 0x2118,
  real: 0x211c, TRADE: 0x2122, trade: 0x2122, alefsym: 0x2135, larr: 0x2190, uarr: 0x2191, rarr: 0x2192, darr: 0x2193,
  harr: 0x2194, crarr: 0x21b5, lArr: 0x21d0, uArr: 0x21d1, rArr: 0x21d2, dArr: 0x21d3, hArr: 0x21d4, forall: 0x2200,
  part: 0x2202, exist: 0x2203, empty: 0x2205, nabla: 0x2207, isin: 0x2208, notin: 0x2209, ni: 0x220b, prod: 0x220f,
  sum: 0x2211, minus: 0x2212, lowast: 0x2217, radic: 0x221a, prop: 0x221d, infin: 0x221e, ang: 0x2220, and: 0x2227,
  or: 0x2228, cap: 0x2229, cup: 0x222a, int: 0x222b, there4: 0x2234, sim: 0x223c, cong: 0x2245, asymp: 0x2248,
  ne: 0x2260, equiv: 0x2261, le: 0x2264, ge: 0x2265, sub: 0x2282, sup: 0x2283, nsub: 0x2284, sube: 0x2286,
  supe: 0x2287, oplus: 0x2295, otimes: 0x2297, perp: 0x22a5, sdot: 0x22c5, lceil: 0x2308, rceil: 0x2309,
  lfloor: 0x230a, rfloor: 0x230b, loz: 0x25ca, spades: 0x2660, clubs: 0x2663, hearts: 0x2665, diams: 0x2666,
  lang: 0x27e8, rang: 0x27e9,
};
const ENTITY = new Map<string, string>();
// HTML5 still accepts these without the semicolon ("&eacute" / "&copy2024"): the Latin-1 names plus a few ASCII ones.
const LEGACY_ENTITY = new Map<string, string>();
for (const [name, cp] of Object.entries(NAMED_ENTITIES)) {
  const ch = String.fromCodePoint(cp);
  ENTITY.set(name, ch);
  if ((cp >= 0xa0 && cp <= 0xff) || ['quot', 'amp', 'lt', 'gt', 'QUOT', 'AMP', 'LT', 'GT'].includes(name)) {
    LEGACY_ENTITY.set(name, ch);
  }
}

// html.unescape's rule for numeric references, which follows the HTML5 parser rather than chr().
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function numericCharref(num: number): string {
  if (num === 0) return '\ufffd';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return CP1252_HIGH[num - 0x80];
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  const dropped =
    (num >= 0x01 && num <= 0x08) || num === 0x0b || (num >= 0x0e && num <= 0x1f) || num === 0x7f ||
    (num >= 0xfdd0 && num <= 0xfdef) || (num & 0xfffe) === 0xfffe;
  return dropped ? '' : String.fromCodePoint(num);
}

/** Python's html.unescape (HTML5 rules; named references limited to NAMED_ENTITIES). */
export function pyHtmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF_RE, (whole: string, s: string) => {
    if (s[0] === '#') {
      const hex = s[1] === 'x' || s[1] === 'X';
      const digits = s.slice(hex ? 2 : 1).replace(/;$/, '');
      // Precision loss past 2^53 is harmless: every such number is already beyond U+10FFFF.
      return numericCharref(parseInt(digits, hex ? 16 : 10));
    }
    const exact = s.endsWith(';') ? ENTITY.get(s.slice(0, -1)) : LEGACY_ENTITY.get(s);
    if (exact !== undefined) return exact;
    // The longest legacy name that prefixes the run wins, as in browsers ("&copy2024" -> "©2024").
    for (let x = s.length - 1; x > 1; x--) {
      const ch = LEGACY_ENTITY.get(s.slice(0, x));
      if (ch !== undefined) return ch + s.slice(x);
    }
    return whole;
  });
}

// ftfy's own unescape: only complete "&name;" references, plus upper-cased Latin names ("&EACUTE;" -> "É") that text
// run through .upper() ends up with, as long as the upper-case spelling is not an entity of its own.
const FTFY_ENTITY = new Map<string, string>();
for (const [name, ch] of ENTITY) {
  FTFY_ENTITY.set(`&${name};`, ch);
}
for (const [name, ch] of ENTITY) {
  const upper = `&${name.toUpperCase()};`;
  if (name === name.toLowerCase() && !FTFY_ENTITY.has(upper) && pyHtmlUnescape(upper) === upper) {
    FTFY_ENTITY.set(upper, ch.toUpperCase());
  }
}
const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

function ftfyUnescapeHtml(text: string): string {
  return text.replace(FTFY_ENTITY_RE, (ref) => {
    const named = FTFY_ENTITY.get(ref);
    if (named !== undefined) return named;
    if (!ref.startsWith('&#')) return ref;
    const unescaped = pyHtmlUnescape(ref);
    // "&#39a;" decodes only partly; ftfy then keeps the reference as it was.
    return unescaped.includes(';') ? ref : unescaped;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// ftfy.fix_text

/** ftfy.fix_text with its default configuration (see the header for what is left out). */
export function ftfyFixText(text: string): string {
  // ftfy works line by line, and stops unescaping HTML from the first line that holds a "<": such text is
  // probably HTML source, where "&lt;" must stay an escape.
  let unescape = true;
  let out = '';
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos) + 1;
    if (end === 0) end = text.length;
    const segment = text.slice(pos, end);
    if (segment.includes('<')) unescape = false;
    out += fixSegment(segment, unescape);
    pos = end;
  }
  return out;
}

// Every step below can expose work for an earlier one ("&amp;eacute;", mojibake of mojibake), so ftfy repeats the
// sequence until nothing changes; the cap only guards against a cycle nobody has found.
const MAX_PASSES = 16;

function fixSegment(text: string, unescape: boolean): string {
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const before = text;
    if (unescape) text = ftfyUnescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === before) break;
  }
  return text;
}

const C1_RE = /[\x80-\x9f]/g;
function fixC1Controls(text: string): string {
  // Browsers read C1 bytes as Windows-1252; a C1 control in text is that byte gone through Latin-1 instead.
  return text.replace(C1_RE, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]);
}

const LIGATURES: Record<string, string> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ŉ': 'ʼn', 'Ǳ': 'DZ', 'ǲ': 'Dz', 'ǳ': 'dz', 'Ǆ': 'DŽ', 'ǅ': 'Dž', 'ǆ': 'dž', 'Ǉ': 'LJ',
  'ǈ': 'Lj', 'ǉ': 'lj', 'Ǌ': 'NJ', 'ǋ': 'Nj', 'ǌ': 'nj', 'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl', 'ﬃ': 'ffi', 'ﬄ': 'ffl',
  'ﬅ': 'ſt', 'ﬆ': 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');
function fixLatinLigatures(text: string): string {
  // Only Latin typographic ligatures and legacy digraphs: æ, œ and the like are letters people mean to type.
  return text.replace(LIGATURE_RE, (c) => LIGATURES[c]);
}

// Full-width forms to ASCII and half-width katakana/hangul to their normal forms, as NFKC maps them; ideographic
// space too. NFKC itself would also rewrite ², ½, ™ ..., which ftfy keeps.
const WIDTH_MAP = new Map<string, string>([['\u3000', ' ']]);
for (let cp = 0xff01; cp < 0xfff0; cp++) {
  const ch = String.fromCharCode(cp);
  const alt = ch.normalize('NFKC');
  if (alt !== ch) WIDTH_MAP.set(ch, alt);
}
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;
function fixCharacterWidth(text: string): string {
  return text.replace(WIDTH_RE, (c) => WIDTH_MAP.get(c) ?? c);
}

function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

function fixLineBreaks(text: string): string {
  return text.replace(/\r\n|[\r\u2028\u2029\u0085]/g, '\n');
}

function fixSurrogates(text: string): string {
  // A JavaScript string holds pairs as one character already; only unpaired halves remain to replace.
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

function removeTerminalEscapes(text: string): string {
  // Python's \d is any Unicode decimal digit.
  return text.replace(/\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu, '');
}

// Controls nobody means to type; tab, line feed, form feed and carriage return stay because they are whitespace, C1
// controls because fixC1Controls has already dealt with the meaningful ones.
const CONTROL_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
function removeControlChars(text: string): string {
  return text.replace(CONTROL_RE, '');
}

// ---------------------------------------------------------------------------------------------------------------
// Mojibake: UTF-8 bytes that some program decoded as Latin-1 or Windows-1252 ("cafÃ©", "donâ€™t").

interface Utf8Run {
  start: number;
  end: number;
  text: string;
}

/** The byte a character stands for in Latin-1 or sloppy Windows-1252, or -1. */
function mojibakeByte(code: number): number {
  if (code <= 0xff) return code;
  return CP1252_BYTE.get(code) ?? -1;
}

// Typographic punctuation that also sits in the continuation-byte range: legitimate text puts it right after an
// accented capital ("CAFÉ”", "MAÇÃ…"), so such a pair alone proves nothing.
const TYPO_PUNCT = new Set(['’', '‘', '”', '“', '»', '›', '…', '–', '—', '•']);
const LETTER_RE = /\p{L}/u;
// Decoding that lands on an unassigned, private-use or surrogate code point means the bytes were never UTF-8.
const IMPLAUSIBLE_RE = /[\p{Cn}\p{Co}\p{Cs}]/u;
const MIN_FOR_LENGTH = [0, 0x80, 0x800, 0x10000];

/** The strict UTF-8 sequences that the characters of `text` spell when read back as bytes. */
function findSequences(text: string): Utf8Run[] {
  const found: Utf8Run[] = [];
  let i = 0;
  while (i < text.length) {
    const lead = mojibakeByte(text.charCodeAt(i));
    const more =
      lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : lead >= 0xf0 && lead <= 0xf4 ? 3 : 0;
    if (more > 0 && i + more < text.length) {
      let cp = lead & [0, 0x1f, 0x0f, 0x07][more];
      let ok = true;
      for (let k = 1; k <= more && ok; k++) {
        const b = mojibakeByte(text.charCodeAt(i + k));
        ok = b >= 0x80 && b <= 0xbf;
        cp = (cp << 6) | (b & 0x3f);
      }
      // The minimum rules out overlong forms; the range check also rules out UTF-16 surrogates (CESU-8).
      if (ok && cp >= MIN_FOR_LENGTH[more] && cp <= 0x10ffff && !IMPLAUSIBLE_RE.test(String.fromCodePoint(cp))) {
        found.push({ start: i, end: i + more + 1, text: String.fromCodePoint(cp) });
        i += more + 1;
        continue;
      }
    }
    i++;
  }
  return found;
}

/**
 * Whether one sequence is evidence of mojibake on its own. "Ã"/"Â" followed by a continuation character, three- and
 * four-byte sequences, and C1 controls almost never occur in real text; other accented capitals followed by a
 * symbol do, so they count only inside a word ("WrocÅ‚aw"), and never when the follower is typographic punctuation.
 */
function isStrong(text: string, seq: Utf8Run): boolean {
  const lead = text[seq.start];
  const cont = text.slice(seq.start + 1, seq.end);
  const nextCp = text.codePointAt(seq.end);
  const nextIsLetter = nextCp !== undefined && LETTER_RE.test(String.fromCodePoint(nextCp));
  const allTypo = Array.from(cont).every((c) => TYPO_PUNCT.has(c));
  if (allTypo && !(nextIsLetter && 'ÂÃâ'.includes(lead))) return false;
  if (/[\x80-\x9f]/.test(cont) || cont.length >= 2 || lead === 'Â' || lead === 'Ã') return true;
  return nextIsLetter && !TYPO_PUNCT.has(cont);
}

function fixEncoding(text: string): string {
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const next = fixEncodingOnce(text);
    if (next === text) break;
    text = next;
  }
  return text;
}

function fixEncodingOnce(text: string): string {
  if (/^[\x00-\x7f]*$/.test(text)) return text;
  const seqs = findSequences(text);
  const strong = seqs.map((s) => isStrong(text, s));
  if (!strong.includes(true)) return text;

  const replace = (chosen: Utf8Run[]): string => {
    let out = '';
    let pos = 0;
    for (const s of chosen) {
      out += text.slice(pos, s.start) + s.text;
      pos = s.end;
    }
    return out + text.slice(pos);
  };

  // The whole string is one encoding mistake when it can be written in Latin-1 or Windows-1252 and every non-ASCII
  // character belongs to a sequence; then even the weak-looking sequences are mojibake and are decoded as well.
  let latin1 = true;
  let cp1252 = true;
  const inSeq = new Uint8Array(text.length);
  for (const s of seqs) inSeq.fill(1, s.start, s.end);
  let everyHighInSeq = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) latin1 = false;
    if (c >= 0x80 && c <= 0x9f ? ![0x81, 0x8d, 0x8f, 0x90, 0x9d].includes(c) : c > 0xff && !CP1252_BYTE.has(c)) {
      cp1252 = false;
    }
    if (c >= 0x80 && !inSeq[i]) everyHighInSeq = false;
  }
  if ((latin1 || cp1252) && everyHighInSeq) return replace(seqs);

  // Otherwise fix runs of adjacent sequences that hold real evidence, unless the run follows a stray continuation
  // character: that is a larger garble, and decoding part of it would only make it harder to read.
  const chosen: Utf8Run[] = [];
  for (let a = 0; a < seqs.length; ) {
    let b = a + 1;
    while (b < seqs.length && seqs[b].start === seqs[b - 1].end) b++;
    const prev = seqs[a].start > 0 ? text[seqs[a].start - 1] : '';
    const prevByte = prev ? mojibakeByte(prev.charCodeAt(0)) : -1;
    const afterGarble = prevByte >= 0x80 && prevByte <= 0xbf && prev !== '\u00a0' && !TYPO_PUNCT.has(prev);
    if (!afterGarble && strong.slice(a, b).includes(true)) chosen.push(...seqs.slice(a, b));
    a = b;
  }
  return chosen.length > 0 ? replace(chosen) : text;
}

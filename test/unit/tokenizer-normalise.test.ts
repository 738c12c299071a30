import * as path from 'node:path';
import { ClipTokenizer } from '../../engine/src/models/tokenizer';
import {
  clipCleanText,
  ftfyFixText,
  pyHtmlUnescape,
  pyStrip,
  whitespaceClean,
} from '../../engine/src/models/text-clean';

// The real 49408-entry CLIP vocabulary (SD 1.5's tokenizer), so the ids below are the ones the text encoder sees.
const REAL = path.join(__dirname, '..', 'fixtures', 'real-export', 'sd15-tiny', 'tokenizer');

describe('prompt clean-up with the real CLIP vocabulary', () => {
  const t = ClipTokenizer.fromFolder(REAL);
  const same = (messy: string, clean: string) => expect([messy, t.tokenize(messy)]).toEqual([messy, t.tokenize(clean)]);

  it('has the ids derived from vocab.json for the clean prompts', () => {
    expect(t.vocabSize).toBe(49408);
    // don't = "don" + the contraction "'t", each its own pre-token and so each ending a word
    expect(t.tokenize("don't")).toEqual([847, 713]); // don</w>, 't</w>
    expect(t.tokenize('red car')).toEqual([736, 1615]); // red</w>, car</w>
    expect(t.tokenize('café')).toEqual([15304]); // cafÃ©</w>: é is the bytes C3 A9
    expect(t.tokenize('&')).toEqual([261]); // &</w>
    expect(t.tokenize('fish')).toEqual([2759]); // fish</w>
    expect(t.tokenize('über')).toEqual([6522, 1516]); // Ã¼, ber</w>
    expect(t.encode('don’t').ids.slice(0, 4)).toEqual([49406, 847, 713, 49407]);
  });

  it('straightens curly quotes and apostrophes', () => {
    expect(t.tokenize('don’t')).toEqual([847, 713]);
    same('don’t', "don't");
    same('“quoted” ‘single’', `"quoted" 'single'`);
    same('„low“ ‚low‘ ‛rev‟', `"low" 'low' 'rev"`);
    same('youʼre', "you're");
  });

  it('maps full-width and half-width forms', () => {
    expect(t.tokenize('ＲＥＤ ｃａｒ')).toEqual([736, 1615]);
    same('ＲＥＤ ｃａｒ', 'red car');
    same('ＡＢＣ１２３！', 'abc123!');
    same('red\u3000car', 'red car');
    // half-width katakana plus a half-width voicing mark compose to the full-width letters
    same('ｶﾞｷﾞ ﾃｽﾄ', 'ガギ テスト');
  });

  it('breaks Latin ligatures', () => {
    expect(t.tokenize('ﬁsh')).toEqual([2759]);
    same('ﬁsh ﬂower', 'fish flower');
    same('ﬀ ﬃ ﬄ ﬆ', 'ff ffi ffl st');
    same('Ĳssel', 'ijssel');
  });

  it('repairs UTF-8 that was read as Latin-1 / Windows-1252', () => {
    expect(t.tokenize('cafÃ©')).toEqual([15304]);
    same('cafÃ©', 'café');
    same('Ã¼ber', 'über');
    same('donâ€™t', "don't");
    same('â€œredâ€\u009d car', '"red" car');
    same('ÃƒÂ©clair', 'éclair'); // encoded twice
    same('Ã…lesund', 'ålesund');
    same('WrocÅ‚aw', 'wrocław');
    same('ÐŸÑ€Ð¸Ð²ÐµÑ‚', 'привет');
    same('ä¸\u00adæ–‡ ðŸ˜€', '中文 😀');
    // mojibake next to characters Windows-1252 cannot hold is fixed piece by piece
    same('cafÃ© 😀 中文', 'café 😀 中文');
  });

  it('unescapes HTML entities, twice over as CLIP does', () => {
    expect(t.tokenize('&amp;')).toEqual([261]);
    same('&amp;', '&');
    same('&amp;amp;', '&');
    same('&quot;red&quot; &#39;car&#39;', `"red" 'car'`);
    same('&eacute;clair &Eacute;CLAIR &EACUTE;', 'éclair éclair é');
    same('&#x27;&#8217;&rsquo;', "'''");
    same('&lt;red&gt;', '<red>');
    same('a&nbsp;red&ensp;car', 'a red car');
    same('&ndash;&mdash;&hellip;&trade;&copy;&reg;&deg;&times;', '–—…™©®°×');
    // legacy names still work without the semicolon, as in browsers and Python's html.unescape
    same('&copy2024 &eacute', '©2024 é');
    same('AT&T rock&roll', 'at&t rock&roll');
  });

  it('removes control characters and byte order marks instead of treating them as spaces', () => {
    expect(t.tokenize('\ufeffred car')).toEqual([736, 1615]);
    same('\ufeffred car', 'red car');
    // ftfy deletes U+FEFF and U+001C-U+001F, so they join words; U+0085 is read as Windows-1252's "…"
    same('red\ufeffcar', 'redcar');
    same('a\u0085red\u001fcar', 'a…redcar');
    same('\u001b[31mred\u001b[0m car', 'red car');
    same('a\u2028red\r\ncar\u00a0\u2003', 'a red car');
  });

  it('leaves legitimate non-ASCII text alone', () => {
    for (const text of [
      'café',
      'naïve',
      'Ålesund',
      '½ cup',
      'Straße',
      'Ærøskøbing',
      'São Paulo',
      'MAÇÃ',
      "CAFÉ'S",
      'Œuvre µm 24°C © 2024',
      '中文',
      '日本語のテキスト',
      '😀 🐱‍👤',
      'Привет',
      'Ελληνικά',
      'ÀÁÂÃÄÅ',
    ]) {
      const lower = text.toLowerCase();
      expect([text, clipCleanText(text)]).toEqual([text, lower]);
      // decode puts a space after every pre-token ("24°c" -> "2 4 ° c"); the characters themselves must survive
      const squash = (s: string) => s.replace(/ /g, '');
      expect([text, squash(t.decode(t.tokenize(text)))]).toEqual([text, squash(lower)]);
    }
    expect(t.tokenize('½')).toEqual([33613]); // Â½</w>
  });

  it('decodes to the cleaned text', () => {
    expect(t.decode(t.encode('don’t “go” ＲＥＤ ﬁsh cafÃ© &amp; more').ids)).toBe(`don 't " go " red fish café & more`);
  });
});

describe('ftfyFixText', () => {
  it('does not touch text that only looks like mojibake', () => {
    // accented capital + closing punctuation at the end of a word is ordinary typing
    expect(ftfyFixText('“CAFÉ” MAÇÃ… NÃO')).toBe('"CAFÉ" MAÇÃ… NÃO');
    expect(ftfyFixText('café—“hello”')).toBe('café—"hello"');
    expect(ftfyFixText('CAFÉ’s')).toBe("CAFÉ's");
    expect(ftfyFixText('3×½ size, naïve, ½°')).toBe('3×½ size, naïve, ½°');
    expect(ftfyFixText('\u00ad')).toBe('\u00ad');
  });

  it('keeps case and line breaks (lower case and whitespace are CLIP steps, not ftfy ones)', () => {
    expect(ftfyFixText('ＲＥＤ\r\nCar\u2029x')).toBe('RED\nCar\nx');
    expect(ftfyFixText('e\u0301')).toBe('é');
  });

  it('stops unescaping HTML from the first line with a "<", as ftfy does', () => {
    expect(ftfyFixText('&amp; &rsquo;\n<b> &amp;\n&amp;')).toBe("& '\n<b> &amp;\n&amp;");
    // CLIP's own html.unescape runs afterwards either way, but after the quotes were straightened
    expect(clipCleanText('<b> &rsquo;')).toBe('<b> ’');
    expect(clipCleanText('&rsquo;')).toBe("'");
  });

  it('decodes mojibake of HTML-escaped text in the same pass', () => {
    expect(ftfyFixText('caf&Atilde;&copy;')).toBe('café');
  });
});

describe('pyHtmlUnescape', () => {
  it('follows Python html.unescape for numeric references', () => {
    expect(pyHtmlUnescape('&#65;&#x42;&#X43;&#68')).toBe('ABCD');
    expect(pyHtmlUnescape('&#128;&#157;&#150;')).toBe('€\u009d–');
    expect(pyHtmlUnescape('&#0;&#xD800;&#1114112;&#99999999999999999999;')).toBe('\ufffd'.repeat(4));
    expect(pyHtmlUnescape('a&#1;b&#x1F;c&#xFFFF;d&#13;e')).toBe('abcd\re');
    expect(pyHtmlUnescape('&#x1F600;')).toBe('😀');
  });

  it('follows Python html.unescape for named references', () => {
    expect(pyHtmlUnescape('&amp;amp;')).toBe('&amp;');
    expect(pyHtmlUnescape('&notit; &notin; &ampx &Eacutex; &EACUTE;')).toBe('¬it; ∉ &x Éx; &EACUTE;');
    expect(pyHtmlUnescape('&unknown; & &; &#;')).toBe('&unknown; & &; &#;');
    expect(pyHtmlUnescape('&lang;&rang;&apos;')).toBe("⟨⟩'");
  });
});

describe('Python whitespace', () => {
  it('collapses exactly what str.isspace() accepts', () => {
    const pyWs = '\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000';
    expect(whitespaceClean(`${pyWs}a${pyWs}b${pyWs}`)).toBe('a b');
    // JavaScript's \s has U+FEFF; Python's does not. U+200B and U+180E are not whitespace in either.
    expect(whitespaceClean('a\ufeffb\u200bc\u180ed')).toBe('a\ufeffb\u200bc\u180ed');
    expect(pyStrip('\ufeff x \x1c')).toBe('\ufeff x');
  });
});

import {
  framesToTimecode,
  isDropFrame,
  parseTime,
  rateOf,
  secondsToTimecode,
  timecodeToFrames,
} from '../../engine/src/api/timecode';

const NTSC = { num: 30000, den: 1001 };
const NTSC60 = { num: 60000, den: 1001 };

describe('SMPTE timecode', () => {
  test('non-drop rates count frames at the rate', () => {
    expect(framesToTimecode(0, 25)).toBe('00:00:00:00');
    expect(framesToTimecode(24, 25)).toBe('00:00:00:24');
    expect(framesToTimecode(25, 25)).toBe('00:00:01:00');
    expect(framesToTimecode(25 * 3612 + 12, 25)).toBe('01:00:12:12');
    expect(framesToTimecode(24 * 61, { num: 24, den: 1 })).toBe('00:01:01:00');
  });

  test('23.976 is not drop-frame and counts at 24', () => {
    const r = { num: 24000, den: 1001 };
    expect(isDropFrame(r)).toBe(false);
    expect(framesToTimecode(24 * 60, r)).toBe('00:01:00:00');
  });

  test('29.97 drops two frame numbers each minute but every tenth', () => {
    expect(isDropFrame(NTSC)).toBe(true);
    expect(framesToTimecode(1799, NTSC)).toBe('00;00;59;29');
    expect(framesToTimecode(1800, NTSC)).toBe('00;01;00;02');
    expect(framesToTimecode(17982, NTSC)).toBe('00;10;00;00');
    expect(framesToTimecode(17981, NTSC)).toBe('00;09;59;29');
    // One hour of 29.97 is 107892 frames: the label reaches 01:00:00:00 with the wall clock.
    expect(framesToTimecode(107892, NTSC)).toBe('01;00;00;00');
  });

  test('59.94 drops four', () => {
    expect(framesToTimecode(3599, NTSC60)).toBe('00;00;59;59');
    expect(framesToTimecode(3600, NTSC60)).toBe('00;01;00;04');
  });

  test('labels parse back to the same frame at every rate', () => {
    for (const rate of [NTSC, NTSC60, { num: 25, den: 1 }, { num: 24000, den: 1001 }]) {
      for (const f of [0, 1, 1799, 1800, 1801, 17981, 17982, 17983, 35964, 107891, 107892, 123456]) {
        expect(timecodeToFrames(framesToTimecode(f, rate), rate)).toBe(f);
      }
    }
  });

  test('labels that do not exist are refused', () => {
    expect(timecodeToFrames('00;01;00;00', NTSC)).toBeUndefined();
    expect(timecodeToFrames('00:00:00:25', 25)).toBeUndefined();
    expect(timecodeToFrames('12.5', 25)).toBeUndefined();
    expect(timecodeToFrames('00;10;00;00', NTSC)).toBe(17982);
  });

  test('decimal rates from hosts map to their exact rate', () => {
    expect(rateOf(29.97)).toEqual(NTSC);
    expect(rateOf(29.97002997)).toEqual(NTSC);
    expect(rateOf(23.976)).toEqual({ num: 24000, den: 1001 });
    expect(rateOf(25)).toEqual({ num: 25000, den: 1000 });
    expect(secondsToTimecode(3612.48, 25)).toBe('01:00:12:12');
    expect(secondsToTimecode(60.06, 29.97)).toBe('00;01;00;02');
  });
});

describe('times typed by an editor', () => {
  test('timecode or seconds', () => {
    expect(parseTime('00:00:01:12', 24)).toBe(1.5);
    expect(parseTime('1.5', 24)).toBe(1.5);
    expect(parseTime(' 2 ', 25)).toBe(2);
    expect(parseTime('00;01;00;02', NTSC)).toBeCloseTo((1800 * 1001) / 30000, 9);
  });

  test('anything else is not a time', () => {
    expect(parseTime('', 24)).toBeUndefined();
    expect(parseTime('-1', 24)).toBeUndefined();
    expect(parseTime('1s', 24)).toBeUndefined();
    expect(parseTime('00:00:01:24', 24)).toBeUndefined();
    expect(parseTime('00;01;00;00', NTSC)).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { DEBIAN_HEADLESS_SHELL, resolveChromiumPath } from './browser.js';

describe('resolveChromiumPath', () => {
  it('takes the configured path first, whatever is installed', () => {
    expect(resolveChromiumPath('/opt/chrome/chrome', () => true)).toBe('/opt/chrome/chrome');
  });

  it("prefers Debian's headless shell to its full Chromium, and falls back to the latter", () => {
    expect(resolveChromiumPath(undefined, (path) => path === DEBIAN_HEADLESS_SHELL)).toBe(
      DEBIAN_HEADLESS_SHELL,
    );
    expect(resolveChromiumPath(undefined, () => false)).toBe('/usr/bin/chromium');
  });
});

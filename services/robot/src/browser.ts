import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { RpaError, type BrowserOptions, type Logger } from '@rpa/shared';
import type { Breaker } from './breakers.js';
import type { StorageState } from './restorePoints.js';

/** Chromium flags for unattended, headless work: nothing phones home, updates itself or needs a GPU. */
export const CHROMIUM_ARGS = [
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const DEBIAN_CHROMIUM = '/usr/bin/chromium';

/** The Chromium to launch: the configured path, else Playwright's own build when installed, else Debian's. */
export function resolveChromiumPath(
  configured: string | undefined,
  exists: (path: string) => boolean = existsSync,
): string {
  if (configured) return configured;
  let bundled: string | undefined;
  try {
    bundled = chromium.executablePath();
  } catch {
    bundled = undefined;
  }
  return bundled && exists(bundled) ? bundled : DEBIAN_CHROMIUM;
}

/** The browser could not be started or has gone away. */
export class BrowserUnavailableError extends RpaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BROWSER_UNAVAILABLE', message, options);
  }
}

/**
 * The robot's one Chromium, shared by all its sessions; each session gets its own context, never shared. A browser
 * that crashed is launched again (through the launch breaker) at once, and again on use if that failed.
 */
export class RobotBrowser {
  private browser: Browser | null = null;
  private launching: Promise<Browser> | null = null;
  private closed = false;
  /** Browsers closed on purpose by `restart`: their disconnect is expected, not a crash. */
  private readonly retired = new WeakSet<Browser>();

  constructor(private readonly options: { executablePath: string; launchBreaker: Breaker; logger: Logger }) {}

  /** Launches the browser now rather than on first use. */
  async start(): Promise<void> {
    await this.ensure();
  }

  /** A fresh context with the session's viewport, user agent and locale, and the storage state to restore if any. */
  async newContext(
    browserOptions: BrowserOptions,
    storageState: StorageState | null = null,
  ): Promise<BrowserContext> {
    const browser = await this.ensure();
    return browser.newContext({
      ...(browserOptions.viewport ? { viewport: browserOptions.viewport } : {}),
      ...(browserOptions.userAgent ? { userAgent: browserOptions.userAgent } : {}),
      ...(browserOptions.locale ? { locale: browserOptions.locale } : {}),
      ...(storageState ? { storageState } : {}),
    });
  }

  get connected(): boolean {
    return this.browser?.isConnected() ?? false;
  }

  /** The contexts open right now (sessions being run). */
  contexts(): BrowserContext[] {
    return this.browser?.contexts() ?? [];
  }

  /**
   * Closes the browser (and every context in it) and launches a new one through the launch breaker. The sessions
   * it held lose their pages: their runners see that at their next step and hand them over to recovery. A no-op
   * once the browser is closed for good.
   */
  async restart(): Promise<void> {
    if (this.closed) return;
    const old = this.browser ?? (this.launching ? await this.launching.catch(() => null) : null);
    if (old) {
      this.retired.add(old);
      if (this.browser === old) this.browser = null;
      await old
        .close()
        .catch((error: unknown) =>
          this.options.logger.warn({ err: error }, 'closing the old browser failed'),
        );
    }
    if (!this.closed) await this.ensure();
  }

  /** Closes the browser and every context in it; later calls fail. Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    const pending = this.launching;
    const browser = this.browser ?? (pending ? await pending.catch(() => null) : null);
    this.browser = null;
    await browser?.close();
  }

  private async ensure(): Promise<Browser> {
    if (this.closed) throw new BrowserUnavailableError('the browser is closed');
    if (this.browser?.isConnected()) return this.browser;
    this.launching ??= this.launch().finally(() => {
      this.launching = null;
    });
    return this.launching;
  }

  private async launch(): Promise<Browser> {
    const { executablePath, launchBreaker, logger } = this.options;
    let browser: Browser;
    try {
      browser = await launchBreaker.run(() =>
        chromium.launch({
          executablePath,
          headless: true,
          args: CHROMIUM_ARGS,
          // The robot's own shutdown closes the browser after the steps in hand finish; Playwright must not kill it first.
          handleSIGINT: false,
          handleSIGTERM: false,
          handleSIGHUP: false,
        }),
      );
    } catch (error) {
      throw new BrowserUnavailableError(`could not launch Chromium at ${executablePath}`, { cause: error });
    }
    if (this.closed) {
      await browser.close();
      throw new BrowserUnavailableError('the browser is closed');
    }
    browser.on('disconnected', () => {
      if (this.browser === browser) this.browser = null;
      // A restart launches its successor itself.
      if (this.closed || this.retired.has(browser)) return;
      // Relaunch now so that readiness recovers without waiting for the next session; failures are retried on use.
      logger.warn({ executablePath }, 'browser disconnected: relaunching');
      this.ensure().catch((error: unknown) => logger.error({ err: error }, 'relaunching the browser failed'));
    });
    this.browser = browser;
    logger.info({ executablePath, version: browser.version() }, 'browser launched');
    return browser;
  }
}

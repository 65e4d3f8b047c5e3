import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { RpaError, type BrowserOptions, type Logger } from '@rpa/shared';
import type { Breaker } from './breakers.js';
import { attachEgress } from './egress/contextEgress.js';
import type { EgressChannel, EgressIdentity, EgressProxy } from './egress/proxy.js';
import type { StorageState } from './restorePoints.js';

/**
 * Chromium flags for unattended, headless work: nothing phones home, updates itself or needs a GPU. WebRTC may not
 * send UDP outside the proxy (it would reach local addresses the egress policy refuses). Playwright talks to the
 * browser over a pipe: no remote-debugging port is ever opened, and none may be added here.
 */
export const CHROMIUM_ARGS = [
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--force-webrtc-ip-handling-policy=disable_non_proxied_udp',
  '--dns-prefetch-disable',
  // A failed navigation must stay failed: Chromium would otherwise reload the error page on its own, knocking on a
  // refused address again and cutting into the session's next navigation.
  '--disable-auto-reload',
];

/**
 * Proxy settings that send everything through the egress proxy. Chromium bypasses proxies for loopback by default;
 * `<-loopback>` removes that exception, so 127.0.0.1 and localhost are proxied (and refused) like any address.
 */
function proxySettings(channel: EgressChannel): { server: string; bypass: string } {
  return { server: channel.url, bypass: '<-loopback>' };
}

/**
 * Debian's headless shell (package `chromium-headless-shell`): Chromium's old headless mode, the build Playwright
 * itself runs headless. On two cores it runs a session's context for about a quarter of the CPU the full browser in
 * its new headless mode takes (measured: 0.23 against 0.83 CPU-seconds for a context's life: open, load a page, read
 * it, close), and opens it four times as fast. The binary itself, not the /usr/bin wrapper script, so that the
 * browser is the launched process.
 */
export const DEBIAN_HEADLESS_SHELL = '/usr/lib/chromium/chromium-headless-shell';
const DEBIAN_CHROMIUM = '/usr/bin/chromium';

/**
 * The Chromium to launch: the configured path, else Playwright's own build when installed, else Debian's headless
 * shell when installed, else Debian's Chromium.
 */
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
  if (bundled && exists(bundled)) return bundled;
  return exists(DEBIAN_HEADLESS_SHELL) ? DEBIAN_HEADLESS_SHELL : DEBIAN_CHROMIUM;
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

  /** The browser-wide channel: used by any context not given its own (there should be none). */
  private defaultChannel: EgressChannel | null = null;

  constructor(
    private readonly options: {
      executablePath: string;
      launchBreaker: Breaker;
      logger: Logger;
      /** Every connection of the browser goes through it. */
      egress: EgressProxy;
    },
  ) {}

  /** Launches the browser now rather than on first use. */
  async start(): Promise<void> {
    await this.ensure();
  }

  /**
   * A fresh context with the session's viewport, user agent and locale, and the storage state to restore if any. Its
   * traffic goes through its own egress channel, under the allow-list of the session's tenant (`identity`); the
   * channel closes with the context. Service workers are blocked: their fetches would escape the page's checks.
   */
  async newContext(
    browserOptions: BrowserOptions,
    storageState: StorageState | null = null,
    identity: EgressIdentity | null = null,
  ): Promise<BrowserContext> {
    const browser = await this.ensure();
    const channel = await this.options.egress.open(identity);
    let context: BrowserContext;
    try {
      context = await browser.newContext({
        ...(browserOptions.viewport ? { viewport: browserOptions.viewport } : {}),
        ...(browserOptions.userAgent ? { userAgent: browserOptions.userAgent } : {}),
        ...(browserOptions.locale ? { locale: browserOptions.locale } : {}),
        ...(storageState ? { storageState } : {}),
        proxy: proxySettings(channel),
        serviceWorkers: 'block',
      });
    } catch (error) {
      await channel.close();
      throw error;
    }
    attachEgress(context, channel);
    context.once('close', () => void channel.close());
    return context;
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
    try {
      await browser?.close();
    } finally {
      await this.defaultChannel?.close();
    }
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
    const { executablePath, launchBreaker, logger, egress } = this.options;
    this.defaultChannel ??= await egress.open(null);
    const defaultProxy = proxySettings(this.defaultChannel);
    let browser: Browser;
    try {
      browser = await launchBreaker.run(() =>
        chromium.launch({
          executablePath,
          headless: true,
          args: CHROMIUM_ARGS,
          proxy: defaultProxy,
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

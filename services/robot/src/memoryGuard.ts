import { Counter, type Logger, type Registry } from '@rpa/shared';

/** Default BROWSER_MEMORY_LIMIT_MB: a Chromium past this much resident memory is restarted. */
export const DEFAULT_BROWSER_MEMORY_LIMIT_MB = 4_096;

export interface BrowserMemoryGuardOptions {
  /** Resident memory past which the browser is restarted; 0 turns the guard off. */
  limitBytes: number;
  /** Closes the browser and launches a new one (RobotBrowser.restart). */
  restart: () => Promise<void>;
  logger: Logger;
  registry: Registry;
}

/**
 * Restarts the robot's Chromium when its resident memory passes a limit, before the kernel's OOM killer takes the
 * whole robot (and every session on it) down. A long-lived browser leaks: renderers of closed contexts, caches,
 * detached DOM. A restart costs the sessions it held their pages, which is the failure recovery already handles:
 * each runner finds its page gone at its next step, hands the session back, and whoever takes it (this robot
 * included) rebuilds it from its restore point. Fed with each heartbeat's measurement; one restart at a time.
 */
export class BrowserMemoryGuard {
  private readonly restarts: Counter<'reason'>;
  private running: Promise<void> | null = null;

  constructor(private readonly options: BrowserMemoryGuardOptions) {
    this.restarts = new Counter({
      name: 'rpa_robot_browser_restarts_total',
      help: 'Browser restarts, by reason (memory: its resident memory passed BROWSER_MEMORY_LIMIT_MB)',
      labelNames: ['reason'],
      registers: [options.registry],
    });
    this.restarts.inc({ reason: 'memory' }, 0);
  }

  /**
   * Checks one measurement (null when memory cannot be read) and starts a restart when it is over the limit and
   * none is running. Returns whether it started one; the restart goes on in the background.
   */
  observe(memoryBytes: number | null): boolean {
    const { limitBytes, logger } = this.options;
    if (limitBytes <= 0 || memoryBytes === null || memoryBytes <= limitBytes || this.running) return false;
    logger.warn(
      { memoryBytes, limitBytes },
      'browser memory over its limit: restarting the browser; its sessions fail over to recovery',
    );
    this.restarts.inc({ reason: 'memory' });
    this.running = this.options
      .restart()
      .then(
        () => logger.info({}, 'browser restarted'),
        (error: unknown) => logger.error({ err: error }, 'restarting the browser failed'),
      )
      .finally(() => {
        this.running = null;
      });
    return true;
  }

  /** Observes a heartbeat's measurement and hands it back unchanged, for the heartbeat to report. */
  observed(memoryBytes: number | null): number | null {
    this.observe(memoryBytes);
    return memoryBytes;
  }

  /** Resolves once no restart is running. */
  async idle(): Promise<void> {
    await this.running;
  }
}

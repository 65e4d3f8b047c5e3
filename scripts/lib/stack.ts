import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL_SCOPES, generateApiKey, type ApiKeyEntry } from '@rpa/shared';
import { freePort, waitFor } from '@rpa/shared/testing';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export type ServiceName = 'command-api' | 'query-api' | 'projector' | 'robot';

const ENTRY: Record<ServiceName, string> = {
  'command-api': 'services/command-api/src/server.ts',
  'query-api': 'services/query-api/src/server.ts',
  projector: 'services/projector/src/main.ts',
  robot: 'services/robot/src/main.ts',
};

/** One service running as its own process, with its recent output kept for error messages. */
export class ServiceProcess {
  private readonly tail: string[] = [];
  private readonly log: WriteStream | null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly opsUrl: string,
    logFile: string | null,
    /** The ROBOT_ID of a robot process; null for the other services. */
    readonly robotId: string | null = null,
  ) {
    this.log = logFile ? createWriteStream(logFile, { flags: 'a' }) : null;
    const keep = (chunk: Buffer) => {
      this.log?.write(chunk);
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        this.tail.push(line);
        if (this.tail.length > 200) this.tail.shift();
      }
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** The operating-system process id. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines the process printed (pino JSON). */
  recentOutput(lines = 40): string {
    return this.tail.slice(-lines).join('\n');
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited within the grace period. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
    await new Promise<void>((resolve) => (this.log ? this.log.end(resolve) : resolve()));
  }
}

export interface StackOptions {
  natsUrl: string;
  /** NATS name prefix; a unique one lets several stacks share a server. */
  prefix: string;
  /** Fixed ports; 0 or absent picks a free one. */
  ports?: Partial<Record<'commandApi' | 'queryApi' | 'projector', number>>;
  robots?: number;
  /** Directory for one log file per process; without it output is only kept in memory. */
  logDir?: string;
  logLevel?: string;
  /** Extra environment for every service (e.g. ACK_WAIT_MS). */
  env?: Record<string, string>;
  /** Extra environment for the robots only (e.g. their secrets), after `env`. */
  robotEnv?: Record<string, string>;
  /**
   * Origins (`http://127.0.0.1:8080`) the robots may reach although the egress policy refuses loopback and private
   * addresses: each becomes an EGRESS_ALLOW entry for its host and port only.
   */
  egressAllow?: string[];
  /** The tenant of the key generated for this stack; default `default`. */
  tenant?: string;
  /** More API keys the two APIs accept, besides the generated one (only their hashes are passed on). */
  apiKeys?: ApiKeyEntry[];
}

export interface Stack {
  commandApiUrl: string;
  queryApiUrl: string;
  /** A key generated at start for `tenant`, with every scope; the APIs hold only its hash. */
  apiKey: string;
  /** The generated key's tenant. */
  tenant: string;
  services: ServiceProcess[];
  robots: ServiceProcess[];
  /** Starts one more robot process and waits until it is ready. */
  addRobot(extraEnv?: Record<string, string>): Promise<ServiceProcess>;
  /** The robot process started with this ROBOT_ID. */
  robotById(robotId: string): ServiceProcess | undefined;
  stop(): Promise<void>;
}

async function launch(
  service: ServiceName,
  label: string,
  env: Record<string, string>,
  opsPort: number,
  logDir: string | undefined,
  robotId: string | null = null,
): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, ENTRY[service])], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (logDir) mkdirSync(logDir, { recursive: true });
  const proc = new ServiceProcess(
    label,
    child,
    `http://127.0.0.1:${opsPort}`,
    logDir ? join(logDir, `${label}.log`) : null,
    robotId,
  );
  try {
    await waitFor(
      async () => {
        if (!proc.running) throw new Error(`${label} exited`);
        const res = await fetch(`${proc.opsUrl}/readyz`).catch(() => null);
        return res?.status === 200;
      },
      { timeoutMs: 60_000, intervalMs: 100, description: `${label} to be ready` },
    );
  } catch (error) {
    proc.kill('SIGKILL');
    throw new Error(`${label} did not become ready:\n${proc.recentOutput()}`, { cause: error });
  }
  return proc;
}

/** Starts the four services as processes against a NATS server, and waits until each reports ready. */
export async function startStack(options: StackOptions): Promise<Stack> {
  const common: Record<string, string> = {
    NATS_URL: options.natsUrl,
    NATS_PREFIX: options.prefix,
    LOG_LEVEL: options.logLevel ?? 'info',
    HOST: '127.0.0.1',
    ...options.env,
  };
  // The APIs refuse to start without credentials: a fresh key for this stack, passed on as its hash only.
  const tenant = options.tenant ?? 'default';
  const generated = generateApiKey({ id: `stack-${options.prefix}`, tenant, scopes: [...ALL_SCOPES] });
  const apiEnv = { API_KEYS: JSON.stringify([generated.entry, ...(options.apiKeys ?? [])]) };
  const pick = async (p?: number) => (p && p > 0 ? p : freePort());
  const commandApiPort = await pick(options.ports?.commandApi);
  const queryApiPort = await pick(options.ports?.queryApi);
  const projectorPort = await pick(options.ports?.projector);
  const services: ServiceProcess[] = [];
  const robots: ServiceProcess[] = [];
  let robotCount = 0;
  const addRobot = async (extraEnv: Record<string, string> = {}) => {
    const port = await freePort();
    robotCount += 1;
    const env = {
      ...common,
      ...(options.egressAllow?.length
        ? { EGRESS_ALLOW: options.egressAllow.map((origin) => new URL(origin).host).join(',') }
        : {}),
      HEALTH_PORT: String(port),
      ROBOT_ID: `robot-${robotCount}-${options.prefix}`,
      ...options.robotEnv,
      ...extraEnv,
    };
    const robot = await launch('robot', `robot-${robotCount}`, env, port, options.logDir, env.ROBOT_ID);
    robots.push(robot);
    services.push(robot);
    return robot;
  };
  const stop = async () => {
    // Robots first, so that they hand their sessions back while the rest is still up.
    await Promise.all(robots.map((r) => r.stop()));
    await Promise.all(services.filter((s) => !robots.includes(s)).map((s) => s.stop()));
  };
  try {
    // The projector creates the work stream and KV buckets the others rely on, so it goes first.
    services.push(
      await launch(
        'projector',
        'projector',
        { ...common, HEALTH_PORT: String(projectorPort) },
        projectorPort,
        options.logDir,
      ),
    );
    const [commandApi, queryApi] = await Promise.all([
      launch(
        'command-api',
        'command-api',
        { ...apiEnv, ...common, PORT: String(commandApiPort) },
        commandApiPort,
        options.logDir,
      ),
      launch(
        'query-api',
        'query-api',
        { ...apiEnv, ...common, PORT: String(queryApiPort) },
        queryApiPort,
        options.logDir,
      ),
    ]);
    services.push(commandApi, queryApi);
    for (let i = 0; i < (options.robots ?? 1); i++) await addRobot();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    commandApiUrl: `http://127.0.0.1:${commandApiPort}`,
    queryApiUrl: `http://127.0.0.1:${queryApiPort}`,
    apiKey: generated.key,
    tenant,
    services,
    robots,
    addRobot,
    robotById: (robotId) => robots.find((r) => r.robotId === robotId),
    stop,
  };
}

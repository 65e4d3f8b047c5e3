/**
 * Checks docker-compose.yml, the Dockerfile and the NATS configuration they use, without a container engine: the
 * invariants of the stack are read from the files themselves (every service has a health check, the robot scales,
 * NATS syncs every write, images are pinned, ...), and `docker-compose config` validates the file against the
 * Compose schema when the `docker-compose` command is installed (Debian's package checks without an engine; `npm
 * test` installs it as root). Without it, that part is reported as skipped with its reason.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KURRENTDB_IMAGE } from '../../shared/src/eventStore/kurrentdbImage.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const composeFile = join(root, 'docker-compose.yml');
const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');

interface ComposeService {
  image?: string;
  build?: { context?: string; target?: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  container_name?: string;
  depends_on?: Record<string, { condition?: string }>;
  healthcheck?: { test?: string[]; interval?: string; timeout?: string; retries?: number };
  stop_grace_period?: string;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

// Merge keys (`<<: *service-env`) are part of YAML 1.1, which Compose reads; the yaml package needs to be told.
const compose = parse(readFileSync(composeFile, 'utf8'), { merge: true }) as ComposeFile;
const services = compose.services;

const APPS = ['command-api', 'query-api', 'projector', 'robot'] as const;
const ALL = ['nats', 'kurrentdb', ...APPS];
/** The port each service's /healthz answers on, as its environment sets it. */
const HEALTH_PORT_VARIABLE: Record<(typeof APPS)[number], string> = {
  'command-api': 'PORT',
  'query-api': 'PORT',
  projector: 'HEALTH_PORT',
  robot: 'HEALTH_PORT',
};

function service(name: string): ComposeService {
  const found = services[name];
  if (!found) throw new Error(`docker-compose.yml has no service ${name}`);
  return found;
}

/** The Dockerfile's stages by name, each with its instructions (continuation lines joined). */
function dockerStages(text: string): Map<string, string> {
  const stages = new Map<string, string>();
  let current: string | null = null;
  for (const line of text.replace(/\\\n/g, ' ').split('\n')) {
    const from = /^FROM\s+\S+\s+AS\s+(\S+)/i.exec(line);
    if (from) {
      current = from[1]!;
      stages.set(current, '');
    } else if (/^FROM\s/i.test(line)) current = null;
    else if (current) stages.set(current, `${stages.get(current)}${line}\n`);
  }
  return stages;
}

describe('docker-compose.yml', () => {
  it('runs NATS, KurrentDB and the four services', () => {
    expect(Object.keys(services).sort()).toEqual([...ALL].sort());
  });

  it('gives every service a health check; the services probe their own /healthz port', () => {
    for (const name of ALL) expect(service(name).healthcheck?.test?.length, name).toBeGreaterThan(1);
    for (const name of APPS) {
      const svc = service(name);
      const port = svc.environment?.[HEALTH_PORT_VARIABLE[name]];
      expect(port, `${name} ${HEALTH_PORT_VARIABLE[name]}`).toMatch(/^\d+$/);
      expect(svc.healthcheck!.test!.join(' '), name).toContain(`http://127.0.0.1:${port}/healthz`);
    }
    expect(service('nats').healthcheck!.test!.join(' ')).toContain(':8222/healthz');
  });

  it('starts a service only after what it depends on is healthy', () => {
    for (const name of APPS) {
      const deps = service(name).depends_on ?? {};
      expect(Object.keys(deps), name).toEqual(expect.arrayContaining(['nats', 'kurrentdb']));
      for (const [dep, spec] of Object.entries(deps))
        expect(spec.condition, `${name} -> ${dep}`).toBe('service_healthy');
    }
  });

  it('lets the robot scale: no container name, no published port; only the two APIs publish ports', () => {
    const robot = service('robot');
    expect(robot.container_name).toBeUndefined();
    expect(robot.ports).toBeUndefined();
    expect(robot.environment?.ROBOT_ID).toBeUndefined();
    for (const [name, svc] of Object.entries(services)) {
      expect(svc.container_name, name).toBeUndefined();
      if (name === 'command-api' || name === 'query-api') expect(svc.ports, name).toHaveLength(1);
      else expect(svc.ports, name).toBeUndefined();
    }
    expect(service('command-api').ports).toEqual([
      `127.0.0.1:8080:${service('command-api').environment!.PORT}`,
    ]);
    expect(service('query-api').ports).toEqual([`127.0.0.1:8081:${service('query-api').environment!.PORT}`]);
  });

  it('uses NATS 2.12.3 or newer with its configuration mounted, and pins every image', () => {
    const nats = service('nats');
    const version = /^nats:(\d+)\.(\d+)\.(\d+)(-[a-z0-9]+)?$/.exec(nats.image ?? '');
    expect(version, nats.image).not.toBeNull();
    const [major, minor, patch] = version!.slice(1, 4).map(Number) as [number, number, number];
    expect(major * 1e6 + minor * 1e3 + patch).toBeGreaterThanOrEqual(2_012_003);
    expect(nats.volumes).toContain('./deploy/nats/nats-server.conf:/etc/nats/nats-server.conf:ro');
    expect(nats.command).toEqual(['nats-server', '--config', '/etc/nats/nats-server.conf']);
    for (const name of ['nats', 'kurrentdb']) {
      const image = service(name).image ?? '';
      expect(image, name).toMatch(/:[\w.-]+$/);
      expect(image, name).not.toMatch(/:latest$/);
    }
  });

  it('keeps NATS and KurrentDB data in declared named volumes', () => {
    const declared = Object.keys(compose.volumes ?? {});
    const named = (svc: ComposeService) =>
      (svc.volumes ?? []).map((v) => v.split(':')[0]!).filter((source) => !/^[./~]/.test(source));
    expect(named(service('nats'))).toEqual(['nats-data']);
    expect(named(service('kurrentdb'))).toContain('kurrentdb-data');
    for (const [name, svc] of Object.entries(services))
      for (const source of named(svc)) expect(declared, `${name}: ${source}`).toContain(source);
    expect(service('nats').volumes).toContain('nats-data:/data');
  });

  it('points every service at NATS and KurrentDB, and requires API keys for the APIs', () => {
    for (const name of APPS) {
      const env = service(name).environment ?? {};
      expect(env.NATS_URL, name).toBe('nats://nats:4222');
      expect(env.EVENT_STORE, name).toBe('kurrentdb');
      expect(env.KURRENTDB_URL, name).toMatch(/^kurrentdb:\/\/kurrentdb:2113\?(.*&)?tls=false/);
    }
    for (const name of ['command-api', 'query-api']) {
      expect(service(name).environment?.API_KEYS, name).toMatch(/^\$\{API_KEYS:\?/);
      expect(service(name).environment?.AUTH_MODE, name).toBeUndefined();
    }
    expect(service('kurrentdb').environment?.KURRENTDB_CLUSTER_SIZE).toBe('1');
    // The server the adapter's contract suite runs against.
    expect(service('kurrentdb').image).toBe(KURRENTDB_IMAGE);
  });

  it('builds each service from its target of the shared Dockerfile', () => {
    const stages = dockerStages(dockerfile);
    for (const name of APPS) {
      expect(service(name).build, name).toEqual({ context: '.', target: name });
      expect(stages.has(name), `Dockerfile stage ${name}`).toBe(true);
    }
  });

  it('lets each service stop within its shutdown grace', () => {
    expect(service('projector').stop_grace_period).toBe('35s');
    expect(service('robot').stop_grace_period).toBe('30s');
  });
});

describe('deploy/nats/nats-server.conf', () => {
  const conf = readFileSync(join(root, 'deploy', 'nats', 'nats-server.conf'), 'utf8').replace(/#.*$/gm, '');

  it('enables JetStream on the data volume and syncs every write', () => {
    const jetstream = /jetstream\s*\{([^}]*)\}/.exec(conf)?.[1] ?? '';
    expect(jetstream).toMatch(/^\s*sync_interval\s*:\s*always\s*$/m);
    expect(jetstream).toMatch(/^\s*store_dir\s*:\s*\/data\/jetstream\s*$/m);
  });

  it('serves monitoring on the port the health check reads', () => {
    expect(conf).toMatch(/^\s*http\s*:\s*0\.0\.0\.0:8222\s*$/m);
  });
});

describe('Dockerfile', () => {
  const stages = dockerStages(dockerfile);

  it('bases every image on Node 20 slim', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20[\d.]*-\w+-slim$/m);
  });

  it('runs every service as the unprivileged node user with a health check', () => {
    for (const name of APPS) {
      const stage = stages.get(name) ?? '';
      expect(stage, name).toMatch(/^USER node$/m);
      expect(stage, name).toMatch(/^HEALTHCHECK .*\/healthz/m);
      expect(stage, name).toMatch(/^CMD \["node", "services\/[a-z-]+\/dist\/[a-z]+\.js"\]$/m);
    }
  });

  it('installs only production dependencies in the images', () => {
    expect(stages.get('prod-deps')).toMatch(/npm ci --omit=dev/);
    expect(stages.get('runtime')).not.toMatch(/from=build \S*\/node_modules/);
  });

  it("gives the robot Debian's Chromium headless shell, fonts and CHROMIUM_PATH", () => {
    const robot = stages.get('robot') ?? '';
    expect(robot).toMatch(/apt-get install .*\bchromium-headless-shell\b/);
    expect(robot).toMatch(/\bfonts-liberation\b/);
    expect(robot).toMatch(/CHROMIUM_PATH=\/usr\/lib\/chromium\/chromium-headless-shell\b/);
  });
});

/** docker-compose on PATH, or null. */
function findDockerCompose(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'docker-compose');
    if (dir && existsSync(candidate)) return candidate;
  }
  return null;
}

const dockerCompose = findDockerCompose();
if (!dockerCompose)
  console.log(
    'docker-compose config validation: skipped — docker-compose is not on PATH ' +
      "(install Debian's package: apt-get install -y docker-compose; `npm test` does so when run as root)",
  );

describe.skipIf(!dockerCompose)('docker-compose config', () => {
  // An empty env file, so that a developer's own .env does not change what is validated.
  const scratch = mkdtempSync(join(tmpdir(), 'compose-check-'));
  const envFile = join(scratch, 'empty.env');
  writeFileSync(envFile, '');
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  function run(args: string[], env: Record<string, string>) {
    const result = spawnSync(dockerCompose!, ['--env-file', envFile, '-f', composeFile, ...args], {
      cwd: root,
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH ?? '', HOME: scratch, ...env },
    });
    if (result.error) throw result.error;
    return result;
  }
  const apiKeys = {
    API_KEYS: JSON.stringify([{ id: 'compose-check', tenant: 'acme', hash: 'a'.repeat(64) }]),
  };

  it('accepts the file', () => {
    const result = run(['config', '-q'], apiKeys);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('lists the six services', () => {
    const result = run(['config', '--services'], apiKeys);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim().split('\n').sort()).toEqual([...ALL].sort());
  });

  it('resolves the shared settings into every service', () => {
    const result = run(['config'], apiKeys);
    expect(result.status, result.stderr).toBe(0);
    const resolved = parse(result.stdout) as ComposeFile;
    for (const name of APPS) {
      expect(resolved.services[name]!.environment?.EVENT_STORE, name).toBe('kurrentdb');
      expect(resolved.services[name]!.environment?.NATS_PREFIX, name).toBe('rpa');
    }
    expect(resolved.services['command-api']!.environment?.API_KEYS).toBe(apiKeys.API_KEYS);
    expect(resolved.services.robot!.environment?.API_KEYS).toBeUndefined();
    expect(resolved.services.robot!.ports).toBeUndefined();
  });

  it('refuses to start without API keys, naming the variable', () => {
    const result = run(['config', '-q'], {});
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('set API_KEYS');
  });
});

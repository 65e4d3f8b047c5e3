#!/usr/bin/env node
// Set-up shared by `npm start`, `npm test` and the benchmarks. Plain JavaScript with no dependencies, because it
// runs before `npm ci`: installs npm dependencies when missing, finds nats-server and Chromium (installing Debian's
// packages when running as root, else printing the exact command), then hands over to the real entry point.
import { spawnSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [mode = 'test', ...rest] = process.argv.slice(2);

function log(message) {
  process.stderr.write(`[setup] ${message}\n`);
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    if (dir && existsSync(candidate)) return candidate;
  }
  return null;
}

function findNatsServer() {
  return [
    process.env.NATS_SERVER_BIN,
    onPath('nats-server'),
    '/usr/sbin/nats-server',
    '/usr/bin/nats-server',
  ].find((c) => c && existsSync(c));
}

/** Debian's headless shell: the same engine for a quarter of the CPU per session (see services/robot/src/browser.ts). */
const HEADLESS_SHELL = '/usr/lib/chromium/chromium-headless-shell';

function findChromium() {
  return [
    process.env.CHROMIUM_PATH,
    HEADLESS_SHELL,
    '/usr/bin/chromium',
    onPath('chromium'),
    onPath('chromium-browser'),
  ].find((c) => c && existsSync(c));
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', cwd: root, ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function ensureNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const probes = ['vitest', 'tsx', '@nats-io/transport-node', 'playwright-core', 'fastify'];
  if (existsSync(marker) && probes.every((p) => existsSync(join(root, 'node_modules', p)))) return;
  // `npm install` rather than `npm ci`: it follows package-lock.json just the same, and unlike `npm ci` it accepts
  // a lock that lacks optional platform packages some registries do not carry (rollup's native builds).
  log('installing npm dependencies (npm install, following package-lock.json)');
  const status = run('npm', ['install', '--no-audit', '--no-fund']);
  if (status !== 0) {
    log('npm install failed; see above');
    process.exit(status);
  }
}

/** What goes without each optional package. */
const WITHOUT = {
  'docker-compose': 'the docker-compose.yml validation will be skipped',
  'chromium-headless-shell': 'robots run the full Chromium, which costs about four times the CPU per session',
};

function ensureSystemPackages() {
  const missing = [];
  if (!process.env.NATS_URL && !findNatsServer()) missing.push('nats-server');
  if (!findChromium()) missing.push('chromium');
  // Only the tests use docker-compose (to validate docker-compose.yml; no engine needed), and they skip that check
  // without it: install it when we can, never stop for it. Likewise Chromium's headless shell, which robots run in
  // preference to the full browser when it is there: everything works without it, only slower.
  const optional = [];
  if (mode === 'test' && !onPath('docker-compose')) optional.push('docker-compose');
  if (!process.env.CHROMIUM_PATH && !existsSync(HEADLESS_SHELL)) optional.push('chromium-headless-shell');
  if (missing.length === 0 && optional.length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = !!onPath('apt-get');
  if (isRoot && hasApt) {
    log(`installing ${[...missing, ...optional].join(' and ')} from Debian's packages`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    if (run('apt-get', ['update', '-qq'], { env }) !== 0) {
      log('apt-get update failed');
      if (missing.length > 0) process.exit(1);
      return;
    }
    if (
      missing.length > 0 &&
      run('apt-get', ['install', '-y', '-qq', ...missing, 'fonts-liberation'], { env }) !== 0
    ) {
      log(`could not install ${missing.join(', ')}`);
      process.exit(1);
    }
    for (const pkg of optional) {
      if (run('apt-get', ['install', '-y', '-qq', pkg], { env }) !== 0)
        log(`could not install ${pkg}: ${WITHOUT[pkg]}`);
    }
    return;
  }
  for (const pkg of optional)
    log(`${pkg} not found: ${WITHOUT[pkg]}. Install with:\n  sudo apt-get install -y ${pkg}`);
  if (missing.length === 0) return;
  log(`missing: ${missing.join(', ')}. Install with:`);
  log(`  sudo apt-get update && sudo apt-get install -y ${missing.join(' ')} fonts-liberation`);
  log('or point NATS_SERVER_BIN / NATS_URL and CHROMIUM_PATH at existing ones.');
  process.exit(1);
}

function handOver(command, args) {
  const child = spawn(command, args, {
    stdio: 'inherit',
    cwd: root,
    env: { ...process.env, CHROMIUM_PATH: process.env.CHROMIUM_PATH ?? findChromium() },
  });
  // Ctrl-C reaches the whole foreground process group; the child handles it and we exit with its status.
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

ensureNodeModules();
ensureSystemPackages();
const bin = (name) => join(root, 'node_modules', '.bin', name);
switch (mode) {
  case 'test':
    handOver(bin('vitest'), ['run', ...rest]);
    break;
  case 'start':
    handOver(bin('tsx'), [join(root, 'scripts', 'start.ts'), ...rest]);
    break;
  case 'bench':
    handOver(bin('tsx'), [join(root, 'scripts', 'bench', `${rest[0] ?? 'pipeline'}.ts`), ...rest.slice(1)]);
    break;
  default:
    log(`unknown mode ${mode}: use start, test or bench`);
    process.exit(2);
}

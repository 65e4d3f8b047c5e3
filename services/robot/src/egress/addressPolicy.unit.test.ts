import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { RETRYABLE_ERROR_CODES } from '@rpa/shared';
import { RobotEnv } from '../config.js';
import { addressesOf, decideEgress, type EgressRule } from './addressPolicy.js';
import { parseAllowEntry, parseAllowList, parseTenantAllowLists } from './allowList.js';
import { canonicalHost, parseAuthority } from './host.js';

/** Resolves nothing: a literal or a localhost name must never reach DNS. */
const noDns = async (name: string): Promise<string[]> => {
  throw new Error(`unexpected lookup of ${name}`);
};

async function verdict(host: string, port = 80, allow = '', dns: Record<string, string[]> = {}) {
  const canonical = canonicalHost(host);
  if (!canonical) return 'invalid';
  const resolve = async (name: string) => dns[name] ?? noDns(name);
  const decision = decideEgress(
    parseAllowList(allow),
    canonical,
    port,
    await addressesOf(canonical, resolve),
  );
  return decision.allowed ? 'allowed' : decision.refusal.rule;
}

describe('host canonicalisation (as Chromium / WHATWG URL parse hosts)', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'],
    ['0x7f000001', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['0X7F.0.0.1', '127.0.0.1'],
    ['127.0.0.1.', '127.0.0.1'],
    ['%31%32%37.0.0.1', '127.0.0.1'],
    ['2852039166', '169.254.169.254'],
    ['0xa9fea9fe', '169.254.169.254'],
    ['0xa9.0xfe.0xa9.0xfe', '169.254.169.254'],
    ['0251.0376.0251.0376', '169.254.169.254'],
    ['0251.254.0xa9.254', '169.254.169.254'],
    ['169.254.43518', '169.254.169.254'],
    ['169.16689662', '169.254.169.254'],
    ['0', '0.0.0.0'],
    ['[::1]', '[::1]'],
    ['[0:0:0:0:0:0:0:1]', '[::1]'],
    ['[::ffff:127.0.0.1]', '[::ffff:7f00:1]'],
    ['LOCALHOST', 'localhost'],
    ['localhost.', 'localhost'],
    ['Example.COM.', 'example.com'],
  ])('%s is %s', (input, text) => {
    expect(canonicalHost(input)?.text).toBe(text);
  });

  it.each(['', 'a b', 'user@127.0.0.1', '127.0.0.1/x', '[::1', '1.2.3.4.5.6', '0x100000000', '[zz::1]'])(
    'refuses %j as a host',
    (input) => {
      expect(canonicalHost(input)).toBeNull();
    },
  );

  it('parses CONNECT authorities and refuses anything else', () => {
    expect(parseAuthority('127.0.0.1:443')).toMatchObject({ port: 443, host: { text: '127.0.0.1' } });
    expect(parseAuthority('[::1]:8443')).toMatchObject({ port: 8443, host: { text: '[::1]' } });
    expect(parseAuthority('0x7f.1:443')).toMatchObject({ host: { text: '127.0.0.1' } });
    for (const bad of [
      '127.0.0.1',
      '127.0.0.1:0',
      '127.0.0.1:70000',
      'a@b:443',
      'h/p:443',
      '::1:443',
      '%31.0.0.1:1',
    ])
      expect(parseAuthority(bad), bad).toBeNull();
  });
});

describe('the address policy', () => {
  const table: Array<[string, EgressRule | 'allowed']> = [
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['2130706433', 'loopback'],
    ['0x7f.1', 'loopback'],
    ['0177.0.0.1', 'loopback'],
    ['127.1', 'loopback'],
    ['localhost', 'loopback'],
    ['localhost.', 'loopback'],
    ['LOCALHOST', 'loopback'],
    ['sub.localhost', 'loopback'],
    ['[::1]', 'loopback'],
    ['[::ffff:127.0.0.1]', 'loopback'],
    ['[::ffff:7f00:1]', 'loopback'],
    ['[::127.0.0.1]', 'loopback'],
    ['169.254.169.254', 'link-local'],
    ['2852039166', 'link-local'],
    ['0xa9fea9fe', 'link-local'],
    ['0251.0376.0251.0376', 'link-local'],
    ['169.254.43518', 'link-local'],
    ['[::ffff:169.254.169.254]', 'link-local'],
    ['[::ffff:a9fe:a9fe]', 'link-local'],
    ['[fe80::1]', 'link-local'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['[::ffff:10.0.0.1]', 'private'],
    ['100.64.0.1', 'carrier-grade-nat'],
    ['[fd00::1]', 'unique-local'],
    ['[fd00:ec2::254]', 'unique-local'],
    ['[fc00::1]', 'unique-local'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['[ff02::1]', 'multicast'],
    ['0.0.0.0', 'unspecified'],
    ['0', 'unspecified'],
    ['[::]', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['[2001:db8::1]', 'reserved'],
    ['[64:ff9b::a9fe:a9fe]', 'ipv4-translation'],
    ['[2002:7f00:1::]', 'ipv4-translation'],
    ['[::8.8.8.8]', 'ipv4-translation'],
    ['8.8.8.8', 'allowed'],
    ['93.184.216.34', 'allowed'],
    ['172.32.0.1', 'allowed'],
    ['[2606:4700:4700::1111]', 'allowed'],
    ['[::ffff:8.8.8.8]', 'allowed'],
  ];
  it.each(table)('%s -> %s', async (host, expected) => {
    expect(await verdict(host)).toBe(expected);
  });

  it('judges every address a name resolves to: one closed address refuses the name', async () => {
    const dns = {
      'rebind.test': ['127.0.0.1'],
      'mixed.test': ['93.184.216.34', '10.0.0.7'],
      'public.test': ['93.184.216.34', '2606:4700::1'],
      'v6.test': ['::1'],
    };
    expect(await verdict('rebind.test', 80, '', dns)).toBe('loopback');
    expect(await verdict('mixed.test', 80, '', dns)).toBe('private');
    expect(await verdict('public.test', 80, '', dns)).toBe('allowed');
    expect(await verdict('v6.test', 80, '', dns)).toBe('loopback');
  });

  it('names the rule and address in the refusal, and nothing of the URL', async () => {
    const host = canonicalHost('rebind.test')!;
    const decision = decideEgress([], host, 80, [ipaddr.parse('127.0.0.1')]);
    expect(decision).toEqual({
      allowed: false,
      refusal: {
        rule: 'loopback',
        address: '127.0.0.1',
        message: 'loopback 127.0.0.1 (resolved from rebind.test) refused',
      },
    });
    const literal = decideEgress([], canonicalHost('0x7f.1')!, 80, [ipaddr.parse('127.0.0.1')]);
    expect(literal).toMatchObject({ refusal: { message: 'loopback 127.0.0.1 refused' } });
  });

  it('lets the allow-list open exactly what it names', async () => {
    expect(await verdict('127.0.0.1', 8080, '127.0.0.1:8080')).toBe('allowed');
    expect(await verdict('127.0.0.1', 8081, '127.0.0.1:8080')).toBe('loopback');
    expect(await verdict('127.0.0.2', 8080, '127.0.0.1:8080')).toBe('loopback');
    expect(await verdict('2130706433', 8080, '127.0.0.1:8080')).toBe('allowed');
    expect(await verdict('[::ffff:127.0.0.1]', 8080, '127.0.0.1:8080')).toBe('allowed');
    expect(await verdict('[::1]', 8080, '127.0.0.1:8080')).toBe('loopback');
    expect(await verdict('10.20.30.40', 443, '10.0.0.0/8')).toBe('allowed');
    expect(await verdict('11.0.0.1', 443, '10.0.0.0/8')).toBe('allowed');
    expect(await verdict('169.254.169.254', 80, '10.0.0.0/8')).toBe('link-local');
    expect(await verdict('[fd00::5]', 443, '[fd00::]/8:443')).toBe('allowed');
    expect(await verdict('[fd00::5]', 80, '[fd00::]/8:443')).toBe('unique-local');
    const dns = { 'host.internal': ['10.9.9.9'], 'a.corp.example': ['192.168.3.3'] };
    expect(await verdict('host.internal', 443, 'host.internal:443', dns)).toBe('allowed');
    expect(await verdict('host.internal', 80, 'host.internal:443', dns)).toBe('private');
    expect(await verdict('a.corp.example', 443, '*.corp.example', dns)).toBe('allowed');
    expect(await verdict('corp.example', 443, '*.corp.example', { 'corp.example': ['10.0.0.1'] })).toBe(
      'private',
    );
    expect(await verdict('localhost', 3000, 'localhost:3000')).toBe('allowed');
    expect(await verdict('localhost', 3000, '127.0.0.1:3000')).toBe('loopback');
  });

  it('is not a retryable failure', () => {
    expect(RETRYABLE_ERROR_CODES.has('EGRESS_DENIED')).toBe(false);
  });
});

describe('the allow-list syntax', () => {
  it.each([
    ['127.0.0.1:8080', { kind: 'range', prefix: 32, port: 8080 }],
    ['10.0.0.0/8', { kind: 'range', prefix: 8, port: null }],
    ['10.1.0.0/16:443', { kind: 'range', prefix: 16, port: 443 }],
    ['[::1]:8080', { kind: 'range', prefix: 128, port: 8080 }],
    ['[fd00::]/8:443', { kind: 'range', prefix: 8, port: 443 }],
    ['[::ffff:10.0.0.0]/104', { kind: 'range', prefix: 8, port: null }],
    ['host.internal:443', { kind: 'name', name: 'host.internal', wildcard: false, port: 443 }],
    ['*.Corp.Example', { kind: 'name', name: 'corp.example', wildcard: true, port: null }],
  ])('accepts %s', (text, expected) => {
    expect(parseAllowEntry(text)).toMatchObject(expected);
  });

  it.each([
    ['0x7f.1', /four dotted decimals/],
    ['127.1', /four dotted decimals/],
    ['10.0.0.0/33', /prefix must be 0-32/],
    ['[fd00::]/129', /prefix must be 0-128/],
    ['127.0.0.1:0', /port must be 1-65535/],
    ['127.0.0.1:99999', /port must be 1-65535/],
    ['host.internal/8', /needs an address/],
    ['[nope]', /not an IPv6 address/],
    ['http://127.0.0.1', /not an address/],
    ['bad_name!', /not an address|not a host name/],
    ['::1', /not an address/],
  ])('refuses %s', (text, message) => {
    expect(() => parseAllowEntry(text)).toThrow(message);
  });

  it('parses the per-tenant form', () => {
    const lists = parseTenantAllowLists(
      'acme=10.0.0.0/8,host.internal:443; beta=[fd00::]/8 ;acme=127.0.0.1:1',
    );
    expect([...lists.keys()]).toEqual(['acme', 'beta']);
    expect(lists.get('acme')?.map((e) => e.text)).toEqual(['10.0.0.0/8', 'host.internal:443', '127.0.0.1:1']);
    expect(() => parseTenantAllowLists('=10.0.0.0/8')).toThrow(/tenant=entry/);
    expect(() => parseTenantAllowLists('acme')).toThrow(/tenant=entry/);
  });

  it('is read from the environment, and a bad entry names its variable', () => {
    const base = { NATS_URL: 'nats://127.0.0.1:4222' };
    const env = RobotEnv.parse({
      ...base,
      EGRESS_ALLOW: '127.0.0.1:8080, 10.0.0.0/8',
      EGRESS_ALLOW_TENANTS: 'acme=host.internal:443',
    });
    expect(env.EGRESS_ALLOW.map((e) => e.text)).toEqual(['127.0.0.1:8080', '10.0.0.0/8']);
    expect(env.EGRESS_ALLOW_TENANTS.get('acme')?.[0]?.text).toBe('host.internal:443');
    expect(RobotEnv.parse(base).EGRESS_ALLOW).toEqual([]);
    const bad = RobotEnv.safeParse({ ...base, EGRESS_ALLOW: '127.0.0.1:8080,0x7f.1' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['EGRESS_ALLOW']);
    const badTenant = RobotEnv.safeParse({ ...base, EGRESS_ALLOW_TENANTS: 'acme=10.0.0.0/99' });
    expect(badTenant.error?.issues[0]?.path).toEqual(['EGRESS_ALLOW_TENANTS']);
  });
});

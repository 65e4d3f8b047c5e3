import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { canonicalHost, type IpAddress } from './host.js';

/**
 * One operator exception to the egress policy: an address range or a host name, optionally on one port only.
 * Syntax (one entry):
 * - `10.0.0.0/8`, `127.0.0.1`, `127.0.0.1:8080`, `10.1.0.0/16:443` — IPv4 address or CIDR in dotted decimal;
 * - `[fd00::]/8`, `[::1]:8080`, `[fd00::]/8:443` — IPv6 address or CIDR in brackets;
 * - `host.internal`, `host.internal:443`, `*.corp.example:443` — a DNS name (or every name under a suffix): the
 *   name may resolve to any address, private ones included.
 * No port means every port.
 */
export type AllowEntry =
  | { kind: 'range'; network: IpAddress; prefix: number; port: number | null; text: string }
  | { kind: 'name'; name: string; wildcard: boolean; port: number | null; text: string };

const ENTRY = /^(?:\[(?<v6>[^\]]+)\]|(?<host>[^:/[\]]+))(?:\/(?<prefix>\d{1,3}))?(?::(?<port>\d{1,5}))?$/;
const NAME =
  /^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Parses one allow-list entry; throws a RangeError saying what is wrong with it. */
export function parseAllowEntry(raw: string): AllowEntry {
  const text = raw.trim();
  const match = ENTRY.exec(text);
  if (!match?.groups)
    throw new RangeError(`"${text}" is not an address, CIDR or host name with an optional :port`);
  const { v6, host, prefix, port: portText } = match.groups;
  const port = portText === undefined ? null : Number(portText);
  if (port !== null && (port < 1 || port > 65_535)) throw new RangeError(`"${text}": port must be 1-65535`);
  if (v6 !== undefined) {
    if (!ipaddr.IPv6.isValid(v6)) throw new RangeError(`"${text}": ${v6} is not an IPv6 address`);
    return range(text, ipaddr.IPv6.parse(v6), prefix, 128, port);
  }
  const name = host!.toLowerCase();
  if (/^[0-9.]+$/.test(name)) {
    // Only the plain dotted form: an operator's `0x7f.1` is far more likely a typo than an intent.
    if (!ipaddr.IPv4.isValidFourPartDecimal(name))
      throw new RangeError(`"${text}": IPv4 addresses must be four dotted decimals`);
    return range(text, ipaddr.IPv4.parse(name), prefix, 32, port);
  }
  if (prefix !== undefined) throw new RangeError(`"${text}": a /prefix needs an address, not a name`);
  const wildcard = name.startsWith('*.');
  const bare = wildcard ? name.slice(2) : name;
  const canonical = canonicalHost(bare);
  // `0x7f.1` and the like are IPv4 addresses to a browser: an operator must write them the plain way.
  if (canonical?.kind === 'ip')
    throw new RangeError(`"${text}": IPv4 addresses must be four dotted decimals`);
  if (!NAME.test(bare) || canonical?.kind !== 'name')
    throw new RangeError(`"${text}": ${bare} is not a host name`);
  return { kind: 'name', name: canonical.name, wildcard, port, text };
}

function range(
  text: string,
  address: IpAddress,
  prefixText: string | undefined,
  bits: number,
  port: number | null,
): AllowEntry {
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) throw new RangeError(`"${text}": prefix must be 0-${bits}`);
  // An IPv4-mapped entry means its IPv4 address: targets are compared in that form too.
  const network =
    address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96
      ? (address as ipaddr.IPv6).toIPv4Address()
      : address;
  const netPrefix = network === address ? prefix : prefix - 96;
  return { kind: 'range', network, prefix: netPrefix, port, text };
}

/** Parses a list of entries separated by commas or white space; throws naming the first bad entry. */
export function parseAllowList(value: string): AllowEntry[] {
  return value
    .split(/[,\s]+/)
    .filter((part) => part.length > 0)
    .map(parseAllowEntry);
}

/**
 * Parses per-tenant lists: `tenant=entry,entry;tenant2=entry`. A tenant named twice gets both lists; throws naming
 * the bad part.
 */
export function parseTenantAllowLists(value: string): Map<string, AllowEntry[]> {
  const lists = new Map<string, AllowEntry[]>();
  for (const part of value.split(';').map((p) => p.trim())) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const tenant = eq > 0 ? part.slice(0, eq).trim() : '';
    if (!/^[^\s=;,]{1,200}$/.test(tenant)) throw new RangeError(`"${part}" is not tenant=entry,entry`);
    lists.set(tenant, [...(lists.get(tenant) ?? []), ...parseAllowList(part.slice(eq + 1))]);
  }
  return lists;
}

/** Wraps a parser as a zod transform, so that a bad value is reported against the variable that holds it. */
function fromParser<T>(parse: (value: string) => T) {
  return z
    .string()
    .default('')
    .transform((value, ctx) => {
      try {
        return parse(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    });
}

/** `EGRESS_ALLOW`: exceptions for every tenant. */
export const EgressAllowEnv = fromParser(parseAllowList);
/** `EGRESS_ALLOW_TENANTS`: exceptions per tenant. */
export const EgressAllowTenantsEnv = fromParser(parseTenantAllowLists);

/** The first entry that lets a connection to `address` on `port` through, if any. */
export function allowedAddress(
  entries: readonly AllowEntry[],
  address: IpAddress,
  port: number,
): AllowEntry | undefined {
  const target = comparable(address);
  return entries.find(
    (e) =>
      e.kind === 'range' &&
      (e.port === null || e.port === port) &&
      e.network.kind() === target.kind() &&
      target.match(e.network, e.prefix),
  );
}

/** The first entry that lets a connection to the name `name` on `port` through, whatever it resolves to. */
export function allowedName(
  entries: readonly AllowEntry[],
  name: string,
  port: number,
): AllowEntry | undefined {
  return entries.find(
    (e) =>
      e.kind === 'name' &&
      (e.port === null || e.port === port) &&
      (e.wildcard ? name.endsWith(`.${e.name}`) : name === e.name),
  );
}

/** IPv4-mapped IPv6 addresses are compared as the IPv4 address they reach. */
function comparable(address: IpAddress): IpAddress {
  return address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()
    ? (address as ipaddr.IPv6).toIPv4Address()
    : address;
}

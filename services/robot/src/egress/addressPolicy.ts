import ipaddr from 'ipaddr.js';
import { allowedAddress, allowedName, type AllowEntry } from './allowList.js';
import { addressText, isLocalhostName, type CanonicalHost, type IpAddress } from './host.js';

/** Why the egress policy refuses a target: the address range it reaches, by default closed to robots. */
export type EgressRule =
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'unique-local'
  | 'multicast'
  | 'unspecified'
  | 'broadcast'
  | 'carrier-grade-nat'
  | 'reserved'
  /** NAT64, 6to4, Teredo and IPv4-compatible forms: they reach an IPv4 address through a translator. */
  | 'ipv4-translation';

const V4_RULES: Partial<Record<ReturnType<ipaddr.IPv4['range']>, EgressRule>> = {
  loopback: 'loopback',
  private: 'private',
  linkLocal: 'link-local',
  multicast: 'multicast',
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  carrierGradeNat: 'carrier-grade-nat',
};

const V6_RULES: Partial<Record<ReturnType<ipaddr.IPv6['range']>, EgressRule>> = {
  loopback: 'loopback',
  linkLocal: 'link-local',
  uniqueLocal: 'unique-local',
  multicast: 'multicast',
  unspecified: 'unspecified',
  rfc6052: 'ipv4-translation',
  rfc6145: 'ipv4-translation',
  '6to4': 'ipv4-translation',
  teredo: 'ipv4-translation',
};

/**
 * The rule that closes an address by default, or null for a globally routable unicast address. An IPv4-mapped or
 * IPv4-compatible IPv6 address is judged by the IPv4 address it reaches, so `::ffff:169.254.169.254` is link-local.
 * Every range ipaddr.js knows as special-purpose and that has no rule of its own is `reserved`.
 */
export function deniedRule(address: IpAddress): EgressRule | null {
  if (address.kind() === 'ipv4') {
    const range = (address as ipaddr.IPv4).range();
    return range === 'unicast' ? null : (V4_RULES[range] ?? 'reserved');
  }
  const v6 = address as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return deniedRule(v6.toIPv4Address());
  const range = v6.range();
  if (range === 'unicast') {
    // `::a.b.c.d` (IPv4-compatible, deprecated) has no range of its own in ipaddr.js.
    if (v6.parts.slice(0, 6).every((p) => p === 0)) {
      return deniedRule(new ipaddr.IPv4(v6.toByteArray().slice(12))) ?? 'ipv4-translation';
    }
    return null;
  }
  return V6_RULES[range] ?? 'reserved';
}

/** A refusal: the rule, the address it applied to and a message naming both (no path, query or credentials). */
export interface EgressRefusal {
  rule: EgressRule;
  address: string;
  message: string;
}

/** The policy's answer for one target: the addresses to connect to (in order), or why not. */
export type EgressDecision =
  | { allowed: true; addresses: IpAddress[]; allowedBy: AllowEntry | null }
  | { allowed: false; refusal: EgressRefusal };

/** The addresses Chromium itself gives `localhost` names (RFC 6761): they never go to DNS. */
const LOCALHOST_ADDRESSES: readonly IpAddress[] = [ipaddr.parse('127.0.0.1'), ipaddr.parse('::1')];

/**
 * The addresses a host reaches, before any check: an IP literal is itself, a `localhost` name is loopback, any other
 * name is resolved (once: the connection then uses exactly these addresses, so a second lookup cannot rebind it).
 */
export async function addressesOf(
  host: CanonicalHost,
  resolve: (name: string) => Promise<string[]>,
): Promise<IpAddress[]> {
  if (host.kind === 'ip') return [host.address];
  if (isLocalhostName(host.name)) return [...LOCALHOST_ADDRESSES];
  const resolved = await resolve(host.name);
  return resolved.filter((a) => ipaddr.isValid(a)).map((a) => ipaddr.parse(a));
}

/**
 * Decides whether a connection to `host` on `port` through `addresses` (all of them, as resolved) may be made under
 * `allow`. A name on the allow-list may reach any address. Otherwise every address must be either globally routable
 * or inside an allowed range: one closed address refuses the whole name, so that a resolver answering with a public
 * and a private address cannot smuggle the private one in.
 */
export function decideEgress(
  allow: readonly AllowEntry[],
  host: CanonicalHost,
  port: number,
  addresses: readonly IpAddress[],
): EgressDecision {
  const byName = host.kind === 'name' ? allowedName(allow, host.name, port) : undefined;
  if (byName) return { allowed: true, addresses: [...addresses], allowedBy: byName };
  let allowedBy: AllowEntry | null = null;
  for (const address of addresses) {
    const rule = deniedRule(address);
    if (rule === null) continue;
    const entry = allowedAddress(allow, address, port);
    if (entry) {
      allowedBy ??= entry;
      continue;
    }
    const text = addressText(address);
    const via = host.kind === 'name' ? ` (resolved from ${host.name})` : '';
    return {
      allowed: false,
      refusal: { rule, address: text, message: `${rule} ${text}${via} refused` },
    };
  }
  return { allowed: true, addresses: [...addresses], allowedBy };
}

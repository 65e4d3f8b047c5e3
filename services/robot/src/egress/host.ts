import ipaddr from 'ipaddr.js';

export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;

/** A request target's host after canonicalisation: an IP literal, or a DNS name to resolve. */
export type CanonicalHost =
  { kind: 'ip'; address: IpAddress; text: string } | { kind: 'name'; name: string; text: string };

/** Characters that would turn a host or authority into something else once parsed as a URL. */
const NOT_A_HOST = /[\s/?#@\\]/;
/** A CONNECT authority is sent canonical: percent-escapes in one are refused too. */
const NOT_AN_AUTHORITY = /[\s/?#@\\%]/;

/**
 * Canonicalises a host the way Chromium (and any WHATWG URL parser) does before it connects, so that every spelling
 * of an address is checked as the address it reaches: `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` are all
 * 127.0.0.1, `[::ffff:127.0.0.1]` is the IPv4-mapped 127.0.0.1, names are lower-cased and punycoded. Node's URL
 * parser implements the same standard, so it is the reference rather than a hand-written copy of it. One trailing
 * dot of a name is dropped (`localhost.` is `localhost`). Null when the host is not a valid host at all.
 */
export function canonicalHost(raw: string): CanonicalHost | null {
  if (raw.length === 0 || raw.length > 1_000 || NOT_A_HOST.test(raw)) return null;
  let hostname: string;
  try {
    hostname = new URL(`http://${raw}/`).hostname;
  } catch {
    return null;
  }
  if (hostname.startsWith('[') && hostname.endsWith(']')) {
    const inner = hostname.slice(1, -1);
    if (!ipaddr.IPv6.isValid(inner)) return null;
    return { kind: 'ip', address: ipaddr.IPv6.parse(inner), text: hostname };
  }
  // After WHATWG parsing an IPv4 host is always four dotted decimals; anything else that looks numeric was refused.
  if (ipaddr.IPv4.isValidFourPartDecimal(hostname)) {
    return { kind: 'ip', address: ipaddr.IPv4.parse(hostname), text: hostname };
  }
  const name = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (name.length === 0 || name.startsWith('.')) return null;
  return { kind: 'name', name, text: name };
}

/**
 * Splits a CONNECT authority (`host:port`, `[v6]:port`) into its canonical host and port; null when it is not one.
 */
export function parseAuthority(authority: string): { host: CanonicalHost; port: number } | null {
  if (NOT_AN_AUTHORITY.test(authority)) return null;
  const match = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(authority);
  if (!match) return null;
  const port = Number(match[2]);
  if (port < 1 || port > 65_535) return null;
  const host = canonicalHost(match[1]!);
  return host ? { host, port } : null;
}

/** True for names every resolver answers with loopback: `localhost` and anything under `.localhost` (RFC 6761). */
export function isLocalhostName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost');
}

/** An address as text: IPv6 compressed (RFC 5952), IPv4-mapped shown with its IPv4 part. */
export function addressText(address: IpAddress): string {
  if (address.kind() === 'ipv6') {
    const v6 = address as ipaddr.IPv6;
    return v6.isIPv4MappedAddress() ? `::ffff:${v6.toIPv4Address().toString()}` : v6.toRFC5952String();
  }
  return address.toString();
}

/** Default ports of the schemes a browser sends through the proxy. */
const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'ws:': 80, 'https:': 443, 'wss:': 443 };

/**
 * The `host:port` a URL connects to, with the host canonical (as EgressDenial.target records it); null for a URL
 * without a network target (about:blank, data:).
 */
export function targetOf(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  const port = parsed.port ? Number(parsed.port) : DEFAULT_PORTS[parsed.protocol];
  const host = canonicalHost(parsed.hostname);
  return host && port ? `${host.text}:${port}` : null;
}

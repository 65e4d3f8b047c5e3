// Generates an API key: `npx tsx scripts/apikey.ts --id ci-deploy --tenant acme --scopes sessions:write,sessions:read`.
// Prints the key once (hand it to the caller; it is not stored anywhere) and the entry to add to API_KEYS or the
// API_KEYS_FILE array, which holds only the key's SHA-256.
import { parseArgs } from 'node:util';
import { ApiKeyEntry, generateApiKey } from '@rpa/shared';

const USAGE =
  'usage: npx tsx scripts/apikey.ts --id <key id> --tenant <tenant> [--scopes sessions:write,sessions:read,admin]';

function main(): void {
  let values: { id?: string; tenant?: string; scopes?: string };
  try {
    ({ values } = parseArgs({
      options: { id: { type: 'string' }, tenant: { type: 'string' }, scopes: { type: 'string' } },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const parsed = ApiKeyEntry.omit({ hash: true }).safeParse({
    id: values.id,
    tenant: values.tenant,
    scopes: (values.scopes ?? 'sessions:write,sessions:read').split(',').map((s) => s.trim()),
  });
  if (!parsed.success) {
    for (const issue of parsed.error.issues)
      process.stderr.write(`--${String(issue.path[0] ?? 'arguments')}: ${issue.message}\n`);
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }
  const { key, entry } = generateApiKey(parsed.data);
  process.stdout.write(
    [
      `key (shown once; send it as "Authorization: Bearer <key>" or "X-API-Key: <key>"):`,
      `  ${key}`,
      `configuration entry (add it to the API_KEYS / API_KEYS_FILE JSON array):`,
      `  ${JSON.stringify(entry)}`,
      '',
    ].join('\n'),
  );
}

main();

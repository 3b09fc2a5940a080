import { type ApiRole, type ApiTokenConfig, readTokenFile, tokenMatches } from '@backy/core';

/** A token the API accepts, with the name and role of its config entry. */
export interface ApiToken {
  name: string;
  role: ApiRole;
  secret: string;
}

/** The config's tokens with their values read (files: the first line, not readable by others). */
export async function loadTokens(tokens: readonly ApiTokenConfig[]): Promise<ApiToken[]> {
  const out: ApiToken[] = [];
  for (const [i, t] of tokens.entries()) {
    const secret = t.value ?? (await readTokenFile(t.file!, `api.tokens.${i}.file`));
    out.push({ name: t.name, role: t.role, secret });
  }
  return out;
}

/**
 * The token of `Authorization: Bearer TOKEN`, or null. Every configured token is compared, each in
 * constant time, so the answer's timing tells nothing about which one (or how much of one) matched.
 */
export function authenticate(tokens: readonly ApiToken[], header: string | undefined): ApiToken | null {
  const match = header == null ? null : /^Bearer +(\S+) *$/i.exec(header);
  if (match == null) return null;
  let found: ApiToken | null = null;
  for (const token of tokens) if (tokenMatches(token.secret, match[1]!) && found == null) found = token;
  return found;
}

/** Whether `role` may do what needs `needed`. */
export function allows(role: ApiRole, needed: ApiRole): boolean {
  return needed === 'read' || role === 'operator';
}

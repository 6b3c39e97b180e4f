import { ParleyError } from './errors.js';
/**
 * devToken asks a server with development tokens on (the local profile or
 * the memory backend) for a token for user. Never available in production.
 */
export async function devToken(baseUrl, user, fetchImpl = fetch) {
    const res = await fetchImpl(new URL('/v1/dev/token', baseUrl), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user }),
    });
    const data = (await res.json().catch(() => ({})));
    if (!res.ok || !data.token) {
        const e = data.error ?? {};
        throw new ParleyError(e.code ?? 'internal', e.message ?? `HTTP ${res.status}`, e.retryable ?? false);
    }
    return data.token;
}

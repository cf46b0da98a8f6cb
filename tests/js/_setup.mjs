// Shared setup for the JS driver scripts: load @neondatabase/serverless from the test cache,
// point it at neon_proxy, and give each script a `sql` for DATABASE_URL.
import assert from 'node:assert/strict';

const moduleUrl = process.env.NEON_SERVERLESS_MODULE;
const databaseUrl = process.env.DATABASE_URL;
const fetchEndpoint = process.env.NEON_FETCH_ENDPOINT;
if (!moduleUrl || !databaseUrl || !fetchEndpoint) {
  throw new Error('NEON_SERVERLESS_MODULE, DATABASE_URL and NEON_FETCH_ENDPOINT must be set');
}

export const serverless = await import(moduleUrl);
export const { neon, neonConfig, NeonDbError } = serverless;
neonConfig.fetchEndpoint = fetchEndpoint;

export { assert, databaseUrl };
export const sql = neon(databaseUrl);

// Run named checks in order; report each, fail the process on the first failure.
export async function checks(named) {
  for (const [name, fn] of Object.entries(named)) {
    try {
      await fn();
      console.log(`ok ${name}`);
    } catch (err) {
      console.error(`FAILED ${name}`);
      console.error(err);
      process.exit(1);
    }
  }
}

export function unique(prefix) {
  return `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
}

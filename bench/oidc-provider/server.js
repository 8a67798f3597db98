// node oidc-provider configured like a production deployment, as close as
// possible to coop-idp's behaviour, for the side-by-side benchmark
// (benches/versus/). See README.md for the configuration and its knobs.
//
// Two modes (ADAPTER):
// - `redis` (the default): one primary process forks NODE_WORKERS workers
//   (default: one per core, node's `cluster` module; the primary hands
//   connections out round-robin), as a production deployment on one machine
//   would. Signing keys and cookie keys are made (or read) once by the
//   primary and given to every worker; all state lives in Redis.
// - `memory`: the fastest configuration, one process and no cluster, all
//   state in that process's memory (memory_adapter.js); nothing survives a
//   restart.
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';

import argon2 from 'argon2';
import Provider from 'oidc-provider';

import { makeMemoryAdapter, memoryAccounts } from './memory_adapter.js';
import { deleteAll, makeAdapter, redisClient } from './redis_adapter.js';

const env = (name, fallback) => process.env[name] ?? fallback;
const PORT = Number(env('PORT', '3000'));
const ISSUER = env('ISSUER', `http://127.0.0.1:${PORT}`);
const ADAPTER = env('ADAPTER', 'redis');
const REDIS_URL = env('REDIS_URL', 'redis://127.0.0.1:6379');
const KEY_PREFIX = env('REDIS_KEY_PREFIX', 'oidc:');
const WORKERS = Number(env('NODE_WORKERS', String(os.availableParallelism())));
// Argon2id m=19456 KiB, t=2, p=1: coop-idp's parameters (OWASP's minimum).
const ARGON2 = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 };

function warnUnlessProduction() {
  if (process.env.NODE_ENV !== 'production') {
    console.error('warning: NODE_ENV is not "production"');
  }
}

const randomCookieKeys = () => JSON.stringify([
  crypto.randomBytes(32).toString('base64url'),
  crypto.randomBytes(32).toString('base64url'),
]);

// ---------------------------------------------------------------------------
// Memory mode: one process, the accounts and the provider's state in it.

async function single() {
  warnUnlessProduction();
  if (env('NODE_WORKERS', '1') !== '1') {
    console.error('warning: ADAPTER=memory runs one process; NODE_WORKERS is ignored');
  }
  const store = {
    adapter: makeMemoryAdapter(),
    ...memoryAccounts(await accountsToSeed()),
    close: async () => {},
  };
  const jwks = process.env.OIDC_JWKS ?? JSON.stringify(generateJwks());
  const cookieKeys = process.env.OIDC_COOKIE_KEYS ?? randomCookieKeys();
  await serve(store, jwks, cookieKeys, () => {
    console.log(`oidc-provider ${ISSUER} listening (1 process, state in memory)`);
  });
}

// ---------------------------------------------------------------------------
// Redis mode, primary: keys, the accounts and the clients, then the workers.

async function primary() {
  warnUnlessProduction();
  const jwks = process.env.OIDC_JWKS ?? JSON.stringify(generateJwks());
  const cookieKeys = process.env.OIDC_COOKIE_KEYS ?? randomCookieKeys();
  const redis = redisClient(REDIS_URL, KEY_PREFIX);
  await seedRedis(redis, await accountsToSeed());

  const workerEnv = { OIDC_JWKS: jwks, OIDC_COOKIE_KEYS: cookieKeys };
  let stopping = false;
  const fork = () => cluster.fork(workerEnv);
  for (let i = 0; i < WORKERS; i += 1) fork();
  cluster.on('exit', (w, code, signal) => {
    if (!stopping) {
      console.error(`worker ${w.process.pid} exited (${signal ?? code}); starting another`);
      fork();
    }
  });
  let ready = 0;
  cluster.on('listening', () => {
    ready += 1;
    if (ready === WORKERS) console.log(`oidc-provider ${ISSUER} listening (${WORKERS} workers)`);
  });

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    if (env('REDIS_CLEANUP_ON_EXIT', '') === '1') {
      await deleteAll(redis, KEY_PREFIX).catch((e) => console.error(`cleanup: ${e}`));
    }
    await redis.quit();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

/// An RSA 2048 key (RS256, the default for ID tokens, listed first) and a
/// P-256 key (ES256). In memory only: a deployment would read its keys from
/// a secret store (OIDC_JWKS).
function generateJwks() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' },
      { ...ec, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'ES256' },
    ],
  };
}

/// The accounts to make at start, with their Argon2id hashes: the one of
/// ACCOUNT_EMAIL / ACCOUNT_PASSWORD, and those of ACCOUNTS_FILE (a JSON
/// array of { email, password, given_name?, family_name?, function? }; the
/// benchmark's sign-in scenario signs each client in as its own account).
/// One hash per distinct password, so that hundreds of accounts sharing one
/// start in the time of one hash.
async function accountsToSeed() {
  const wanted = [];
  const email = env('ACCOUNT_EMAIL', '');
  const password = env('ACCOUNT_PASSWORD', '');
  if (email && password) {
    wanted.push({
      email,
      password,
      given_name: env('ACCOUNT_GIVEN_NAME', 'Marie'),
      family_name: env('ACCOUNT_FAMILY_NAME', 'Dupont'),
      function: env('ACCOUNT_FUNCTION', 'Coordinatrice CTG'),
    });
  }
  const file = env('ACCOUNTS_FILE', '');
  if (file) {
    const listed = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (!Array.isArray(listed)) throw new Error(`${file}: a JSON array of accounts is expected`);
    wanted.push(...listed);
  }
  const hashes = new Map();
  const accounts = [];
  for (const a of wanted) {
    if (typeof a.email !== 'string' || typeof a.password !== 'string') {
      throw new Error('every account needs an email and a password');
    }
    if (!hashes.has(a.password)) hashes.set(a.password, await argon2.hash(a.password, ARGON2));
    accounts.push({
      sub: crypto.randomUUID(),
      email: a.email,
      email_verified: true,
      given_name: a.given_name ?? 'Agent',
      family_name: a.family_name ?? 'Test',
      function: a.function ?? 'Agent',
      partner_id: 'cc-girou',
      partner_name: 'CC du Girou',
      roles: [],
      updated_at: Math.floor(Date.now() / 1000),
      password_hash: hashes.get(a.password),
    });
  }
  return accounts;
}

/// The accounts stored in Redis like the rest.
async function seedRedis(redis, accounts) {
  if (!accounts.length) return;
  const multi = redis.multi();
  for (const account of accounts) {
    multi.set(`account:${account.sub}`, JSON.stringify(account));
    multi.set(`account-email:${account.email.toLowerCase()}`, account.sub);
  }
  await multi.exec();
}

// ---------------------------------------------------------------------------
// Redis mode, workers.

async function worker() {
  const redis = redisClient(REDIS_URL, KEY_PREFIX);
  const findAccountById = async (id) => {
    const raw = id ? await redis.get(`account:${id}`) : null;
    return raw ? JSON.parse(raw) : undefined;
  };
  const store = {
    adapter: makeAdapter(redis),
    findAccountById,
    async findAccountByEmail(email) {
      const id = await redis.get(`account-email:${email.trim().toLowerCase()}`);
      return id ? findAccountById(id) : undefined;
    },
    close: () => redis.quit(),
  };
  // The primary prints "listening" once every worker listens.
  await serve(store, process.env.OIDC_JWKS, process.env.OIDC_COOKIE_KEYS, () => {});
}

// ---------------------------------------------------------------------------
// Either mode: the provider and the interaction (sign-in) pages on `store`
// ({ adapter, findAccountById, findAccountByEmail, close }).

async function serve(store, jwks, cookieKeys, onListening) {
  const { findAccountById, findAccountByEmail } = store;
  // An unknown address costs one hash too, so that timing does not tell it.
  const dummyHash = await argon2.hash(crypto.randomBytes(16).toString('hex'), ARGON2);

  const clientSecret = (id) => env(`CLIENT_SECRET_${id.toUpperCase().replace(/-/g, '_')}`, '');
  const redirectUris = env('REDIRECT_URIS', 'http://127.0.0.1:9/callback').split(' ');
  const client = (id, alg) => ({
    client_id: id,
    client_secret: clientSecret(id) || crypto.randomBytes(24).toString('base64url'),
    client_name: `Bench ${id}`,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: alg,
    require_auth_time: true,
  });

  const configuration = {
    adapter: store.adapter,
    clients: [client('bench-rs256', 'RS256'), client('bench-es256', 'ES256')],
    jwks: JSON.parse(jwks),
    cookies: {
      keys: JSON.parse(cookieKeys),
      // Served over plain http on loopback here; behind TLS, set
      // `provider.proxy = true` and `secure: true`.
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    pkce: { required: () => true },
    responseTypes: ['code'],
    scopes: ['openid', 'offline_access', 'profile', 'email', 'coop'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'updated_at'],
      email: ['email', 'email_verified'],
      coop: ['function', 'partner_id', 'partner_name', 'roles'],
    },
    conformIdTokenClaims: true,
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
    },
    rotateRefreshToken: true,
    // coop-idp's lifetimes.
    ttl: {
      AuthorizationCode: 60,
      AccessToken: 600,
      IdToken: 600,
      RefreshToken: 86400,
      Interaction: 600,
      Session: 36000,
      Grant: 30 * 86400,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, sub) {
      const account = await findAccountById(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          const { password_hash: _, given_name: given, family_name: family, ...claims } = account;
          return { ...claims, given_name: given, family_name: family, name: `${given} ${family}` };
        },
      };
    },
    // Auto-consent: the platform is a first-party client, as in coop-idp
    // (no consent page). A grant is made for what the request asks.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const grant = await ctx.oidc.provider.Grant.find(grantId);
        if (grant) return grant;
      }
      if (!ctx.oidc.session.accountId) return undefined;
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
      await grant.save();
      return grant;
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><title>Erreur</title><p>${escape(out.error)}: ${escape(out.error_description ?? '')}</p>`;
    },
  };

  const provider = new Provider(ISSUER, configuration);
  provider.on('server_error', (_ctx, e) => console.error(`server_error: ${e.stack ?? e}`));
  const callback = provider.callback();

  const server = http.createServer((req, res) => {
    const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(req.url.split('?')[0]);
    if (!match) {
      callback(req, res);
      return;
    }
    interaction(provider, findAccountByEmail, dummyHash, req, res, match[2] === '/login').catch((e) => {
      console.error(`interaction: ${e.stack ?? e}`);
      if (!res.headersSent) {
        res.writeHead(e.statusCode ?? 500, { 'content-type': 'text/plain' });
      }
      res.end(String(e.message ?? e));
    });
  });
  server.keepAliveTimeout = 65_000;

  server.listen(PORT, '127.0.0.1', onListening);
  const stop = () => {
    server.close(() => Promise.resolve(store.close()).finally(() => process.exit(0)));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.on('SIGTERM', stop);
  if (ADAPTER === 'memory') process.on('SIGINT', stop);
}

/// The sign-in page (GET /interaction/:uid), its form (POST
/// /interaction/:uid/login) and auto-consent when the provider asks for it
/// (prompt=consent, as `offline_access` requires).
async function interaction(provider, findAccountByEmail, dummyHash, req, res, isSubmit) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details.missingOIDCScope;
    if (missing) grant.addOIDCScope(missing.join(' '));
    const missingClaims = prompt.details.missingOIDCClaims;
    if (missingClaims) grant.addOIDCClaims(missingClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (!isSubmit) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(loginPage(uid, params.login_hint, ''));
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405).end();
    return;
  }
  const form = new URLSearchParams(await body(req));
  const email = form.get('email') ?? '';
  const password = form.get('password') ?? '';
  const account = await findAccountByEmail(email);
  const hash = account?.password_hash ?? dummyHash;
  const ok = await argon2.verify(hash, password).catch(() => false);
  if (!account || !ok) {
    res.writeHead(401, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(loginPage(uid, email, 'Adresse électronique ou mot de passe incorrect.'));
    return;
  }
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: account.sub, amr: ['pwd'] } },
    { mergeWithLastSubmission: false },
  );
}

function loginPage(uid, email, error) {
  return `<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Connexion</title></head>
<body><main><h1>Connexion</h1>${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label for="email">Adresse électronique</label>
<input id="email" name="email" type="email" autocomplete="username" required value="${escape(email ?? '')}">
<label for="password">Mot de passe</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Se connecter</button>
</form></main></body></html>`;
}

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const MAX_BODY = 16 * 1024;
async function body(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw Object.assign(new Error('body too large'), { statusCode: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// Last, so that every constant above is initialised before a request comes.
if (ADAPTER === 'memory') {
  await single();
} else if (ADAPTER !== 'redis') {
  console.error(`ADAPTER must be "redis" or "memory", not "${ADAPTER}"`);
  process.exit(2);
} else if (cluster.isPrimary) {
  await primary();
} else {
  await worker();
}

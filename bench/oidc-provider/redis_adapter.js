// A Redis adapter for oidc-provider, after the example in the project's
// repository (example/adapters/redis.js), with these changes:
//
// - one round trip per save: the grant index list gets its expiry inside
//   the same MULTI (`EXPIRE … NX` then `EXPIRE … GT`, Redis >= 7) instead
//   of reading its TTL first with a separate command;
// - `consume` is atomic (`HSETNX`): of two requests that present the same
//   code or refresh token at the same moment, the second one is refused
//   with invalid_grant. The example's `HSET` let both succeed, because the
//   provider checks `consumed` after `find` and before `consume`;
// - `HSET` instead of the deprecated `HMSET`; every key under a prefix so
//   that one Redis can hold several deployments (and the benchmark can
//   delete its own keys).
import Redis from 'ioredis';
import { errors } from 'oidc-provider';

const grantable = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

const consumable = new Set([
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

const grantKeyFor = (id) => `grant:${id}`;
const userCodeKeyFor = (userCode) => `userCode:${userCode}`;
const uidKeyFor = (uid) => `uid:${uid}`;

export function redisClient(url, keyPrefix) {
  return new Redis(url, { keyPrefix, enableAutoPipelining: true });
}

export function makeAdapter(client) {
  return class RedisAdapter {
    constructor(name) {
      this.name = name;
    }

    key(id) {
      return `${this.name}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const multi = client.multi();
      if (consumable.has(this.name)) {
        multi.hset(key, { payload: JSON.stringify(payload) });
      } else {
        multi.set(key, JSON.stringify(payload));
      }
      if (expiresIn) {
        multi.expire(key, expiresIn);
      }
      if (grantable.has(this.name) && payload.grantId) {
        const grantKey = grantKeyFor(payload.grantId);
        multi.rpush(grantKey, key);
        if (expiresIn) {
          // A new list has no expiry (NX sets one); an existing one only
          // ever gets a later one (GT).
          multi.expire(grantKey, expiresIn, 'NX');
          multi.expire(grantKey, expiresIn, 'GT');
        }
      }
      if (payload.userCode) {
        const userCodeKey = userCodeKeyFor(payload.userCode);
        multi.set(userCodeKey, id);
        if (expiresIn) multi.expire(userCodeKey, expiresIn);
      }
      if (payload.uid) {
        const uidKey = uidKeyFor(payload.uid);
        multi.set(uidKey, id);
        if (expiresIn) multi.expire(uidKey, expiresIn);
      }
      await multi.exec();
    }

    async find(id) {
      const data = consumable.has(this.name)
        ? await client.hgetall(this.key(id))
        : await client.get(this.key(id));
      if (!data || (typeof data === 'object' && Object.keys(data).length === 0)) {
        return undefined;
      }
      if (typeof data === 'string') {
        return JSON.parse(data);
      }
      const { payload, ...rest } = data;
      const parsed = { ...rest, ...JSON.parse(payload) };
      if (parsed.consumed !== undefined) parsed.consumed = Number(parsed.consumed);
      return parsed;
    }

    async findByUid(uid) {
      const id = await client.get(uidKeyFor(uid));
      return id ? this.find(id) : undefined;
    }

    async findByUserCode(userCode) {
      const id = await client.get(userCodeKeyFor(userCode));
      return id ? this.find(id) : undefined;
    }

    async destroy(id) {
      await client.del(this.key(id));
    }

    async revokeByGrantId(grantId) {
      const tokens = await client.lrange(grantKeyFor(grantId), 0, -1);
      const multi = client.multi();
      // The list holds keys without the client's prefix: `del` adds it.
      tokens.forEach((token) => multi.del(token));
      multi.del(grantKeyFor(grantId));
      await multi.exec();
    }

    async consume(id) {
      const set = await client.hsetnx(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
      if (set !== 1) {
        throw new errors.InvalidGrant('grant request is invalid');
      }
    }
  };
}

/// Deletes every key under the client's prefix (SCAN, not KEYS).
export async function deleteAll(client, keyPrefix) {
  let cursor = '0';
  do {
    // SCAN's MATCH does not get the prefix added: name it in full.
    const [next, keys] = await client.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) {
      // ...and the keys come back prefixed: strip it, `unlink` adds it again.
      await client.unlink(...keys.map((k) => k.slice(keyPrefix.length)));
    }
  } while (cursor !== '0');
}

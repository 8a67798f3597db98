// An in-process storage adapter for oidc-provider (ADAPTER=memory): the
// fastest configuration of the reference provider, one process holding its
// state in a Map. See README.md ("The memory adapter") for why it is not
// oidc-provider's own MemoryAdapter.
//
// Same contract as redis_adapter.js:
// - every entry expires `expiresIn` seconds after its last save; an expired
//   entry is never returned (checked on read) and is deleted by a sweep
//   once a second that visits only the entries due in that second (buckets
//   by expiry second), so that the sweep's cost follows what expires, not
//   what is stored;
// - no bound on the number of entries: sessions and grants are never
//   evicted to make room;
// - `consume` is atomic: the check and the mark run in one synchronous
//   step of the only thread, so of two requests presenting the same code or
//   refresh token, the second gets invalid_grant;
// - `revokeByGrantId` deletes every token of the grant: each grant keeps the
//   set of its tokens' keys (constant time per save; upstream's adapter
//   rescans the grant's whole member list at every save).
import { errors } from 'oidc-provider';

const grantable = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

const SWEEP_EVERY_MS = 1000;

export function makeMemoryAdapter() {
  /** key -> { value, expiresAt (ms since the epoch, or Infinity), grantId } */
  const entries = new Map();
  /** grantId -> Set of the keys of its tokens */
  const grants = new Map();
  /** expiry second -> keys that were due then when saved */
  const buckets = new Map();
  let nextSecond = Math.floor(Date.now() / 1000);

  const remove = (key, entry) => {
    entries.delete(key);
    if (entry.grantId) {
      const members = grants.get(entry.grantId);
      if (members) {
        members.delete(key);
        if (members.size === 0) grants.delete(entry.grantId);
      }
    }
  };

  const live = (key) => {
    const entry = entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      remove(key, entry);
      return undefined;
    }
    return entry;
  };

  const put = (key, value, expiresIn, grantId) => {
    const previous = entries.get(key);
    if (previous?.grantId && previous.grantId !== grantId) remove(key, previous);
    const finite = typeof expiresIn === 'number' && Number.isFinite(expiresIn);
    const expiresAt = finite ? Date.now() + expiresIn * 1000 : Infinity;
    entries.set(key, { value, expiresAt, grantId });
    if (finite) {
      const second = Math.max(Math.ceil(expiresAt / 1000), nextSecond);
      const due = buckets.get(second);
      if (due) due.push(key);
      else buckets.set(second, [key]);
    }
    if (grantId) {
      const members = grants.get(grantId);
      if (members) members.add(key);
      else grants.set(grantId, new Set([key]));
    }
  };

  const sweep = () => {
    const now = Date.now();
    const last = Math.floor(now / 1000);
    for (; nextSecond <= last; nextSecond += 1) {
      const due = buckets.get(nextSecond);
      if (!due) continue;
      buckets.delete(nextSecond);
      for (const key of due) {
        const entry = entries.get(key);
        // Saved again since with a later expiry: a later bucket has it.
        if (entry && entry.expiresAt <= now) remove(key, entry);
      }
    }
  };
  setInterval(sweep, SWEEP_EVERY_MS).unref();

  return class MemoryAdapter {
    constructor(name) {
      this.name = name;
    }

    key(id) {
      return `${this.name}:${id}`;
    }

    async upsert(id, payload, expiresIn) {
      put(this.key(id), payload, expiresIn, grantable.has(this.name) ? payload.grantId : undefined);
      // The secondary indexes of upstream's MemoryAdapter: sessions by uid,
      // device codes by user code.
      if (this.name === 'Session' && payload.uid) put(`sessionUid:${payload.uid}`, id, expiresIn);
      if (payload.userCode) put(`userCode:${payload.userCode}`, id, expiresIn);
    }

    async find(id) {
      return live(this.key(id))?.value;
    }

    async findByUid(uid) {
      const id = live(`sessionUid:${uid}`)?.value;
      return id ? this.find(id) : undefined;
    }

    async findByUserCode(userCode) {
      const id = live(`userCode:${userCode}`)?.value;
      return id ? this.find(id) : undefined;
    }

    async destroy(id) {
      const key = this.key(id);
      const entry = entries.get(key);
      if (entry) remove(key, entry);
    }

    async revokeByGrantId(grantId) {
      const members = grants.get(grantId);
      if (!members) return;
      grants.delete(grantId);
      for (const key of members) entries.delete(key);
    }

    async consume(id) {
      const entry = live(this.key(id));
      if (!entry || entry.value.consumed) {
        throw new errors.InvalidGrant('grant request is invalid');
      }
      entry.value.consumed = Math.floor(Date.now() / 1000);
    }
  };
}

/// Accounts by id and by address, in this process (the memory mode's
/// equivalent of the `account:` and `account-email:` keys in Redis).
export function memoryAccounts(accounts) {
  const byId = new Map(accounts.map((a) => [a.sub, a]));
  const idByEmail = new Map(accounts.map((a) => [a.email.toLowerCase(), a.sub]));
  return {
    async findAccountById(id) {
      return id ? byId.get(id) : undefined;
    },
    async findAccountByEmail(email) {
      const id = idByEmail.get(email.trim().toLowerCase());
      return id ? byId.get(id) : undefined;
    },
  };
}

// Prints the median time (ms) of one Argon2id hash with coop-idp's
// parameters (m=19456 KiB, t=2, p=1) through npm `argon2`, over 7 runs
// after a warm-up: the node side's own "one hash" for the sign-in limit.
import argon2 from 'argon2';

const options = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 };
await argon2.hash('Correct-Horse-9-Battery', options);
const times = [];
for (let i = 0; i < 7; i += 1) {
  const t = process.hrtime.bigint();
  await argon2.hash('Correct-Horse-9-Battery', options);
  times.push(Number(process.hrtime.bigint() - t) / 1e6);
}
times.sort((a, b) => a - b);
console.log(times[3].toFixed(2));

// Node's side of bench/spawn.c: the same four sequential loops with
// child_process, printing "<metric> <spawns per second>" lines.
'use strict';
const { spawn, execFile, exec, spawnSync } = require('child_process');

const N = Number(process.argv[2]) || 200;
const MAX_MS = Number(process.argv[3]) || 1000;

async function rate(once) {
  const t0 = process.hrtime.bigint();
  let i = 0;
  let ms = 0;
  for (; i < N && ms < MAX_MS; i++) {
    await once();
    ms = Number(process.hrtime.bigint() - t0) / 1e6;
  }
  return i / (ms / 1000);
}

async function main() {
  const spawnRate = await rate(() => new Promise((resolve, reject) => {
    const c = spawn('/bin/true');
    c.on('error', reject);
    c.on('close', resolve);
  }));
  const ignoreRate = await rate(() => new Promise((resolve, reject) => {
    const c = spawn('/bin/true', [], { stdio: 'ignore' });
    c.on('error', reject);
    c.on('close', resolve);
  }));
  const execFileRate = await rate(() => new Promise((resolve, reject) => {
    execFile('/bin/echo', ['hi'], (err, out) => {
      if (err || out !== 'hi\n') reject(err || new Error(out));
      else resolve();
    });
  }));
  const execRate = await rate(() => new Promise((resolve, reject) => {
    exec('echo hi', (err, out) => {
      if (err || out !== 'hi\n') reject(err || new Error(out));
      else resolve();
    });
  }));
  const syncRate = await rate(async () => {
    const r = spawnSync('/bin/true');
    if (r.status !== 0) throw new Error('spawnSync failed');
  });
  console.log(`spawn ${spawnRate}`);
  console.log(`spawn_ignore ${ignoreRate}`);
  console.log(`exec_file ${execFileRate}`);
  console.log(`exec ${execRate}`);
  console.log(`spawn_sync ${syncRate}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

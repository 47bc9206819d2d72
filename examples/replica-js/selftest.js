#!/usr/bin/env node
// Self-test of replica.js against the vectors of docs/protocol.md §3.7 and §11, and a short
// wire conversation with a replica process. No dependencies.  Run: node selftest.js
'use strict';
const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const net = require('node:net');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const R = require('./replica.js');

const hex = (s) => Buffer.from(s.replace(/[^0-9a-f]/gi, ''), 'hex');

// --- BLAKE2b against Python's hashlib (if python3 is there) and RFC 7693 Appendix A
assert.equal(R.blake2b(Buffer.from('abc'), 64).toString('hex'),
  'ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923');
try {
  for (const n of [0, 1, 127, 128, 129, 255, 256, 257, 1000, 100000]) {
    const data = Buffer.alloc(n);
    for (let i = 0; i < n; i++) data[i] = (i * 7 + 3) & 0xff;
    for (const len of [8, 16, 32, 64]) {
      const py = execFileSync('python3', ['-c',
        `import hashlib,sys;print(hashlib.blake2b(bytes((i*7+3)&255 for i in range(${n})),digest_size=${len}).hexdigest())`]).toString().trim();
      assert.equal(R.blake2b(data, len).toString('hex'), py, `blake2b len ${n} digest ${len}`);
    }
  }
  console.log('blake2b matches python hashlib');
} catch (e) {
  if (e.code === 'ENOENT') console.log('python3 not found: skipped the hashlib comparison'); else throw e;
}

// --- §3.4 page hash vectors (blake2b-64)
const ph = (pgno, byte) => {
  const b = Buffer.alloc(4 + 512, byte); b.writeUInt32BE(pgno, 0); return R.blake2b(b, 8).toString('hex');
};
assert.equal(ph(1, 1), '57c56609c447aac7');
assert.equal(ph(1, 0), '11a00374ee22bf99');
assert.equal(ph(2, 0), 'ca39ca1e805776c6');
assert.equal(ph(3, 3), '1ef89f97a6ce93d6');

// --- §3.7 / §11 entries E1, E2
function makeEntry(seq, ts, prevChain) {
  const b = Buffer.alloc(588);
  b.write('WRLE', 0); b.writeUInt16BE(1, 4); b.writeUInt16BE(0, 6);
  b.writeBigUInt64BE(1n, 8); b.writeBigUInt64BE(BigInt(seq), 16); b.writeBigUInt64BE(BigInt(ts), 24);
  b.writeUInt32BE(512, 32); b.writeUInt32BE(1, 36); b.writeUInt32BE(1, 40);
  hex('57c56609c447aac7').copy(b, 44);
  b.writeUInt32BE(1, 68); b.fill(1, 72, 584);
  R.chainOf(prevChain, b).copy(b, 52);
  b.writeUInt32BE(R.crc32(b, 0, 584), 584);
  return b;
}
const E1 = makeEntry(1, 1700000000000000, Buffer.alloc(16));
const E2 = makeEntry(2, 1700000000000001, E1.subarray(52, 68));
assert.equal(E1.subarray(52, 68).toString('hex'), '4ab7a733427cb8d8eba511a4063870c2');
assert.equal(E1.readUInt32BE(584), 0xbab58acd);
assert.equal(E2.subarray(52, 68).toString('hex'), '38b91266d1941cc8b26b88818bf9e035');
assert.equal(E2.readUInt32BE(584), 0x0e0544cc);
assert.equal(R.decodeEntry(E1).seq, 1n);
const bad = Buffer.from(E1); bad[100] ^= 1;
assert.throws(() => R.decodeEntry(bad), /crc32/);
console.log('entry vectors E1, E2: ok');

// --- wire conversation (§11 frame vectors) with a replica process
async function wire() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'replica-js-'));
  fs.mkdirSync(path.join(tmp, 'pl'));
  fs.writeFileSync(path.join(tmp, 'pl', 'flights.epoch'), `{"crc32":${R.crc32(Buffer.from('{"epoch":1}'))},"state":{"epoch":1}}\n`);
  const p = spawn(process.execPath, [path.join(__dirname, 'replica.js'), 'replica', '--id', '2', '--listen', '127.0.0.1:0',
    '--data', path.join(tmp, 'd'), '--placement', path.join(tmp, 'pl')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const addr = await new Promise((res) => p.stdout.once('data', (d) => res(/LISTENING (\S+):(\d+)/.exec(d.toString()))));
  const sock = net.connect(Number(addr[2]), addr[1]);
  let buf = Buffer.alloc(0);
  const waiters = [];
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); pump(); });
  function pump() {
    while (waiters.length && buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const n = 4 + buf.readUInt32BE(0);
      const f = buf.subarray(0, n); buf = buf.subarray(n); waiters.shift()(f);
    }
  }
  const recv = () => new Promise((res) => { waiters.push(res); pump(); });
  const frame = (type, body) => { const h = Buffer.alloc(6); h.writeUInt32BE(body.length + 2); h[4] = 1; h[5] = type; return Buffer.concat([h, body]); };
  const xchg = async (out, want, label) => {
    sock.write(out);
    const got = await recv();
    if (want) assert.equal(got.toString('hex'), want.toString('hex'), label);
    console.log(`${label}: ok`);
    return got;
  };
  await xchg(hex('00000034 01 01 01 0000000000000000 0000000000000001 0000000000000000 00000000000000000000000000000000 0007 666c6967687473'),
    hex('00000034 01 01 02 0000000000000002 0000000000000001 0000000000000000 00000000000000000000000000000000 0007 666c6967687473'),
    'HELLO (fresh object: non-voter promised the allocator epoch 1)');
  await xchg(hex('0000000a 01 30 0000000000000001'),
    hex('00000033 01 31 0000000000000001 0000000000000000 0000000000000000 00000000000000000000000000000000 0000000000000000 00'),
    'PREPARE 1 -> PROMISE non-voter');
  sock.write(frame(0x34, hex('0000000000000001 0000000000000000'))); // ADMIT(1, 0)
  await xchg(hex('0000000a 01 30 0000000000000001'),
    hex('00000033 01 31 0000000000000001 0000000000000000 0000000000000000 00000000000000000000000000000000 0000000000000000 01'),
    'ADMIT(1,0) + PREPARE 1 -> PROMISE voter');
  const appendE1 = Buffer.concat([hex('0000026e 01 10 0000000000000001 0000000000000000 0000000000000001 00000001 0000024c'), E1]);
  await xchg(appendE1, hex('0000002a 01 11 0000000000000001 0000000000000001 4ab7a733427cb8d8eba511a4063870c2 0000000000000001'),
    'APPEND [E1] -> ACK vector');
  await xchg(appendE1, hex('0000002a 01 11 0000000000000001 0000000000000001 4ab7a733427cb8d8eba511a4063870c2 0000000000000001'),
    'APPEND [E1] again (duplicate) -> same ACK');
  await xchg(hex('0000000a 01 30 0000000000000002'),
    hex('00000033 01 31 0000000000000002 0000000000000001 0000000000000001 4ab7a733427cb8d8eba511a4063870c2 0000000000000000 01'),
    'PREPARE 2 -> PROMISE vector');
  await xchg(hex('00000016 01 32 0000000000000002 0000000000000001 00100000'),
    Buffer.concat([hex('00000257 01 33 01 00000001 0000024c'), E1]), 'FETCH -> ENTRIES [E1] vector');
  await xchg(hex('00000016 01 32 0000000000000002 0000000000000002 00100000'), hex('00000007 01 33 01 00000000'), 'FETCH beyond -> ENTRIES empty final');
  const stale = await xchg(appendE1, null, 'stale APPEND');
  assert.equal(stale[5], 0x12); assert.equal(stale[6], 1); assert.equal(stale.readBigUInt64BE(7), 2n);
  // epoch 2 adopts E1 (frame through log_end), then E2
  const app = (epoch, logEnd, entries) => {
    const parts = [];
    for (const e of entries) { const l = Buffer.alloc(4); l.writeUInt32BE(e.length); parts.push(l, e); }
    const h = Buffer.alloc(28); h.writeBigUInt64BE(BigInt(epoch), 0); h.writeBigUInt64BE(BigInt(logEnd), 16); h.writeUInt32BE(entries.length, 24);
    return frame(0x10, Buffer.concat([h, ...parts]));
  };
  let a = await xchg(app(2, 2, [E2]), null, 'APPEND(2) [E2] adopting');
  assert.equal(a.readBigUInt64BE(6 + 8), 2n); assert.equal(a.readBigUInt64BE(6 + 32), 2n);
  // a protocol error: REJECT(BAD_ENTRY) then close
  const r = await xchg(frame(0x01, Buffer.alloc(3)), null, 'HELLO after handshake -> BAD_ENTRY');
  assert.equal(r[5], 0x12); assert.equal(r[6], 3);
  sock.destroy();

  // base offer (§5.15) on a second object of the same process: TRUNCATE(1, 2, chain E2) on an
  // empty log is an offer; APPEND(1, log_end 2, [E2]) then starts the log at E2.
  {
    const s = net.connect(Number(addr[2]), addr[1]);
    let b2 = Buffer.alloc(0); const w2 = [];
    s.on('data', (d) => { b2 = Buffer.concat([b2, d]); p2(); });
    function p2() {
      while (w2.length && b2.length >= 4 && b2.length >= 4 + b2.readUInt32BE(0)) {
        const n = 4 + b2.readUInt32BE(0); const f = b2.subarray(0, n); b2 = b2.subarray(n); w2.shift()(f);
      }
    }
    const rx = () => new Promise((res) => { w2.push(res); p2(); });
    const name = Buffer.from('base-obj');
    const hb = Buffer.alloc(43); hb[0] = 1; hb.writeBigUInt64BE(1n, 9); hb.writeUInt16BE(name.length, 41);
    s.write(frame(0x01, Buffer.concat([hb, name]))); await rx();
    s.write(hex('0000000a 01 30 0000000000000001')); await rx();
    s.write(frame(0x35, Buffer.concat([hex('0000000000000001 0000000000000002'), E2.subarray(52, 68)])));
    s.write(app(1, 2, [E2]));
    const ack = await rx();
    assert.equal(ack[5], 0x11); assert.equal(ack.readBigUInt64BE(6 + 8), 2n, 'base taken: stored_through 2');
    assert.equal(ack.subarray(6 + 16, 6 + 32).toString('hex'), E2.subarray(52, 68).toString('hex'));
    s.write(hex('0000000a 01 30 0000000000000001'));
    const pr = await rx();
    assert.equal(pr.readBigUInt64BE(6 + 40), 2n, 'truncated_through = base seq');
    s.write(hex('00000016 01 32 0000000000000001 0000000000000002 00100000'));
    const en = await rx();
    assert.equal(en[6], 1); assert.equal(en.readUInt32BE(7), 1);
    s.write(hex('00000016 01 32 0000000000000001 0000000000000001 00100000'));
    const pe = await rx();
    assert.equal(pe[5], 0x12); assert.equal(pe[6], 3, 'FETCH below the log start is a protocol error');
    s.destroy();
    console.log('base offer + FETCH from the base: ok');
  }
  // restart keeps everything (SIGKILL), torn tail is cut
  p.kill('SIGKILL');
  await new Promise((res) => p.once('exit', res));
  fs.appendFileSync(path.join(tmp, 'd', 'objects', 'flights', 'entries.log'), Buffer.from([0, 0, 2, 0x4c, 0x57, 0x52]));
  const p2 = spawn(process.execPath, [path.join(__dirname, 'replica.js'), 'replica', '--id', '2', '--listen', '127.0.0.1:0',
    '--data', path.join(tmp, 'd'), '--placement', path.join(tmp, 'pl')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const addr2 = await new Promise((res) => p2.stdout.once('data', (d) => res(/LISTENING (\S+):(\d+)/.exec(d.toString()))));
  const s2 = net.connect(Number(addr2[2]), addr2[1]);
  const got = await new Promise((res) => {
    s2.write(hex('00000034 01 01 01 0000000000000000 0000000000000003 0000000000000000 00000000000000000000000000000000 0007 666c6967687473'));
    s2.once('data', res);
  });
  assert.equal(got.readBigUInt64BE(6 + 9), 2n, 'promise survives restart');
  assert.equal(got.readBigUInt64BE(6 + 17), 2n, 'entries survive restart');
  console.log('restart after SIGKILL with a torn tail: ok');
  s2.destroy();
  p2.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
}
wire().then(() => console.log('selftest passed'), (e) => { console.error(e); process.exit(1); });
